"""Scans remembered outside a configured project.

`specmem scan DIR` where no `specmem.toml` governs records, when it starts, the folder it ran in, its roots and its
index in the user data folder (the index's place depends on the roots, so the record cannot live in the index).
Every later command run there, or inside those roots, finds them: the innermost remembered scan wins, and a folder
holding `.git`, `specs/` or `specmem.toml` is a project of its own that no scan remembered above it takes over.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from specmem.indexer.atomic import read_own_file, write_own_file
from specmem.indexer.config import SIDE_FILES, Config, is_project, shared, side_file, user_data_dir
from specmem.indexer.errors import SpecmemError
from specmem.indexer.lock import FileLock

FILE = "remembered-scans.json"
LIMIT = 8 * 1024 * 1024  # bytes of the record read; MAX_SCANS records fit well within it
MAX_SCANS = 1000  # the oldest are forgotten first
LOCK_TIMEOUT = 30.0
# An index in here was made for a remembered scan; `forget` deletes it with the record (else it is the user's).
INDEXES = "indexes"


@dataclass(frozen=True)
class Scan:
    """One remembered `specmem scan`: the folder it ran in, its roots and its index."""

    folder: Path
    roots: tuple[Path, ...]
    db: Path
    at_ms: int = 0

    def describe(self) -> str:
        return f"{', '.join(str(r) for r in self.roots)} (index {self.db}, scanned from {self.folder})"

    def holds(self, folder: Path) -> bool:
        """Whether `folder` is one of the roots or inside one."""
        return any(folder == r or r in folder.parents for r in self.roots)


def _file() -> Path:
    return user_data_dir() / FILE


def _parse(item: Any, folder: str | None = None) -> Scan | None:
    """A record, or None for one of an unexpected shape (a hand edit, another version): left out."""
    folder = folder if folder is not None else item.get("folder") if isinstance(item, dict) else None
    if not (
        isinstance(folder, str)
        and folder
        and isinstance(item, dict)
        and isinstance(item.get("roots"), list)
        and item["roots"]
        and all(isinstance(r, str) and r for r in item["roots"])
        and isinstance(item.get("db"), str)
        and item["db"]
        and isinstance(item.get("at_ms", 0), int)
    ):
        return None
    return Scan(Path(folder), tuple(Path(r) for r in item["roots"]), Path(item["db"]), item.get("at_ms", 0))


def load() -> list[Scan]:
    """Every remembered scan, oldest first (a missing or garbled record is no error: nothing remembered; a record
    file that is a symlink is never read)."""
    try:
        data = json.loads(read_own_file(_file(), LIMIT) or b"[]")
    except (OSError, ValueError, SpecmemError):
        return []
    if isinstance(data, dict):  # the first format: one scan per folder, keyed by it
        found = [_parse(item, folder) for folder, item in data.items()]
    elif isinstance(data, list):
        found = [_parse(item) for item in data]
    else:
        found = []
    return sorted((s for s in found if s is not None), key=lambda s: s.at_ms)


def _save(scans: list[Scan]) -> None:
    data = [
        {"folder": str(s.folder), "roots": [str(r) for r in s.roots], "db": str(s.db), "at_ms": s.at_ms}
        for s in scans
    ]
    write_own_file(_file(), json.dumps(data, indent=1).encode(), durable=True)


def _locked() -> FileLock:
    path = _file()
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path.with_name(f"{FILE}.lock"), "remember")
    lock.acquire(LOCK_TIMEOUT)
    return lock


def remember(config: Config, cwd: Path | None = None) -> Scan:
    """Record `config`'s roots and index for the folder `cwd` (default: the current one). A scan of the same roots
    from the same folder replaces its record; every other is kept."""
    cwd = (cwd or Path.cwd()).resolve()
    scan = Scan(
        cwd,
        tuple(r for r in config.roots if r not in config.convention_roots),
        config.db_path,
        time.time_ns() // 1_000_000,
    )
    lock = _locked()
    try:
        kept = [s for s in load() if (s.folder, s.roots) != (scan.folder, scan.roots)]
        _save([*kept, scan][-MAX_SCANS:])
    finally:
        lock.release()
    return scan


def candidates(cwd: Path) -> list[Scan]:
    """The remembered scans that apply to `cwd`, the one to use first: walking up from `cwd`, the first folder
    that is a root of a remembered scan or the folder one ran in (the latest first there, a scan whose roots hold
    `cwd` before one merely run there); the walk stops at a project folder, after looking at it."""
    scans = load()
    for folder in (cwd, *cwd.parents):
        here = [s for s in scans if folder in s.roots or s.folder == folder]
        if here:
            return sorted(here, key=lambda s: (s.holds(cwd), s.at_ms), reverse=True)
        if is_project(folder) and not shared(folder):  # (a shared folder such as /tmp is nobody's project)
            break
    return []


def remembered_for(cwd: Path) -> Scan | None:
    """The remembered scan that applies to `cwd`, or None."""
    found = candidates(cwd)
    return found[0] if found else None


def forget(scans: list[Scan]) -> list[Path]:
    """Drop these records; the index of each, when specmem made it in the user data folder and no other record
    uses it, is deleted with its side files. Returns the index files deleted."""
    lock = _locked()
    try:
        gone = set(scans)
        kept = [s for s in load() if s not in gone]
        _save(kept)
    finally:
        lock.release()
    deleted = []
    own = user_data_dir() / INDEXES
    in_use = {s.db for s in kept}
    for scan in scans:
        if scan.db in in_use or own not in scan.db.parents or not scan.db.exists():
            continue
        for path in (scan.db, *(side_file(scan.db, s) for s in ("wal", "shm", *SIDE_FILES))):
            path.unlink(missing_ok=True)
        deleted.append(scan.db)
        try:
            os.rmdir(scan.db.parent)
        except OSError:
            pass  # something else in there: not ours to remove
    return deleted
