"""The watcher lock under a cleanup of `.specmem/`: replaced by a folder or a symlink, the watcher keeps applying
batches and says why it cannot re-take its lock; deleted while a second watcher starts, one of the two yields, so
two never keep running side by side."""

from __future__ import annotations

import os
import shutil

import pytest

from specmem.indexer.lock import current_holder
from specmem.indexer.watch import Watcher, WatchHost
from tests.helpers import hits, memory, wait_for, write


@pytest.fixture
def running(cfg, conn, specs, hash_embedder):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "first memory"))
    watcher = Watcher(cfg, hash_embedder, debounce=0.05)
    watcher.start()
    wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
    yield watcher
    watcher.stop()


@pytest.mark.parametrize("replacement", ["folder", "symlink"])
def test_a_lock_replaced_by_a_folder_or_a_symlink_keeps_the_watcher_applying(
    running, cfg, conn, specs, tmp_path, replacement
):
    lock = cfg.watcher_lock_path
    lock.unlink()
    if replacement == "folder":
        lock.mkdir()
    else:
        target = tmp_path / "victim.txt"
        target.write_text("precious")
        os.symlink(target, lock)
    wait_for(
        lambda: any("watcher lock" in e or "symlink" in e or "folder" in e for e in running.status.errors),
        what="the watcher to say it cannot re-take its lock",
    )
    write(specs / "001-a" / "memory" / "later.md", memory("Later", "zanzibar after the cleanup"))
    wait_for(lambda: hits(conn, "zanzibar") == {"001-a/memory/later.md"}, what="the later edit")
    assert running.running
    if replacement == "symlink":
        assert (tmp_path / "victim.txt").read_text() == "precious"
    else:
        shutil.rmtree(lock)


def test_a_lock_deleted_while_a_second_watcher_starts_leaves_one_running(
    running, cfg, hash_embedder, conn, specs
):
    cfg.watcher_lock_path.unlink()  # a cleanup of .specmem/ while the watcher runs
    second = Watcher(cfg, hash_embedder, debounce=0.05)
    second.start()  # within the first one's check window: it takes the new lock file
    try:
        wait_for(lambda: not running.running, what="the watcher whose lock file was deleted to yield")
        assert current_holder(cfg.watcher_lock_path).pid == os.getpid()
        assert second.running
        write(specs / "001-a" / "memory" / "later.md", memory("Later", "kilimanjaro after the takeover"))
        wait_for(lambda: hits(conn, "kilimanjaro") == {"001-a/memory/later.md"}, what="the later edit")
    finally:
        second.stop()


def test_a_server_whose_watcher_yields_waits_to_take_over_again(cfg, hash_embedder, conn, specs):
    host = WatchHost(cfg, hash_embedder, retry=0.2)
    host.start()
    try:
        wait_for(lambda: host.watching, what="the server to watch")
        cfg.watcher_lock_path.unlink()
        other = Watcher(cfg, hash_embedder, debounce=0.05)
        other.start()
        wait_for(lambda: not host.watching, what="the server's watcher to yield")
        other.stop()
        wait_for(lambda: host.watching, what="the server to take over again")
    finally:
        host.stop()
