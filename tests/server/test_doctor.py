"""`specmem doctor`: each problem is found and comes with what to do."""

from __future__ import annotations

import json
import socket
import subprocess
import sys

from specmem.indexer import db, scan
from specmem.indexer.embed import get_embedder
from tests.helpers import memory, write


def doctor(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specmem", "doctor", *args], capture_output=True, text=True, timeout=120
    )


def test_healthy_index(specs, cfg):
    write(specs / "a.md", memory("A", "alpha"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.close()
    done = doctor()
    assert done.returncode == 0, done.stdout
    for name in (
        "apsw",
        "sqlite-vec",
        "fts5",
        "model",
        "integrity",
        "schema",
        "embeddings",
        "orphans",
        "pending",
    ):
        assert any(line.split()[:2] == ["ok", name] for line in done.stdout.splitlines()), (name, done.stdout)


def test_missing_index_orphans_and_stale_lock(specs, cfg):
    missing = doctor("--no-model")  # no index at all: a failure (issue 23), with what to run
    assert missing.returncode == 1 and "no index at" in missing.stdout and "specmem scan" in missing.stdout

    write(specs / "a.md", memory("A", "alpha"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.execute("PRAGMA foreign_keys=OFF")  # simulate damage that the schema would normally prevent
    with db.write_tx(conn):
        conn.execute(
            "INSERT INTO memory_chunks (memory_id, seq, heading, start_line, end_line, text, text_hash) "
            "VALUES (999, 0, 'h', 1, 1, 'orphan', 'x')"
        )
    conn.close()
    cfg.watcher_lock_path.write_text(
        json.dumps({"pid": 2**22 + 12345, "host": socket.gethostname(), "since_ms": 1, "role": "watcher"})
    )
    done = doctor("--no-model")
    assert done.returncode == 1
    assert "fail orphans" in done.stdout and "specmem scan --force" in done.stdout
    assert "stale lock record of dead watcher" in done.stdout
