"""Settings and the files an index keeps beside itself."""

from __future__ import annotations

import json
import subprocess
import sys

from specmem.indexer import config, db, remembered, scan
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


ODD_REMEMBERED = [
    [1, 2, 3],
    "a string",
    {"/x": "not an entry", "/y": {"roots": 5, "db": "/d"}, "/z": {"roots": ["/r"], "db": ["/d"]}},
    {"/w": {"roots": ["/r"], "db": "/d", "at_ms": "yesterday"}, "/v": {"roots": [None], "db": "/d"}},
    {"/u": {"roots": [], "db": "/d"}, "/t": None, "/s": {"roots": ["/r"], "db": "/d", "at_ms": 1e300}},
]


def test_remembered_scans_of_unexpected_types_break_no_command(isolated, monkeypatch, tmp_path):
    """A hand-edited (or other version's) remembered-scans.json broke every command outside a project."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    outside = tmp_path / "outside"
    outside.mkdir()
    for odd in [*ODD_REMEMBERED, {"indexes": ODD_REMEMBERED}, {"indexes": [None, 5, {"roots": 3}]}]:
        path = remembered._file()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(odd))
        assert remembered.remembered_for(outside) is None
        done = cli("paths", cwd=outside)
        assert done.returncode == 0 and "Traceback" not in done.stderr, (odd, done.stderr)
        remembered.remember(config.resolve(), outside)  # junk is dropped, the new entry kept
        assert remembered.remembered_for(outside) is not None


REMEMBER_MANY = """
import sys
from pathlib import Path
from specmem.indexer import config, remembered

cfg = config.resolve()
sys.stdin.readline()  # all start together
for i in range(5):
    folder = Path(sys.argv[1]) / f"f{i}"
    folder.mkdir(parents=True)
    remembered.remember(cfg, folder)
"""


def test_scans_remembered_at_the_same_moment_are_all_kept(isolated, tmp_path):
    """10 scans finishing at once remembered only 44 of their 50 folders (a read-modify-write race)."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", REMEMBER_MANY, str(tmp_path / f"p{n}")], stdin=subprocess.PIPE, text=True
        )
        for n in range(10)
    ]
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.close()
    assert all(proc.wait(timeout=120) == 0 for proc in procs)
    assert len(remembered.load()) == 50


def test_a_project_file_with_a_bom_is_read(isolated, monkeypatch):
    """Editors on Windows save `specmem.toml` with a byte order mark: it was refused."""
    monkeypatch.delenv("SPECMEM_ROOTS")
    (isolated / "specmem.toml").write_bytes(b'\xef\xbb\xbfroots = ["notes"]\n')
    assert config.resolve().roots == (isolated / "notes",)


def test_an_index_path_that_is_a_folder_is_said_in_one_line(isolated, monkeypatch, tmp_path):
    """SPECMEM_DB naming a folder read as "disk I/O error"."""
    folder = tmp_path / "a-folder"
    folder.mkdir()
    done = cli("list", env={"SPECMEM_DB": str(folder)})
    assert done.returncode != 0 and "Traceback" not in done.stderr
    assert "is a folder" in done.stderr and "disk I/O" not in done.stderr, done.stderr
