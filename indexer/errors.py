"""Every error specmem raises on purpose. The CLI and the MCP server turn exactly these into one clear line;
anything else is a bug and keeps its traceback. Each message says how to fix the problem."""

from __future__ import annotations


class SpecmemError(Exception):
    """Base of every error the library raises on purpose."""


class ConfigError(SpecmemError):
    """A setting that cannot be used."""


class DatabaseError(SpecmemError):
    """The index database cannot be opened, created or written."""


class StateFileError(DatabaseError):
    """One of specmem's own files or folders (the index's folder, a lock, a status file) is a symlink or not a
    regular file: refused, never followed."""


class NotFound(SpecmemError):
    """No such memory, anchor, line range or checkpoint; or a path that is not a memory file inside the roots."""


class SearchError(SpecmemError):
    """A search that cannot run as asked."""


class WriteError(SpecmemError):
    """A write that cannot be done as asked; the message says what exists on disk."""


class SpecFolderError(WriteError):
    """A spec folder name that is really a path, or that names no folder."""


class CheckpointError(SpecmemError):
    """A checkpoint operation that cannot be done as asked."""


class LockTimeout(SpecmemError):
    """A lock stayed held by another process; the message names it."""


class WatcherBusy(SpecmemError):
    """Another process already watches this database; the message names it."""


class ModelUnavailable(SpecmemError):
    """The embedding model cannot be loaded; search falls back to keyword mode."""
