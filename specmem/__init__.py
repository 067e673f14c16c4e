"""specmem: long-term memory for AI coding assistants, kept as markdown files and indexed into SQLite.

    import specmem
    with specmem.open("specs") as mem:
        mem.scan()
        print(mem.search("why apsw", limit=5).results[0].citation)

Names are imported on first use, so `import specmem` (and the `specmem` command's start-up) stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The distribution's name on PyPI (`pip install specmem-mcp`; `specmem` there is another project). The import
# package and the command are `specmem`. Everything that reads the installed version asks for this name.
DISTRIBUTION = "specmem-mcp"

__all__ = [
    "CheckpointError",
    "CheckpointInfo",
    "Config",
    "ConfigError",
    "ContextBlock",
    "DatabaseError",
    "Deleted",
    "Draft",
    "Filters",
    "InitPlan",
    "LockTimeout",
    "Memories",
    "Memory",
    "MemoryList",
    "ModelUnavailable",
    "NotFound",
    "RestoreReport",
    "ScanReport",
    "SearchError",
    "SearchResponse",
    "SearchResult",
    "SpecFolderError",
    "SpecmemError",
    "Stats",
    "TriggerMatch",
    "Validation",
    "WatcherBusy",
    "WriteError",
    "Written",
    "init",
    "open",
]

_HOME = {
    "open": "specmem.api",
    "init": "specmem.api",
    "InitPlan": "specmem.indexer.project",
    "Memories": "specmem.api",
    "Written": "specmem.api",
    "Deleted": "specmem.api",
    "Validation": "specmem.api",
    "Config": "specmem.indexer.config",
    "Draft": "specmem.indexer.draft",
    "ScanReport": "specmem.indexer.scan",
    "CheckpointInfo": "specmem.indexer.checkpoints",
    "RestoreReport": "specmem.indexer.checkpoints",
    "ContextBlock": "specmem.server.context",
    "Filters": "specmem.server.search",
    "SearchResponse": "specmem.server.search",
    "SearchResult": "specmem.server.search",
    "Memory": "specmem.server.memories",
    "MemoryList": "specmem.server.memories",
    "Stats": "specmem.server.memories",
    "TriggerMatch": "specmem.server.memories",
    **{
        name: "specmem.indexer.errors"
        for name in (
            "SpecmemError",
            "ConfigError",
            "DatabaseError",
            "NotFound",
            "SearchError",
            "WriteError",
            "SpecFolderError",
            "CheckpointError",
            "LockTimeout",
            "WatcherBusy",
            "ModelUnavailable",
        )
    },
}


def __getattr__(name: str) -> Any:
    if name == "__version__":
        from importlib.metadata import version

        value: Any = version(DISTRIBUTION)
    elif name in _HOME:
        value = getattr(importlib.import_module(_HOME[name]), name)
    else:
        raise AttributeError(f"module 'specmem' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*__all__, "__version__"])


if TYPE_CHECKING:
    from specmem.api import Deleted, Memories, Validation, Written, init, open
    from specmem.indexer.checkpoints import CheckpointInfo, RestoreReport
    from specmem.indexer.config import Config
    from specmem.indexer.draft import Draft
    from specmem.indexer.errors import (
        CheckpointError,
        ConfigError,
        DatabaseError,
        LockTimeout,
        ModelUnavailable,
        NotFound,
        SearchError,
        SpecFolderError,
        SpecmemError,
        WatcherBusy,
        WriteError,
    )
    from specmem.indexer.project import InitPlan
    from specmem.indexer.scan import ScanReport
    from specmem.server.context import ContextBlock
    from specmem.server.memories import Memory, MemoryList, Stats, TriggerMatch
    from specmem.server.search import Filters, SearchResponse, SearchResult
