"""Many clients on one database, with the real model, on the 1,000 pages of md-hugo-docs.

    .venv/bin/python tests/bench/concurrency.py

In one run:
- reader latency: `memory_search` (hybrid) p50/p95 over stdio with 1 server and no writer, then with 1, 2 and 4
  servers searching at once while a `specmem watch` applies a steady stream of edits (one file every 100 ms);
- `memory_write` throughput through one server, then through four servers at once;
- RSS of one server with the corpus indexed and the model warm.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import hugo_copy, pct  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from indexer import db  # noqa: E402
from indexer.embed import get_embedder  # noqa: E402
from indexer.index import scan  # noqa: E402


async def ready(client: Client) -> int:
    while True:
        health = (await client.call_tool("memory_health", {})).structured_content
        if health["model_state"] != "loading":
            return health["pid"]
        await anyio.sleep(0.2)


async def searches(params: StdioServerParameters, servers: int, queries: list[str]) -> list[float]:
    times: list[float] = []
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params)) for _ in range(servers)]
        for client in clients:
            await ready(client)

        async def one(client: Client) -> None:
            for q in queries:
                t = time.perf_counter()
                result = await client.call_tool("memory_search", {"query": q, "limit": 10, "mode": "hybrid"})
                times.append(time.perf_counter() - t)
                assert not result.is_error and result.structured_content["mode_used"] == "hybrid"

        async with anyio.create_task_group() as tg:
            for client in clients:
                tg.start_soon(one, client)
    return times


async def writes(params: StdioServerParameters, servers: int, each: int) -> float:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params)) for _ in range(servers)]

        async def one(k: int, client: Client) -> None:
            for i in range(each):
                result = await client.call_tool(
                    "memory_write",
                    {
                        "title": f"Bench {servers} {k} {i}",
                        "content": f"throughput {i}",
                        "spec_folder": "900-bench",
                    },
                )
                assert not result.is_error, result.content[0].text

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for k, client in enumerate(clients):
                tg.start_soon(one, k, client)
        return servers * each / (time.perf_counter() - started)


async def rss(params: StdioServerParameters, queries: list[str]) -> float:
    async with Client(params) as client:
        pid = await ready(client)
        for q in queries[:50]:
            await client.call_tool("memory_search", {"query": q, "mode": "hybrid"})
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return -1.0


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--queries", type=int, default=100, help="searches per server per setting")
    parser.add_argument("--writes", type=int, default=40, help="memory_write calls per server")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out: dict[str, float] = {}

    def show(key: str, value: float) -> None:
        out[key] = value
        print(f"{key:>36}: {value:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        root, cfg = hugo_copy(tmp)
        conn = db.connect(cfg.db_path)
        scan(conn, cfg, get_embedder(cfg.model))
        titles = [r[0] for r in conn.execute("SELECT title FROM memory_index ORDER BY id")]
        conn.close()
        queries = [titles[i * len(titles) // args.queries] for i in range(args.queries)]
        env = {
            **os.environ,
            "HF_HUB_OFFLINE": "1",
            "SPECMEM_DB": str(cfg.db_path),
            "SPECMEM_ROOTS": str(root),
            "SPECMEM_WATCH": "0",
        }
        params = StdioServerParameters(
            command=sys.executable, args=["-m", "server.cli", "serve"], env=env, cwd=name
        )

        base = anyio.run(searches, params, 1, queries)
        show("no_writer_1_server_p50_ms", 1000 * statistics.median(base))
        show("no_writer_1_server_p95_ms", 1000 * pct(base, 95))

        watcher = subprocess.Popen(
            [sys.executable, "-m", "server.cli", "watch"], env=env, cwd=name, stderr=subprocess.DEVNULL
        )
        stop = threading.Event()
        edits = [0]

        def editor() -> None:
            pages = sorted(root.rglob("*.md"))
            rng = random.Random(1)
            while not stop.wait(0.1):
                page = rng.choice(pages)
                page.write_text(page.read_text(errors="replace") + f"\nsteady edit {edits[0]}\n")
                edits[0] += 1

        thread = threading.Thread(target=editor, daemon=True)
        time.sleep(3)  # the watcher's start-up reconcile
        thread.start()
        try:
            for n in (1, 2, 4):
                times = anyio.run(searches, params, n, queries)
                show(f"with_watcher_{n}_servers_p50_ms", 1000 * statistics.median(times))
                show(f"with_watcher_{n}_servers_p95_ms", 1000 * pct(times, 95))
                show(f"with_watcher_{n}_servers_p95_ratio", pct(times, 95) / pct(base, 95))
        finally:
            stop.set()
            thread.join()
            watcher.terminate()
            watcher.wait(30)
        show("edits_applied_during_reads", float(edits[0]))

        show("memory_write_per_s_1_server", anyio.run(writes, params, 1, args.writes))
        show("memory_write_per_s_4_servers", anyio.run(writes, params, 4, args.writes))
        show("server_rss_mb_model_warm", anyio.run(rss, params, queries))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
