"""Many clients on one database, with the real model, on the 1,000 pages of md-hugo-docs.

    .venv/bin/python tests/bench/concurrency.py

In one run:
- reader latency: `memory_search` (hybrid) p50/p95 over stdio through 1, 2 and 4 servers at once, each client
  searching back to back or paced (random pauses averaging --pace s), without and with a writer: a standalone
  `specmem watch` applying a steady stream of edits (one file every 100 ms, each re-indexed and re-embedded).
  Quiet and writing rounds alternate, so both sides see the same machine; p95 ratios are given against 1 server
  with no writer (the issue's bar) and against the same number of servers with no writer (the writer's own cost);
- `memory_write` throughput through one server, then through four servers at once;
- RSS of one server with the corpus indexed and the model warm.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
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

from common import hugo_copy, pct, record  # noqa: E402
from mcp import Client  # noqa: E402
from mcp.client.stdio import StdioServerParameters  # noqa: E402

from specmem.indexer import db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.indexer.store import pending_count  # noqa: E402


async def ready(client: Client) -> int:
    while True:
        health = (await client.call_tool("memory_health", {})).structured_content
        if health["model_state"] != "loading":
            return health["pid"]
        await anyio.sleep(0.2)


class Editor:
    """The steady stream of edits: while on, one line appended to a random page every 100 ms (the standalone
    watcher indexes and embeds each one). `pause()` returns once the watcher has caught up: the last edit
    searchable and no embedding pending, so a quiet round really has no writer at work."""

    def __init__(self, root: Path, db_path: Path, watcher_pid: int) -> None:
        self.pages = sorted(root.rglob("*.md"))
        self.db_path = db_path
        self.watcher_pid = watcher_pid
        self.edits = 0
        self.lags: list[float] = []
        self.busy_wall = self.busy_cpu = 0.0
        self._on = threading.Event()
        self._quit = threading.Event()
        self._rng = random.Random(1)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._quit.is_set():
            if not self._on.wait(0.05):
                continue
            page = self._rng.choice(self.pages)
            page.write_text(page.read_text(errors="replace") + f"\nsteadyedit{self.edits}\n")
            self.edits += 1
            time.sleep(0.1)

    def _cpu(self) -> float:
        fields = Path(f"/proc/{self.watcher_pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def start(self) -> None:
        self._on.set()
        time.sleep(1.5)  # into the steady state: batches applied and embeddings running
        self._started = (time.perf_counter(), self._cpu())

    def pause(self) -> None:
        self.busy_wall += time.perf_counter() - self._started[0]
        self.busy_cpu += self._cpu() - self._started[1]
        self._on.clear()
        time.sleep(0.15)  # an edit in progress finishes
        stopped = time.perf_counter()
        conn = db.connect(self.db_path, readonly=True)
        try:
            last = f"steadyedit{self.edits - 1}"
            while not conn.execute("SELECT 1 FROM memory_fts WHERE memory_fts MATCH ?", (last,)).fetchall():
                if time.perf_counter() - stopped > 60:
                    raise SystemExit(f"the watcher did not index {last} within 60 s")
                time.sleep(0.02)
            self.lags.append(time.perf_counter() - stopped)
            while pending_count(conn):
                time.sleep(0.05)
        finally:
            conn.close()
        time.sleep(0.5)

    def close(self) -> None:
        self._quit.set()
        self._on.clear()
        self._thread.join()


async def searches(
    params: StdioServerParameters,
    servers: int,
    queries: list[str],
    pace: float | None,
    editor: Editor,
    rounds: int,
) -> dict[bool, list[float]]:
    """Latencies of `memory_search` (hybrid) through `servers` servers at once, without and with the writer.

    The queries are split into `rounds`; each round is run once quiet and once with the editor on, the order
    alternating from round to round, so drift on a shared machine falls on both sides alike. Each server's client
    sends its queries back to back (`pace` None) or with random pauses averaging `pace` seconds (assistants that
    search now and then)."""
    times: dict[bool, list[float]] = {False: [], True: []}
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params)) for _ in range(servers)]
        for client in clients:
            await ready(client)

        async def one(client: Client, part: list[str], out: list[float], rng: random.Random) -> None:
            for q in part:
                if pace is not None:
                    await anyio.sleep(rng.expovariate(1 / pace))
                t = time.perf_counter()
                result = await client.call_tool("memory_search", {"query": q, "limit": 10, "mode": "hybrid"})
                out.append(time.perf_counter() - t)
                assert not result.is_error and result.structured_content["mode_used"] == "hybrid"

        rng = random.Random(servers)
        for r in range(rounds):
            part = queries[r * len(queries) // rounds : (r + 1) * len(queries) // rounds]
            for writing in (False, True) if r % 2 == 0 else (True, False):
                if writing:
                    await anyio.to_thread.run_sync(editor.start)
                async with anyio.create_task_group() as tg:
                    for client in clients:
                        tg.start_soon(one, client, part, times[writing], rng)
                if writing:
                    await anyio.to_thread.run_sync(editor.pause)
    return times


async def writes(params: StdioServerParameters, servers: int, each: int) -> float:
    async with AsyncExitStack() as stack:
        clients = [await stack.enter_async_context(Client(params)) for _ in range(servers)]
        for client in clients:
            await ready(client)  # writes measured with the models loaded, not while four processes load them

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
    parser.add_argument(
        "--pace",
        type=float,
        default=0.25,
        help="mean seconds between one client's searches in the paced load",
    )
    parser.add_argument(
        "--rounds", type=int, default=4, help="alternating quiet/writing rounds the queries are split into"
    )
    parser.add_argument("--readers-only", action="store_true", help="skip the write throughput and RSS parts")
    parser.add_argument(
        "--from-index",
        type=Path,
        help="copy this index of the same corpus instead of building one (for repeated experiments)",
    )
    args = parser.parse_args()
    out: dict[str, float] = {}

    def show(key: str, value: float) -> None:
        out[key] = value
        print(f"{key:>36}: {value:.3f}", flush=True)

    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)
        root, cfg = hugo_copy(tmp)
        if args.from_index:
            # Repeated experiments: start from an index a previous run built (the scan below then changes nothing).
            shutil.copy2(args.from_index, cfg.db_path)
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
            command=sys.executable, args=["-m", "specmem", "serve"], env=env, cwd=name
        )

        watcher = subprocess.Popen(
            [sys.executable, "-m", "specmem", "watch"], env=env, cwd=name, stderr=subprocess.DEVNULL
        )
        time.sleep(3)  # the watcher's start-up reconcile
        editor = Editor(root, cfg.db_path, watcher.pid)
        try:
            results = {
                (load, n): anyio.run(searches, params, n, queries, pace, editor, args.rounds)
                for load, pace in (("back_to_back", None), ("paced", args.pace))
                for n in (1, 2, 4)
            }
        finally:
            editor.close()
            watcher.terminate()
            watcher.wait(30)
        for (load, n), times in results.items():
            base = pct(results[load, 1][False], 95)
            quiet, busy = pct(times[False], 95), pct(times[True], 95)
            show(f"{load}_{n}_servers_no_writer_p50_ms", 1000 * statistics.median(times[False]))
            show(f"{load}_{n}_servers_no_writer_p95_ms", 1000 * quiet)
            show(f"{load}_{n}_servers_with_writer_p50_ms", 1000 * statistics.median(times[True]))
            show(f"{load}_{n}_servers_with_writer_p95_ms", 1000 * busy)
            show(f"{load}_{n}_servers_p95_ratio_vs_1_quiet", busy / base)
            show(f"{load}_{n}_servers_p95_ratio_vs_{n}_quiet", busy / quiet)
        show("edits_during_reads", float(editor.edits))
        show("edit_keyword_lag_max_s", max(editor.lags))
        show("watcher_cpu_share_while_editing", editor.busy_cpu / editor.busy_wall)

        if args.readers_only:
            return finish(args, out)

        show("memory_write_per_s_1_server", anyio.run(writes, params, 1, args.writes))
        show("memory_write_per_s_4_servers", anyio.run(writes, params, 4, args.writes))
        show("server_rss_mb_model_warm", anyio.run(rss, params, queries))
    finish(args, out)


def finish(args: argparse.Namespace, out: dict[str, float]) -> None:
    """Record the figures; a partial run, or one with a thread setting, under its own name (the README cites
    the full default run as `concurrency`, and a `--readers-only` run with OMP_NUM_THREADS=2 as
    `concurrency-readers-only-omp2`)."""
    name = "concurrency" + ("-readers-only" if args.readers_only else "")
    if os.environ.get("OMP_NUM_THREADS"):
        name += f"-omp{os.environ['OMP_NUM_THREADS']}"
    record(name, out)


if __name__ == "__main__":
    main()
