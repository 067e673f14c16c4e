"""The MCP server on the 1,000 pages of md-hugo-docs, through the SDK's client over stdio, with the real model.

    .venv/bin/python tests/bench/server.py

Measures, in one run:
- start-up: from spawning `specmem serve` to the `tools/list` answer (median of 5 spawns; torch installed, never
  imported on that path);
- the cost of the `index.db-updated` check made before every call (ReadState.conn with nothing changed), in-process;
- memory_search p50/p95 over stdio in keyword and hybrid mode (200 queries each, after the model is ready and the
  server has settled: its hosted watcher's start-up work done), next to the same search called in-process on the
  same index;
- the RSS of an idle server after 20 hybrid searches (query encoder warm): one hosting the watcher (the default,
  whose indexing model is loaded) and one with SPECMEM_WATCH=0 (searches only).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import hugo_copy, pct, record  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from specmem.indexer import db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server.search import search  # noqa: E402
from specmem.server.state import ReadState  # noqa: E402


def queries(conn, n: int) -> list[str]:
    """Page titles as queries: realistic, and each has a right answer in the corpus."""
    rows = conn.execute("SELECT title FROM memory_index ORDER BY id").fetchall()
    return [rows[i * len(rows) // n][0] for i in range(n)]


def server_status() -> dict[str, str]:
    """/proc status of the `specmem serve` this process spawned (found among its children)."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
            cmdline = (status.parent / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        if int(fields["PPid"]) == os.getpid() and b"serve" in cmdline and b"specmem" in cmdline:
            return {key: value.strip() for key, value in fields.items()}
    raise RuntimeError("the spawned specmem serve was not found among this process's children")


def server_rss_mb() -> dict[str, float]:
    """Resident and peak memory of the spawned server."""
    fields = server_status()
    kb = {key: int(fields[key].split()[0]) for key in ("VmRSS", "VmHWM")}
    return {"rss_mb": kb["VmRSS"] / 1024, "peak_rss_mb": kb["VmHWM"] / 1024}


async def settled(limit: float = 120.0) -> None:
    """Wait until the spawned server is idle (under 5% of a core over a second): a server hosting the watcher
    loads its indexing model and reconciles the files when it starts, and searches timed meanwhile share the CPU
    with that."""
    pid = int(server_status()["Pid"])

    def cpu_ticks() -> int:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime, stime

    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = cpu_ticks()
        await anyio.sleep(1.0)
        if cpu_ticks() - before <= 0.05 * os.sysconf("SC_CLK_TCK"):
            return


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        root, cfg = hugo_copy(tmp)
        conn = db.connect(cfg.db_path)
        embedder = get_embedder(cfg.model)
        scan(conn, cfg, embedder)
        texts = queries(conn, args.queries)
        out["queries"] = len(texts)
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "SPECMEM_DB": str(cfg.db_path),
            "SPECMEM_ROOTS": str(root),
        }
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "specmem", "serve"], env=env, cwd=name
        )

        async def startup() -> float:
            started = time.perf_counter()
            async with Client(params) as client:
                await client.list_tools()
                return time.perf_counter() - started

        out["startup_spawns"] = 5
        out["startup_to_tools_list_s"] = statistics.median(anyio.run(startup) for _ in range(5))

        state = ReadState(cfg, load_model=False)
        state.conn()
        n = 20_000
        started = time.perf_counter()
        for _ in range(n):
            state.conn()
        out["signal_check_us"] = 1e6 * (time.perf_counter() - started) / n
        state.close()

        for mode in ("keyword", "hybrid"):
            times = []
            for q in texts:
                t = time.perf_counter()
                search(conn, q, limit=10, mode=mode, embedder=embedder)
                times.append(time.perf_counter() - t)
            out[f"inprocess_{mode}_p50_ms"] = 1000 * statistics.median(times)
            out[f"inprocess_{mode}_p95_ms"] = 1000 * pct(times, 95)

        async def over_stdio() -> None:
            async with Client(params) as client:
                while (await client.call_tool("memory_health", {})).structured_content[
                    "model_state"
                ] == "loading":
                    await anyio.sleep(0.2)
                await settled()
                for mode in ("keyword", "hybrid"):
                    times = []
                    for q in texts:
                        t = time.perf_counter()
                        result = await client.call_tool(
                            "memory_search", {"query": q, "limit": 10, "mode": mode}
                        )
                        times.append(time.perf_counter() - t)
                        assert not result.is_error and result.structured_content["mode_used"] == mode
                    out[f"stdio_{mode}_p50_ms"] = 1000 * statistics.median(times)
                    out[f"stdio_{mode}_p95_ms"] = 1000 * pct(times, 95)

        anyio.run(over_stdio)

        async def idle_rss(label: str, params: StdioServerParameters) -> None:
            """RSS of a server after 20 hybrid searches (query model warm) and 5 s of idling."""
            async with Client(params) as client:
                while (await client.call_tool("memory_health", {})).structured_content[
                    "model_state"
                ] == "loading":
                    await anyio.sleep(0.2)
                for q in texts[:20]:
                    await client.call_tool("memory_search", {"query": q, "limit": 10, "mode": "hybrid"})
                await anyio.sleep(5)
                for key, value in server_rss_mb().items():
                    out[f"{label}_{key}"] = value

        anyio.run(idle_rss, "idle_watching", params)
        read_only = StdioServerParameters(
            command=sys.executable,
            args=["-m", "specmem", "serve"],
            env={**env, "SPECMEM_WATCH": "0"},
            cwd=name,
        )
        anyio.run(idle_rss, "idle_not_watching", read_only)
        conn.close()
    for key, value in out.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    record("server", out)


if __name__ == "__main__":
    main()
