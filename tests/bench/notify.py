"""How long a resource subscriber waits for `resources/updated` after another process edits a memory file.

A `specmem serve` (hosting the watcher, hash embedder so the model's load does not count) serves a copy of this
project's specs/; an MCP client subscribes to one memory over `subscriptions/listen`, and this process appends a
line to the file, N times. Each figure runs from the write to the event's arrival: the watcher's debounce, the
keyword commit, the server's next stat of `index.db-updated` (every 200 ms) and the diff.

    .venv/bin/python tests/bench/notify.py [--edits 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
from mcp import Client
from mcp.client.stdio import StdioServerParameters

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.bench.common import ROOT, pct, record  # noqa: E402


async def measure(project: Path, edits: int) -> list[float]:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "specmem", "serve"],
        env={**os.environ, "SPECMEM_WATCH": "1", "SPECMEM_MODEL": "hash:64"},
        cwd=str(project),
    )
    target = project / "specs" / "002-search" / "memory" / "rrf-fusion.md"
    waits: list[float] = []
    async with Client(params) as client:
        while not (await client.call_tool("memory_health", {})).structured_content["watching"]:
            await anyio.sleep(0.05)
        uri = next(
            str(r.uri) for r in (await client.list_resources()).resources if r.name.endswith(target.name)
        )
        async with client.listen(resource_subscriptions=[uri]) as events:
            stream = aiter(events)
            for n in range(edits):
                await anyio.sleep(0.5)  # edits a person makes, not a burst the debounce would merge
                started = time.perf_counter()
                with target.open("a") as fh:
                    fh.write(f"edit {n}\n")
                with anyio.fail_after(30):
                    await anext(stream)
                waits.append(time.perf_counter() - started)
    return waits


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--edits", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        project = Path(tmp)
        shutil.copytree(ROOT / "specs", project / "specs")
        (project / ".git").mkdir()
        subprocess.run(
            [sys.executable, "-m", "specmem", "scan"],
            cwd=project,
            env={**os.environ, "SPECMEM_MODEL": "hash:64"},
            check=True,
            capture_output=True,
        )
        waits = anyio.run(measure, project, args.edits)
    ms = [1000 * w for w in waits]
    figures = {
        "edits": len(ms),
        "p50_ms": round(pct(ms, 50), 1),
        "p95_ms": round(pct(ms, 95), 1),
        "max_ms": round(max(ms), 1),
    }
    record("notify", figures)
    print(figures)


if __name__ == "__main__":
    main()
