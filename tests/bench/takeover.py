"""Take-over: time from kill -9 of the watching server to an edit being searchable from another server.

    .venv/bin/python tests/bench/takeover.py

The 1,000 pages of md-hugo-docs are indexed once (keyword rows; the take-over does not wait for embeddings).
Each run spawns two `specmem serve` processes over stdio, waits until one of them watches, kills it with
SIGKILL, writes a new memory file at once, and polls `memory_search` (keyword mode) on the survivor until the new
file is found. p50 and p95 over 10 runs. The survivor retries the lock every 2 s, so the expected figure is about
half of that plus a fast-path reconcile of the 1,000 files plus one debounce.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import hugo_copy, pct, record  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from specmem.indexer import db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402


async def one_run(params: StdioServerParameters, root: Path, i: int) -> float:
    stacks = [AsyncExitStack() for _ in range(2)]
    clients = [await s.enter_async_context(Client(params)) for s in stacks]
    watching = -1
    try:
        while watching < 0:
            healths = [(await c.call_tool("memory_health", {})).structured_content for c in clients]
            watching = next((k for k, h in enumerate(healths) if h["watching"]), -1)
            await anyio.sleep(0.05)
        pid = healths[watching]["watcher"]["pid"]
        survivor = clients[1 - watching]
        word = f"takeover{i}marker"
        started = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        (root / f"takeover-{i}.md").write_text(f"---\ntitle: Take-over {i}\n---\n# Take-over\n\n{word}\n")
        while True:
            found = await survivor.call_tool("memory_search", {"query": word, "mode": "keyword"})
            if any(r["title"] == f"Take-over {i}" for r in found.structured_content["results"]):
                return time.perf_counter() - started
            await anyio.sleep(0.02)
    finally:
        for k, stack in reversed(list(enumerate(stacks))):
            try:
                await stack.aclose()
            except Exception:  # noqa: BLE001 - the killed server's transport ends in an error
                if k != watching:
                    raise


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        root, cfg = hugo_copy(tmp)
        conn = db.connect(cfg.db_path)
        scan(conn, cfg, get_embedder(cfg.model), embed=False)
        conn.close()
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "SPECMEM_DB": str(cfg.db_path),
            "SPECMEM_ROOTS": str(root),
            "SPECMEM_MODEL": cfg.model,
        }
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "specmem", "serve"], env=env, cwd=name
        )
        times = [anyio.run(one_run, params, root, i) for i in range(args.runs)]
    out = {
        "runs": args.runs,
        "kill_to_searchable_p50_s": statistics.median(times),
        "kill_to_searchable_p95_s": pct(times, 95),
        "kill_to_searchable_min_s": min(times),
        "kill_to_searchable_max_s": max(times),
    }
    for key, value in out.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    record("takeover", out)


if __name__ == "__main__":
    main()
