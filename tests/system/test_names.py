"""File and folder names as git and archives leave them: bytes that are not UTF-8 (`caf\\xe9.md`, Latin-1) and
decomposed (NFD) accents. A name specmem cannot store is reported and skipped, and everything else is indexed, by
scans and by the watcher; a memory is found by either spelling of its accents."""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

import pytest

import specmem
from specmem.indexer.watch import Watcher
from tests.helpers import cli, hits, memory, wait_for, write

LATIN1 = b"caf\xe9"  # "café" as Latin-1: not UTF-8


def byte_path(folder: Path, *parts: bytes) -> bytes:
    return os.path.join(os.fsencode(folder), *parts)


def write_bytes_named(path: bytes, text: str) -> None:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as fh:
        fh.write(text.encode())


def indexed(db_path: Path) -> int:
    with specmem.open(db=db_path) as mem:
        return mem.list(limit=1).total


def test_a_name_that_is_not_utf8_is_reported_and_skipped_and_the_rest_indexed(specs, cfg):
    for i in range(300):
        write(specs / f"{i:03d}-f" / "memory" / "m.md", memory(f"Memory {i}", f"body {i}"))
    write_bytes_named(byte_path(specs, b"001-x", b"memory", LATIN1 + b".md"), memory("Latin", "latin one"))
    write_bytes_named(byte_path(specs, LATIN1 + b"-folder", b"memory", b"inside.md"), memory("In", "inside"))
    result = cli("scan")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "300 added" in result.stdout
    out = result.stdout + result.stderr
    assert "caf\\xe9.md" in out and "caf\\xe9-folder" in out and "not UTF-8" in out
    assert indexed(cfg.db_path) == 300


def test_a_root_whose_name_is_not_utf8_is_reported(isolated):
    root = byte_path(isolated, LATIN1 + b"-root")
    write_bytes_named(os.path.join(root, b"a.md"), memory("A", "a"))
    result = cli("scan", os.fsdecode(root))
    assert "Traceback" not in result.stderr
    assert "not UTF-8" in result.stdout + result.stderr


def test_the_watcher_skips_a_name_that_is_not_utf8_and_indexes_later_edits(specs, cfg, conn, hash_embedder):
    watcher = Watcher(cfg, hash_embedder, debounce=0.05)
    watcher.start()
    try:
        wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
        write_bytes_named(
            byte_path(specs, b"001-x", b"memory", LATIN1 + b".md"), memory("Latin", "latin one")
        )
        write_bytes_named(
            byte_path(specs, LATIN1 + b"-dir", b"memory", b"y.md"), memory("Dir", "in a bad dir")
        )
        wait_for(lambda: watcher.status.batches >= 2, what="a batch with the bad names")
        write(specs / "002-ok" / "memory" / "later.md", memory("Later", "zanzibar edit"))
        wait_for(lambda: hits(conn, "zanzibar") == {"002-ok/memory/later.md"}, what="the later edit")
        assert not watcher.status.errors
        problems = [m for r in [watcher.status.last_report] if r for _, m in r.problems]
        assert all("Traceback" not in m for m in problems)
    finally:
        watcher.stop()


@pytest.mark.parametrize("stored", ["NFD", "NFC"])
def test_a_memory_is_found_by_either_spelling_of_its_accents(specs, cfg, run_scan, stored):
    name = unicodedata.normalize(stored, "café-notes.md")
    write(specs / "001-a" / "memory" / name, memory("Cafe", "accents"))
    run_scan()
    other = "NFC" if stored == "NFD" else "NFD"
    with specmem.open() as mem:
        for spelling in (stored, other):
            rel = f"001-a/memory/{unicodedata.normalize(spelling, 'café-notes.md')}"
            assert mem.get(rel).title == "Cafe"
            assert mem.get(str(specs / rel)).title == "Cafe"
