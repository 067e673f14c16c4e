"""Validation feedback: an assistant says a memory was useful (or not), and its confidence moves toward that."""

from __future__ import annotations

import apsw

from specmem.indexer import db, signal, store
from specmem.indexer.config import Config
from specmem.indexer.errors import NotFound

STEP = 0.2  # each vote moves confidence a fifth of the way toward 1 (useful) or 0 (not useful)
FLOOR = 0.05  # never zero: a memory voted down still ranks, just low


def validate(conn: apsw.Connection, config: Config, memory_id: int, useful: bool) -> tuple[float, float]:
    """Record one vote; returns (confidence before, confidence after). Raises NotFound for an unknown id."""
    if not 0 < memory_id <= db.MAX_ROWID:
        raise NotFound(f"no memory with id {memory_id}; search or list to find its id")
    with db.write_tx(conn):
        before = store.confidence(conn, memory_id)
        if before is None:
            raise NotFound(f"no memory with id {memory_id}; search or list to find its id")
        after = before + STEP * ((1.0 if useful else 0.0) - before)
        after = max(FLOOR, min(1.0, after))
        store.set_confidence(conn, memory_id, after)
    signal.touch(config.signal_path)
    return before, after
