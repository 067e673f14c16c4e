"""The `.db-updated` signal file: replaced atomically after every committed write batch."""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from specmem.indexer.db import now_ms


@dataclass(frozen=True)
class Signal:
    committed_ms: int
    generation: int


def read(path: Path) -> Signal | None:
    """The current signal, or None when the file is missing or garbled (neither is an error)."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        return Signal(int(data["committed_ms"]), int(data["generation"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def touch(path: Path) -> Signal:
    """Replace the signal file atomically: write a temporary file beside it, then os.replace."""
    path = Path(path)
    previous = read(path)
    signal = Signal(now_ms(), (previous.generation + 1) if previous else 1)
    fd, tmp = tempfile.mkstemp(prefix=".db-updated.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(
                {"committed_ms": signal.committed_ms, "generation": signal.generation, "pid": os.getpid()}, fh
            )
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    return signal
