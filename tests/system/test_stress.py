"""Many processes on one database: 4 servers answering searches over stdio, 1 watcher, and 1 process editing,
renaming and deleting files and writing memories through a server. Nothing may fail, lock or get lost.

Runs on 200 generated memories, and (for half as long, as an extra check on real content) on 200 pages of
md-hugo-docs under the `data` marker. SPECMEM_STRESS_SECONDS sets the length of the busy phase (default 25 s in
the suite; longer for a soak run). The test counts what
happened, never how fast: speed is measured in tests/bench/.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import threading
import time
from contextlib import AsyncExitStack
from pathlib import Path

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from tests.corpus import write_corpus
from tests.helpers import memory

SECONDS = float(os.environ.get("SPECMEM_STRESS_SECONDS", "25"))
WORDS = [  # found in both corpora
    "template",
    "function",
    "cache",
    "token",
    "index",
    "partial",
    "module",
    "config",
    "search",
    "release",
]
EDITS = ("edit", "rename", "delete", "create")


def snapshot(path: Path) -> list[tuple]:
    conn = db.connect(path, readonly=True)
    try:
        return sorted(conn.execute("SELECT rel_path, title, content_hash FROM memory_index").fetchall())
    finally:
        conn.close()


@pytest.mark.parametrize("source", ["generated", pytest.param("md-hugo-docs", marks=pytest.mark.data)])
def test_four_servers_a_watcher_and_an_editor(specs, cfg, tmp_path, request, source):
    if source == "generated":
        write_corpus(specs, n=200, seed=7)
    else:
        pages = sorted((request.getfixturevalue("shared_data") / source / "content").rglob("*.md"))[:200]
        for i, page in enumerate(pages):
            target = specs / f"{i % 8:03d}-docs" / "memory" / page.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(page, target)
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.close()

    logs = tmp_path / "logs"
    logs.mkdir()
    env = dict(os.environ)
    watcher_log = open(logs / "watcher.log", "w")  # noqa: SIM115 - closed in finally
    watcher = subprocess.Popen([sys.executable, "-m", "specmem", "watch"], env=env, stderr=watcher_log)
    rng = random.Random(7)
    errors: list[str] = []
    searches = [0, 0, 0, 0]  # per server
    edits = dict.fromkeys(EDITS, 0)  # per kind of file change the editor made
    writes: list[tuple[str, str]] = []  # (title, path)
    stop = threading.Event()

    def editor() -> None:
        files = sorted(specs.rglob("*.md"))
        n = 0
        while not stop.is_set():
            n += 1
            path = rng.choice(files)
            op = rng.random()
            try:
                if op < 0.5 and path.exists():
                    path.write_text(path.read_text(errors="replace") + f"\nedit {n} {rng.choice(WORDS)}\n")
                    kind = "edit"
                elif op < 0.7 and path.exists():
                    new = path.with_name(f"renamed-{n}-{path.name}")
                    path.rename(new)
                    files[files.index(path)] = new
                    kind = "rename"
                elif op < 0.8 and path.exists():
                    path.unlink()
                    files.remove(path)
                    kind = "delete"
                else:
                    new = specs / f"{n % 8:03d}-docs" / "memory" / f"new-{n}.md"
                    new.parent.mkdir(parents=True, exist_ok=True)
                    new.write_text(memory(f"New {n}", f"created by the editor {rng.choice(WORDS)}"))
                    files.append(new)
                    kind = "create"
                edits[kind] += 1
            except (FileNotFoundError, ValueError):
                pass
            stop.wait(0.01)

    def params(i: int) -> StdioServerParameters:
        return StdioServerParameters(
            command=sys.executable,
            args=["-m", "specmem", "serve"],
            env=env,
            cwd=str(Path.cwd()),
        )

    async def main() -> None:
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(Client(params(i))) for i in range(4)]

            async def searcher(i: int, client: Client) -> None:
                while not stop.is_set():
                    query = " ".join(rng.sample(WORDS, 2))
                    result = await client.call_tool("memory_search", {"query": query, "limit": 5})
                    searches[i] += 1
                    if result.is_error:
                        errors.append(result.content[0].text)

            async def writer(client: Client) -> None:
                k = 0
                while not stop.is_set():
                    k += 1
                    title = f"Stress write {k}"
                    result = await client.call_tool(
                        "memory_write",
                        {"title": title, "content": f"written under load {k}", "spec_folder": "900-writes"},
                    )
                    if result.is_error:
                        errors.append(result.content[0].text)
                    else:
                        writes.append((title, result.structured_content["path"]))
                    await anyio.sleep(0.1)

            async def timer() -> None:
                await anyio.sleep(SECONDS if source == "generated" else SECONDS / 2)
                stop.set()

            async with anyio.create_task_group() as tg:
                tg.start_soon(timer)
                tg.start_soon(anyio.to_thread.run_sync, editor)
                for i, client in enumerate(clients):
                    tg.start_soon(searcher, i, client)
                tg.start_soon(writer, clients[0])

    try:
        anyio.run(main)
        fresh = config.resolve(db=str(tmp_path / "fresh" / "index.db"))
        fconn = db.connect(fresh.db_path)
        scan.scan(fconn, fresh, get_embedder(fresh.model), embed=False)
        fconn.close()
        expected = snapshot(fresh.db_path)
        deadline = time.monotonic() + 60
        while snapshot(cfg.db_path) != expected:
            assert time.monotonic() < deadline, "the index never converged to a fresh scan of the files"
            time.sleep(0.1)
    finally:
        stop.set()
        watcher.terminate()
        watcher.wait(30)
        watcher_log.close()

    assert errors == [], errors[:5]
    # Every kind of work happened at least once, however slow the machine: each server answered searches, the
    # editor made every kind of change, and memories were written through a server.
    assert all(searches) and all(edits.values()) and writes, (searches, edits, len(writes))
    conn = db.connect(cfg.db_path, readonly=True)
    for title, path in writes:
        assert Path(path).exists(), path
        rows = conn.execute("SELECT path FROM memory_index WHERE title = ?", (title,)).fetchall()
        assert rows == [(path,)], (title, rows)
    conn.close()
    assert len({p for _, p in writes}) == len(writes)
    # A server's failures reach the client as tool errors (asserted empty above); the watcher logs its own.
    text = (logs / "watcher.log").read_text()
    assert (
        "database is locked" not in text.lower() and "Traceback" not in text and "could not apply" not in text
    ), text[-2000:]
