"""Crash consistency: kill -9 a scan or a watcher at random points while it indexes; every time the database
passes its integrity check with all tables agreeing, and the next run converges to a fresh scan's state."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import time

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder

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
    """Whether every page's row matches the file on disk and is embedded (the killed run had finished)."""
    conn = db.connect(path, readonly=True)
    try:
        stored = {
            p: (s, m, e)
            for p, s, m, e in conn.execute("SELECT path, size, mtime_ns, embedding_status FROM memory_index")
        }
    finally:
        conn.close()
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


def test_kill_9_at_random_points(specs, cfg, tmp_path, shared_data):
    shutil.copytree(shared_data / "md-hugo-docs" / "content", specs, dirs_exist_ok=True)
    pages = sorted(specs.rglob("*.md"))
    rng = random.Random(20261121)
    env = dict(os.environ)
    interrupted = 0
    for round_ in range(KILLS):
        # Give every run real work: rewrite a random fifth of the pages, move a few, delete a few.
        for page in rng.sample(pages, len(pages) // 5):
            if page.exists():
                page.write_text(page.read_text(errors="replace") + f"\nround {round_}\n")
        command = "watch" if round_ % 2 else "scan"
        proc = subprocess.Popen(
            [sys.executable, "-m", "specmem", command],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        time.sleep(rng.uniform(0.3, 1.6))  # the kill point: the randomness is the test's input
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
        if cfg.db_path.exists():
            invariants(cfg.db_path)
            interrupted += not up_to_date(cfg.db_path, pages)

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
