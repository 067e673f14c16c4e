"""Changes that keep a file's size and mtime (touch -r, cp -p, an editor restoring the mtime, a coarse-timestamp
filesystem) are seen by scans and by the watcher: the fast path also compares ctime and inode, and a file modified
within the timestamp granularity of its read is hashed again at its next look (git's racy rule)."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from specmem.indexer import db, scan
from specmem.indexer.watch import Watcher
from tests.helpers import memory, wait_for, write


def hits(conn, word: str) -> set[str]:
    return {
        r[0]
        for r in conn.execute(
            "SELECT m.rel_path FROM memory_fts f JOIN memory_chunks c ON c.id = f.rowid "
            "JOIN memory_index m ON m.id = c.memory_id WHERE memory_fts MATCH ?",
            (word,),
        )
    }


def same_size_same_mtime(path: Path, old: str, new: str, how: str, tmp: Path) -> None:
    """Replace `old` by `new` (same length) in the file and leave its size and mtime as they were."""
    assert len(old) == len(new)
    before = path.stat()
    text = path.read_text().replace(old, new)
    if how == "utime":  # an editor or a script restoring the mtime it read
        path.write_text(text)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    elif how == "touch -r":
        reference = tmp / "reference"
        reference.touch()
        os.utime(reference, ns=(before.st_atime_ns, before.st_mtime_ns))
        path.write_text(text)
        subprocess.run(["touch", "-r", str(reference), str(path)], check=True)
    elif how == "cp -p":
        source = tmp / "source.md"
        source.write_text(text)
        os.utime(source, ns=(before.st_atime_ns, before.st_mtime_ns))
        subprocess.run(["cp", "-p", str(source), str(path)], check=True)
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


def specmem(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specmem", *args], cwd=cwd, capture_output=True, text=True, timeout=120
    )


def aged(path: Path, seconds: float = 3600) -> Path:
    """Give the file an mtime in the past, as every file has that was not edited just now."""
    then = time.time_ns() - int(seconds * 1e9)
    os.utime(path, ns=(then, then))
    return path


@pytest.mark.parametrize("how", ["utime", "touch -r", "cp -p"])
def test_same_size_same_mtime_edit_is_seen_by_a_scan(conn, specs, run_scan, tmp_path, how):
    path = aged(write(specs / "a.md", memory("A", "the walrus sleeps")))
    run_scan()
    same_size_same_mtime(path, "walrus", "badger", how, tmp_path)
    report = run_scan()
    assert report.updated == 1, report
    assert hits(conn, "badger") == {"a.md"} and hits(conn, "walrus") == set()


def test_same_size_same_mtime_edit_is_seen_by_the_watcher(conn, cfg, specs, hash_embedder, tmp_path):
    path = aged(write(specs / "a.md", memory("A", "the walrus sleeps")))
    watcher = Watcher(cfg, hash_embedder, debounce=0.05, embed=False)
    watcher.start()
    try:
        wait_for(lambda: hits(conn, "walrus") == {"a.md"}, what="the start-up reconcile")
        same_size_same_mtime(path, "walrus", "badger", "touch -r", tmp_path)
        wait_for(lambda: hits(conn, "badger") == {"a.md"}, what="the edit to be indexed")
        assert hits(conn, "walrus") == set()
    finally:
        watcher.stop()


def test_a_file_modified_within_the_granularity_of_its_read_is_hashed_again(
    conn, specs, run_scan, monkeypatch
):
    """A filesystem with coarse timestamps (FAT: 2 s, HFS+: 1 s) gives two writes in one tick the same mtime; a
    file whose mtime is not safely before the moment it was read is read again at its next look."""
    aged(write(specs / "settled.md", memory("Settled", "old news")))
    racy = write(specs / "racy.md", memory("Racy", "still being edited"))
    # Deterministic stand-in for "modified in the same tick as the read": an mtime at or after the read.
    later = time.time_ns() + 3_600_000_000_000
    os.utime(racy, ns=(later, later))
    run_scan()
    reads: list[str] = []
    real = scan.read_head
    monkeypatch.setattr(scan, "read_head", lambda path, limit: reads.append(path.name) or real(path, limit))
    report = run_scan()
    assert reads == ["racy.md"] and report.unchanged == 2 and report.updated == 0
    aged(racy)  # now safely in the past: hashed once more (its mtime changed), then left alone
    run_scan()
    reads.clear()
    run_scan()
    assert reads == []


def test_rows_indexed_before_ctime_and_inode_were_kept_are_hashed_once(conn, specs, run_scan, monkeypatch):
    """The migration leaves old rows without ctime and inode: their next look hashes them, and rewrites nothing."""
    aged(write(specs / "a.md", memory("A", "alpha")))
    run_scan()
    conn.execute("UPDATE memory_index SET ctime_ns = -1, inode = -1")
    chunk_ids = conn.execute("SELECT id FROM memory_chunks").fetchall()
    reads: list[str] = []
    real = scan.read_head
    monkeypatch.setattr(scan, "read_head", lambda path, limit: reads.append(path.name) or real(path, limit))
    assert run_scan().unchanged == 1 and reads == ["a.md"]
    assert conn.execute("SELECT id FROM memory_chunks").fetchall() == chunk_ids
    reads.clear()
    run_scan()
    assert reads == []


# -- 18. an mtime in the future ----------------------------------------------------------------------------------


def test_a_future_mtime_is_clamped_to_now_with_a_warning(specs, isolated, cfg):
    """A file dated next year (a wrong clock, an archive, `touch -d`) must neither escape decay (temporary tier)
    nor pass every `--since`: it counts as modified when it was indexed, and the scan says so."""
    future = write(
        specs / "future.md", memory("Future", "a zeppelin from next year", importance_tier="temporary")
    )
    next_year = time.time_ns() + 365 * 86_400 * 10**9
    os.utime(future, ns=(next_year, next_year))
    aged(write(specs / "past.md", memory("Past", "a zeppelin from last year")))
    done = specmem("scan", "--json", "--no-embed", cwd=isolated)
    assert done.returncode == 0, done.stderr
    warnings = {Path(w["path"]).name: w["message"] for w in json.loads(done.stdout)["warnings"]}
    assert "in the future" in warnings.get("future.md", ""), warnings
    tomorrow = (dt.date.today() + dt.timedelta(days=1)).isoformat()
    found = specmem("search", "zeppelin", "--mode", "keyword", "--since", tomorrow, "--json", cwd=isolated)
    assert found.returncode == 0, found.stderr
    assert json.loads(found.stdout)["results"] == []
    conn = db.connect(cfg.db_path, readonly=True)
    try:
        updated = conn.execute("SELECT updated_at FROM memory_index WHERE title = 'Future'").fetchall()[0][0]
    finally:
        conn.close()
    assert updated <= time.time_ns() // 1_000_000
