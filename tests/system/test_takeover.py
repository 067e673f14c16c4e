"""Servers keep the index live themselves: one of them watches, the others take over when it goes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from specmem.indexer.lock import current_holder
from tests.helpers import call, memory, write

TIMEOUT = 30.0


@pytest.fixture
def corpus(specs: Path, cfg: config.Config) -> Path:
    write(specs / "001-a" / "memory" / "a.md", memory("Alpha", "first memory"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.close()
    return specs


def params(**env: str) -> StdioServerParameters:
    return StdioServerParameters(
        command=sys.executable,
        args=["-m", "specmem", "serve"],
        env={**os.environ, **env},
        cwd=str(Path.cwd()),
    )


async def titles(client: Client, word: str) -> list[str]:
    found = await call(client, "memory_search", query=word, mode="keyword", include_constitutional=False)
    return [r["title"] for r in found["results"]]


async def eventually(check, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await anyio.sleep(0.05)


def test_three_servers_one_watcher_and_take_over_after_kill_9(corpus, cfg):
    async def main() -> None:
        stacks = [AsyncExitStack() for _ in range(3)]
        clients = [await stack.enter_async_context(Client(params())) for stack in stacks]
        watching = -1
        try:

            async def one_watches() -> bool:
                healths = [await call(c, "memory_health") for c in clients]
                return sum(h["watching"] for h in healths) == 1

            await eventually(one_watches, "exactly one server to watch")
            healths = [await call(c, "memory_health") for c in clients]
            assert sum(h["watching"] for h in healths) == 1
            watcher_pid = healths[0]["watcher"]["pid"]
            assert all(
                h["watcher"]["pid"] == watcher_pid and h["watcher"]["role"] == "server" for h in healths
            )
            watching = next(i for i, h in enumerate(healths) if h["watching"])

            write(corpus / "001-a" / "memory" / "b.md", memory("Bravo", "zebrafish before the kill"))
            for client in clients:
                await eventually(lambda c=client: _has(c, "zebrafish", "Bravo"), "the edit on every server")

            os.kill(watcher_pid, signal.SIGKILL)  # no clean exit: the kernel releases the lock
            survivors = [c for i, c in enumerate(clients) if i != watching]
            write(corpus / "001-a" / "memory" / "c.md", memory("Charlie", "quokka after the kill"))
            for client in survivors:
                await eventually(
                    lambda c=client: _has(c, "quokka", "Charlie"), "the edit after the take-over"
                )
            healths = [await call(c, "memory_health") for c in survivors]
            assert sum(h["watching"] for h in healths) == 1
            assert healths[0]["watcher"]["pid"] != watcher_pid
        finally:
            for i, stack in reversed(list(enumerate(stacks))):  # cancel scopes unwind last-in, first-out
                try:
                    await stack.aclose()
                except Exception:  # noqa: BLE001 - the killed server's transport ends in an error
                    if i != watching:
                        raise

    anyio.run(main)


async def _has(client: Client, word: str, title: str) -> bool:
    return title in await titles(client, word)


def test_standalone_watch_holds_the_lock_then_a_server_takes_over(corpus, cfg, isolated):
    standalone = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch"],
        cwd=isolated,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while current_holder(cfg.watcher_lock_path) is None:
            assert time.monotonic() < deadline, "the standalone watcher never took its lock"
            time.sleep(0.05)

        async def main() -> None:
            async with Client(params()) as client:
                health = await call(client, "memory_health")
                assert health["watching"] is False
                assert health["watcher"]["pid"] == standalone.pid and health["watcher"]["role"] == "watcher"
                write(corpus / "001-a" / "memory" / "d.md", memory("Delta", "walrus seen by the standalone"))
                await eventually(lambda: _has(client, "walrus", "Delta"), "the standalone watcher's batch")
                standalone.send_signal(signal.SIGTERM)
                await anyio.to_thread.run_sync(standalone.wait, 30)

                async def took_over() -> bool:
                    return (await call(client, "memory_health"))["watching"]

                await eventually(took_over, "the server to take over")
                write(corpus / "001-a" / "memory" / "e.md", memory("Echo", "narwhal seen by the server"))
                await eventually(lambda: _has(client, "narwhal", "Echo"), "the server's own batch")

        anyio.run(main)
    finally:
        if standalone.poll() is None:
            standalone.kill()
            standalone.wait(10)


def test_no_watch_switch(corpus, cfg):
    async def main() -> None:
        async with Client(params(SPECMEM_WATCH="0")) as client:
            await anyio.sleep(0)  # the server answers at once; it never tries the lock
            health = await call(client, "memory_health")
            assert health["watching"] is False and health["watcher"] is None
        assert current_holder(cfg.watcher_lock_path) is None

    anyio.run(main)
