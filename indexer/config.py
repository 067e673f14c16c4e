"""Resolved configuration: argument, then SPECMEM_* environment variable, then default."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import platformdirs

DEFAULT_MODEL = "all-MiniLM-L6-v2"
DEFAULT_MAX_FILE_BYTES = 5 * 1024 * 1024
DB_DIRNAME = ".specmem"


class ConfigError(ValueError):
    """A setting that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class Config:
    project: Path
    db_path: Path
    roots: tuple[Path, ...]
    model: str
    max_file_bytes: int

    @property
    def signal_path(self) -> Path:
        return self.db_path.parent / ".db-updated"

    @property
    def watcher_lock_path(self) -> Path:
        return self.db_path.parent / "watcher.lock"

    @property
    def watcher_status_path(self) -> Path:
        return self.db_path.parent / "watcher.json"

    @property
    def write_lock_path(self) -> Path:
        return self.db_path.parent / "write.lock"


def find_project(start: Path | None = None) -> Path | None:
    """The nearest folder at or above `start` holding `.git` or `specs/`, or None."""
    start = (start or Path.cwd()).resolve()
    for folder in (start, *start.parents):
        if (folder / ".git").exists() or (folder / "specs").is_dir():
            return folder
    return None


def user_data_dir() -> Path:
    """Where specmem keeps data that belongs to the user rather than to a project."""
    return Path(platformdirs.user_data_dir("specmem", appauthor=False))


def user_cache_dir(env: Mapping[str, str] | None = None) -> Path:
    """Where specmem keeps files it can always make again (the ONNX model): SPECMEM_CACHE_DIR, else the user cache."""
    env = os.environ if env is None else env
    if env.get("SPECMEM_CACHE_DIR"):
        return Path(env["SPECMEM_CACHE_DIR"]).expanduser().resolve()
    return Path(platformdirs.user_cache_dir("specmem", appauthor=False))


def resolve(
    *,
    db: str | os.PathLike[str] | None = None,
    roots: Sequence[str | os.PathLike[str]] | None = None,
    model: str | None = None,
    max_file_bytes: int | None = None,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> Config:
    """Resolve every setting in one order: argument, then environment, then default."""
    env = os.environ if env is None else env
    cwd = (cwd or Path.cwd()).resolve()

    if roots:
        root_values = [cwd / Path(r).expanduser() for r in roots]
    elif env.get("SPECMEM_ROOTS"):
        parts = env["SPECMEM_ROOTS"].split(os.pathsep)
        root_values = [cwd / Path(r.strip()).expanduser() for r in parts if r.strip()]
    else:
        root_values = []
    # The project is found from the first root when roots are given, so that
    # `specmem scan ~/code/app/specs` run from anywhere uses that project's database.
    project = find_project(root_values[0].resolve().parent if root_values else cwd)
    if not root_values:
        root_values = [(project or cwd) / "specs"]
    resolved_roots = tuple(dict.fromkeys(p.resolve() for p in root_values))

    if db or env.get("SPECMEM_DB"):
        db_path = (cwd / Path(db or env["SPECMEM_DB"]).expanduser()).resolve()
    elif project is not None:
        db_path = project / DB_DIRNAME / "index.db"
    else:
        # Outside any project: keep the index out of the user's folders.
        slug = hashlib.sha1(str(resolved_roots[0]).encode()).hexdigest()[:12]
        db_path = user_data_dir() / "indexes" / f"{resolved_roots[0].name}-{slug}" / "index.db"

    model_name = model or env.get("SPECMEM_MODEL") or DEFAULT_MODEL

    raw_limit = max_file_bytes if max_file_bytes is not None else env.get("SPECMEM_MAX_FILE_BYTES")
    try:
        limit = int(raw_limit) if raw_limit is not None else DEFAULT_MAX_FILE_BYTES
    except ValueError:
        raise ConfigError(
            f"SPECMEM_MAX_FILE_BYTES={raw_limit!r} is not a whole number of bytes; set e.g. 5242880"
        ) from None
    if limit <= 0:
        raise ConfigError(f"the file size limit must be positive, not {limit}")

    return Config(
        project=project or cwd, db_path=db_path, roots=resolved_roots, model=model_name, max_file_bytes=limit
    )
