"""Crash consistency: kill -9 a scan or a watcher at random points while it indexes; every time the database
passes its integrity check with all tables agreeing, and the next run converges to a fresh scan's state.

Runs on 1,000 generated memories, and (with half the kills, as an extra check on real content) on the 1,000 pages
of md-hugo-docs under the `data` marker. A kill only
tests something when it lands while the process works, so the kill point is drawn after the process's first
write to the database, within the time a whole run took so far; and the test asserts that at least a quarter of
the kills left the index unfinished."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

import pytest

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from tests.corpus import write_corpus
from tests.helpers import memory

KILLS = 20


def invariants(path) -> None:  # type: ignore[no-untyped-def]
    conn = db.connect(path, readonly=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        chunks = conn.execute("SELECT count(*) FROM memory_chunks").fetchall()[0][0]
        assert conn.execute("SELECT count(*) FROM memory_fts").fetchall()[0][0] == chunks
        assert (
            conn.execute(
                "SELECT count(*) FROM memory_chunks WHERE memory_id NOT IN (SELECT id FROM memory_index)"
            ).fetchall()[0][0]
            == 0
        )
        assert (
            conn.execute(
                "SELECT count(*) FROM memory_fts WHERE rowid NOT IN (SELECT id FROM memory_chunks)"
            ).fetchall()[0][0]
            == 0
        )
        if db.has_table(conn, "vec_memories"):
            embedded = conn.execute("SELECT count(*) FROM memory_chunks WHERE embedded = 1").fetchall()[0][0]
            assert conn.execute("SELECT count(*) FROM vec_memories").fetchall()[0][0] == embedded
            assert (
                conn.execute(
                    "SELECT count(*) FROM vec_memories WHERE chunk_id NOT IN (SELECT id FROM memory_chunks)"
                ).fetchall()[0][0]
                == 0
            )
        assert (
            conn.execute(
                "SELECT count(*) FROM memory_index m WHERE embedding_status = 'done' AND EXISTS "
                "(SELECT 1 FROM memory_chunks c WHERE c.memory_id = m.id AND c.embedded = 0)"
            ).fetchall()[0][0]
            == 0
        )
    finally:
        conn.close()


def up_to_date(path, pages) -> bool:  # type: ignore[no-untyped-def]
    """Whether the rows are exactly the pages, each matching its file and embedded (the killed run had finished)."""
    conn = db.connect(path, readonly=True)
    try:
        stored = {
            p: (s, m, e)
            for p, s, m, e in conn.execute("SELECT path, size, mtime_ns, embedding_status FROM memory_index")
        }
    finally:
        conn.close()
    if set(stored) != {str(page) for page in pages}:
        return False
    for page in pages:
        st = page.stat()
        if (
            stored.get(str(page), (None,))[:2] != (st.st_size, st.st_mtime_ns)
            or stored[str(page)][2] == "pending"
        ):
            return False
    return True


def snapshot(path) -> list[tuple]:  # type: ignore[no-untyped-def]
    conn = db.connect(path, readonly=True)
    try:
        return sorted(
            conn.execute("SELECT rel_path, title, content_hash, line_count FROM memory_index").fetchall()
        )
    finally:
        conn.close()


def disk_state(path) -> tuple:  # type: ignore[no-untyped-def]
    """The database file and its WAL as stat sees them: changes when a process writes to the database."""
    out = []
    for suffix in ("", "-wal"):
        try:
            st = os.stat(f"{path}{suffix}")
            out.append((st.st_size, st.st_mtime_ns))
        except FileNotFoundError:
            out.append(None)
    return tuple(out)


def change_files(specs, pages, rng, round_: int) -> None:  # type: ignore[no-untyped-def]
    """Real work for the next run: rewrite a tenth of the pages, move three, delete two, create two. (A scan of
    more changes than one batch, with a move in a later batch, has its own test in test_scan.)"""
    for page in rng.sample(pages, len(pages) // 10):
        page.write_text(page.read_text(errors="replace") + f"\nround {round_}\n")
    for k, page in enumerate(rng.sample(pages, 3)):
        moved = rng.choice(pages).parent / f"moved-{round_}-{k}-{page.name}"
        page.rename(moved)
        pages[pages.index(page)] = moved
    for page in rng.sample(pages, 2):
        page.unlink()
        pages.remove(page)
    for k in range(2):
        new = rng.choice(pages).parent / f"new-{round_}-{k}.md"
        new.write_text(memory(f"New {round_} {k}", f"written before round {round_}"))
        pages.append(new)


@pytest.mark.parametrize("source", ["generated", pytest.param("md-hugo-docs", marks=pytest.mark.data)])
def test_kill_9_at_random_points(specs, cfg, tmp_path, request, source):
    if source == "generated":
        write_corpus(specs, n=1000, seed=20261121)
    else:
        shutil.copytree(
            request.getfixturevalue("shared_data") / source / "content", specs, dirs_exist_ok=True
        )
    pages = sorted(specs.rglob("*.md"))
    kills = KILLS if source == "generated" else KILLS // 2
    rng = random.Random(20261121)
    env = dict(os.environ)
    interrupted = 0
    work = (
        1.0  # seconds from a run's first write to its end, learnt from the runs that finished before the kill
    )
    for round_ in range(kills):
        if round_:  # the first run indexes every page into a new database
            change_files(specs, pages, rng, round_)
        command = "watch" if round_ % 2 else "scan"
        before = disk_state(cfg.db_path)
        log = tmp_path / f"round-{round_}-{command}.log"
        with open(log, "w") as stderr:
            proc = subprocess.Popen(
                [sys.executable, "-m", "specmem", command],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                start_new_session=True,
            )
        deadline = time.monotonic() + 120
        while disk_state(cfg.db_path) == before and proc.poll() is None:  # until it starts writing
            assert time.monotonic() < deadline, f"`specmem {command}` never wrote to the database"
            time.sleep(0.005)
        began = time.monotonic()
        try:
            status = proc.wait(rng.uniform(0, work))  # the kill point: the randomness is the test's input
            assert status == 0, log.read_text()
            work = time.monotonic() - began  # it finished first: aim earlier next time
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
        if cfg.db_path.exists():
            invariants(cfg.db_path)
            if up_to_date(cfg.db_path, pages):
                work = min(work, time.monotonic() - began)  # a watcher that had caught up
            else:
                interrupted += 1
                work *= 1.25  # and later next time, so kills also land late in a run
    assert interrupted >= kills // 4, f"only {interrupted} of {kills} kills landed while there was work"

    done = subprocess.run(
        [sys.executable, "-m", "specmem", "scan"], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    invariants(cfg.db_path)
    fresh = config.resolve(db=str(tmp_path / "fresh" / "index.db"))
    conn = db.connect(fresh.db_path)
    scan.scan(conn, fresh, get_embedder(fresh.model))
    conn.close()
    assert snapshot(cfg.db_path) == snapshot(fresh.db_path)
    conn = db.connect(cfg.db_path, readonly=True)
    assert conn.execute(
        "SELECT count(*) FROM memory_index WHERE embedding_status = 'pending'"
    ).fetchall() == [(0,)]
    conn.close()
