"""The read side under the same attacks as the write side: a memory flipped between a file and a symlink out of
the roots while it is read, and an index rebuilt under a running server."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path

import specmem
from specmem.indexer import db
from specmem.indexer.errors import NotFound
from specmem.server.state import ReadState
from tests.helpers import memory, write

SECRET = "outside-the-roots-secret"


def test_reads_never_follow_a_memory_flipped_to_a_symlink_out_of_the_roots(specs, cfg, run_scan, tmp_path):
    outside = write(tmp_path / "outside.md", memory("Outside", SECRET))
    path = write(specs / "001-a" / "memory" / "m.md", memory("Inside", "inside text"))
    regular = path.read_bytes()
    run_scan()
    stop = threading.Event()

    def flip() -> None:
        link, copy = path.with_name(".m.link"), path.with_name(".m.copy")
        while not stop.is_set():
            os.symlink(outside, link)
            os.replace(link, path)
            copy.write_bytes(regular)
            os.replace(copy, path)

    flipper = threading.Thread(target=flip, daemon=True)
    flipper.start()
    leaked = served = 0
    try:
        with specmem.open() as mem:
            for _ in range(300):
                try:
                    content = mem.get("001-a/memory/m.md").content
                except NotFound:
                    continue
                served += 1
                leaked += SECRET in content
    finally:
        stop.set()
        flipper.join(10)
    assert leaked == 0, f"{leaked} of {served} reads returned the file outside the roots"


def test_a_servers_vectors_follow_an_index_rebuilt_under_it(specs, cfg, conn, run_scan, hash_embedder):
    a = write(specs / "001-a" / "memory" / "a.md", memory("First", "apples apples orchards"))
    b = write(specs / "001-a" / "memory" / "b.md", memory("Second", "bananas bananas plantations"))
    run_scan()
    state = ReadState(cfg, load_model=False, embedder=hash_embedder, memory_vectors=True)
    try:
        with specmem.open(embedder=hash_embedder) as mem:
            mem._reader = state  # a server's reader: the vectors held in memory between calls
            state.vectors(state.conn())
            assert state.wait_vectors(60)
            top = mem.search("apples orchards", mode="semantic", limit=1).results[0]
            assert top.title == "First"
            # As `doctor` advises for a damaged index: delete it; the files change; a scan rebuilds it.
            conn.close()
            for name in os.listdir(cfg.db_path.parent):
                if name.startswith(cfg.db_path.name):
                    os.unlink(cfg.db_path.parent / name)
            a_text, b_text = a.read_text(), b.read_text()
            a.write_text(b_text.replace("Second", "First"))
            b.write_text(a_text.replace("First", "Second"))
            fresh = db.connect(cfg.db_path)
            try:
                from specmem.indexer.scan import scan

                scan(fresh, cfg, hash_embedder)
            finally:
                fresh.close()
            top = mem.search("apples orchards", mode="semantic", limit=1).results[0]
            assert Path(top.path).name == "b.md", "the server ranked by the vectors of the deleted index"
    finally:
        state.close()
        shutil.rmtree(cfg.db_path.parent, ignore_errors=True)
