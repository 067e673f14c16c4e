"""specmem's own files (the index's folder, locks, status and progress files, the remembered scans) are never
reached through a symlink: a repository that commits `.specmem/index.db-write.lock -> ../../victim.txt`, or another user's
link in a shared folder, is refused with a one-line error and its target is left as it was."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from specmem.indexer import atomic, config, db, remembered, scanstate
from specmem.indexer.errors import StateFileError
from specmem.indexer.lock import FileLock, write_watcher_status
from specmem.indexer.watch import Watcher
from tests.helpers import cli, memory, write

SECRET = "precious text that must survive\n" * 20
# The index's own files, each as a repository could commit it: a link out of the project.
STATE_FILES = [
    "index.db",
    "index.db-wal",
    "index.db-shm",
    "index.db-write.lock",
    "index.db-watcher.lock",
    "index.db-watcher.json",
    "index.db-updated",
    "index.db-scan.json",
]


@pytest.fixture
def cloned(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A cloned project with one memory and its index where specmem puts it by default (`.specmem/`)."""
    monkeypatch.delenv("SPECMEM_DB")
    monkeypatch.delenv("SPECMEM_ROOTS")
    write(isolated / "specs" / "001-a" / "memory" / "a.md", memory("A memory", "about caching"))
    (isolated / ".git").mkdir()
    return isolated


def victim(project: Path) -> Path:
    return write(project.parent / "victim.txt", SECRET)


def untouched(path: Path) -> bool:
    return path.read_text() == SECRET


@pytest.mark.parametrize("name", STATE_FILES)
def test_a_committed_link_among_the_index_files_is_refused_and_its_target_kept(cloned, name):
    target = victim(cloned)
    (cloned / ".specmem").mkdir()
    os.symlink(f"../../{target.name}", cloned / ".specmem" / name)
    result = cli("scan")
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr
    assert "is a symlink" in result.stderr and name in result.stderr
    assert untouched(target)


def test_a_dangling_link_creates_nothing_where_it_points(cloned):
    (cloned / ".specmem").mkdir()
    os.symlink("../../made-by-specmem.txt", cloned / ".specmem" / "index.db-write.lock")
    result = cli("scan")
    assert result.returncode != 0 and "is a symlink" in result.stderr
    assert not (cloned.parent / "made-by-specmem.txt").exists()


def test_a_symlinked_index_folder_is_refused_and_its_target_left_alone(cloned):
    elsewhere = cloned.parent / "elsewhere"
    elsewhere.mkdir(mode=0o755)
    os.chmod(elsewhere, 0o755)
    os.symlink(elsewhere, cloned / ".specmem")
    result = cli("scan")
    assert result.returncode != 0 and "is a symlink" in result.stderr and ".specmem" in result.stderr
    assert "Traceback" not in result.stderr
    assert list(elsewhere.iterdir()) == []
    assert stat.S_IMODE(elsewhere.stat().st_mode) == 0o755


def test_the_watcher_lock_and_status_are_never_followed(cfg, hash_embedder):
    target = victim(cfg.project)
    cfg.db_path.parent.mkdir(parents=True)
    os.symlink(target, cfg.watcher_lock_path)
    with pytest.raises(StateFileError, match="is a symlink"):
        Watcher(cfg, hash_embedder).start()
    assert untouched(target)
    holder = FileLock(cfg.write_lock_path, "t")
    assert holder.try_acquire()
    try:
        os.symlink(target, cfg.watcher_status_path)
        with pytest.raises(StateFileError):
            write_watcher_status(cfg.watcher_status_path, holder.holder, 1, 1, "x")  # type: ignore[arg-type]
    finally:
        holder.release()
    assert untouched(target)


@pytest.mark.parametrize("kind", ["folder", "fifo"])
def test_a_lock_that_is_not_a_regular_file_is_refused_with_a_message(cfg, kind):
    cfg.db_path.parent.mkdir(parents=True)
    if kind == "folder":
        cfg.write_lock_path.mkdir()
    else:
        os.mkfifo(cfg.write_lock_path)
    with pytest.raises(StateFileError, match="not a regular file"):
        FileLock(cfg.write_lock_path, "t").try_acquire()


def test_progress_and_signal_readers_ignore_a_link_and_the_writer_refuses_it(cfg, conn, run_scan):
    target = write(cfg.project.parent / "victim.json", json.dumps({"committed_ms": 1, "generation": 99}))
    os.symlink(target, cfg.scan_state_path)
    assert scanstate.read(cfg.scan_state_path) is None
    with pytest.raises(StateFileError):
        run_scan()
    assert json.loads(target.read_text())["generation"] == 99


def test_remembered_scans_are_never_written_through_a_link(cfg):
    store = config.user_data_dir() / remembered.FILE
    store.parent.mkdir(parents=True)
    target = victim(cfg.project)
    os.symlink(target, store)
    assert remembered.remembered_for(cfg.project) is None
    with pytest.raises(StateFileError):
        remembered.remember(cfg)
    assert untouched(target)


def test_a_project_is_never_found_in_a_shared_temporary_folder(tmp_path):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)  # like /tmp: anybody may put a specs/ folder or a specmem.toml there
    (shared / "specs").mkdir()
    write(shared / "specmem.toml", 'db = "/somewhere/else.db"\n')
    work = shared / "mine" / "work"
    work.mkdir(parents=True)
    assert config.find_project(work) is None
    assert config.find_project_file(work) is None
    (shared / "mine" / "specs").mkdir()
    assert config.find_project(work) == shared / "mine"


def test_own_files_are_opened_only_as_regular_files_without_links(tmp_path):
    folder = tmp_path / "own"
    fd = atomic.open_own_file(folder / "x.lock", os.O_RDWR | os.O_CREAT)
    os.close(fd)
    assert atomic.read_own_file(folder / "missing") is None
    os.symlink(folder / "x.lock", folder / "link")
    with pytest.raises(StateFileError, match="is a symlink"):
        atomic.read_own_file(folder / "link")
    os.symlink(folder, tmp_path / "linked")
    with pytest.raises(StateFileError, match="is a symlink"):
        atomic.read_own_file(tmp_path / "linked" / "x.lock")
    with pytest.raises(StateFileError):
        atomic.write_own_file(folder / "link", b"{}")
    assert (folder / "x.lock").read_bytes() == b""


def test_an_index_opened_for_reading_through_a_link_is_refused(cfg, conn, run_scan):
    run_scan()
    moved = cfg.db_path.parent.with_name("real-index")
    os.rename(cfg.db_path.parent, moved)
    os.symlink(moved, cfg.db_path.parent)
    with pytest.raises(StateFileError):
        db.connect(cfg.db_path, readonly=True)
