"""Settings and the files an index keeps beside itself."""

from __future__ import annotations

from specmem.indexer import config, db, scan
from specmem.indexer.watch import Watcher
from tests.helpers import cli, memory, wait_for, write

USERS_FILES = ("scan.json", "write.lock", "watcher.lock", "watcher.json", ".db-updated")


def test_an_index_in_a_users_folder_touches_none_of_the_users_files(isolated, monkeypatch, tmp_path):
    """SPECMEM_DB=~/notes/memory.db: the notes folder's own scan.json (or any other name) is the user's."""
    notes = tmp_path / "notes"
    write(notes / "idea.md", memory("Idea", "an index beside its notes"))
    for name in USERS_FILES:
        write(notes / name, f"the user's own {name}\n")
    monkeypatch.setenv("SPECMEM_DB", str(notes / "memory.db"))
    monkeypatch.setenv("SPECMEM_ROOTS", str(notes))
    done = cli("scan")
    assert done.returncode == 0, done.stderr
    for name in USERS_FILES:
        assert (notes / name).read_text() == f"the user's own {name}\n", name
    side = sorted(p.name for p in notes.iterdir() if p.name.startswith("memory.db"))
    assert side and all(p.startswith("memory.db") for p in side), side


def test_two_indexes_in_one_folder_share_no_lock_and_no_progress_file(isolated, specs, hash_embedder):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "two indexes, one folder"))
    first = config.resolve(db=str(isolated / "shared" / "one.db"))
    second = config.resolve(db=str(isolated / "shared" / "two.db"))
    paths = ("signal_path", "watcher_lock_path", "watcher_status_path", "scan_state_path", "write_lock_path")
    assert not {getattr(first, p) for p in paths} & {getattr(second, p) for p in paths}
    watchers = [Watcher(c, hash_embedder, debounce=0.05) for c in (first, second)]
    for watcher in watchers:
        watcher.start()  # the second was refused while both used `watcher.lock`
    try:
        for watcher in watchers:
            wait_for(lambda w=watcher: w.status.batches >= 1, what="each watcher's start-up reconcile")
    finally:
        for watcher in watchers:
            watcher.stop()
    for c in (first, second):
        conn = db.connect(c.db_path)
        try:
            assert scan.scan(conn, c, hash_embedder).unchanged == 1
        finally:
            conn.close()
