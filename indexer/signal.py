"""The `index.db-updated` signal file: replaced atomically after every committed write batch."""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from specmem.indexer.atomic import read_own_file, write_own_file
from specmem.indexer.db import now_ms
from specmem.indexer.errors import StateFileError

_TOUCHING = threading.Lock()


@dataclass(frozen=True)
class Signal:
    committed_ms: int
    generation: int


def read(path: Path) -> Signal | None:
    """The current signal, or None when the file is missing or garbled (neither is an error)."""
    try:
        data = json.loads(read_own_file(Path(path)) or b"")
        return Signal(int(data["committed_ms"]), int(data["generation"]))
    except (OSError, ValueError, KeyError, TypeError, StateFileError):
        return None  # a symlink there is refused by the writer (`touch`), with a message


def touch(path: Path) -> Signal:
    """Replace the signal file atomically (indexer/atomic.py)."""
    path = Path(path)
    with _TOUCHING:  # the batch and the embedding threads of a watcher each count their commits
        previous = read(path)
        signal = Signal(now_ms(), (previous.generation + 1) if previous else 1)
        record = {"committed_ms": signal.committed_ms, "generation": signal.generation, "pid": os.getpid()}
        write_own_file(path, json.dumps(record).encode())
    return signal
