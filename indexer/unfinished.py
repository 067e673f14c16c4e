"""Writes in progress, recorded in the index: a writer changes files first and indexes them next, so a writer
killed in between (kill -9, power loss) would leave files the index does not show until some later full scan.

Each write path records the scopes it is about to change (`begin`) and drops the record in the transaction that
indexes them (`end`). The next scan of any process takes over the records of writers that died: it indexes
their scopes along with its own and drops them.
"""

from __future__ import annotations

import itertools
import json
import os
import socket
from collections.abc import Callable
from pathlib import Path

import apsw

from specmem.indexer import db
from specmem.indexer.atomic import pid_alive
from specmem.indexer.errors import SpecmemError

PREFIX = "unfinished:"  # config keys: unfinished:<host>:<pid>:<since ms>:<n> → JSON list of scopes
STALE_MS = 3_600_000  # a record this old is taken over even if its process seems alive (a reused pid)
_SEQ = itertools.count()


def begin(conn: apsw.Connection, scopes: tuple[Path, ...]) -> str:
    """Record that this process is about to change files under `scopes`; returns the record's key."""
    key = f"{PREFIX}{socket.gethostname()}:{os.getpid()}:{db.now_ms()}:{next(_SEQ)}"
    with db.write_tx(conn):
        db.set_config(conn, key, json.dumps([str(p) for p in scopes]))
    return key


def end(conn: apsw.Connection, key: str) -> None:
    """Drop a write's record, inside the transaction that indexed what it wrote."""
    db.delete_config(conn, key)


def cancel(conn: apsw.Connection, key: str) -> None:
    """Drop the record of a write that changed nothing, in a transaction of its own; best effort."""
    try:
        with db.write_tx(conn):
            end(conn, key)
    except SpecmemError:
        pass  # left for the next scan: a scoped rescan of unchanged files


def abandoned(conn: apsw.Connection) -> tuple[list[str], list[Path]]:
    """The records of writers that died, and the scopes they were changing."""
    keys: list[str] = []
    scopes: list[Path] = []
    here, now = socket.gethostname(), db.now_ms()
    for key, value in db.config_items(conn, PREFIX):
        try:
            host, pid, since, _ = key[len(PREFIX) :].rsplit(":", 3)
            dead = (host == here and not pid_alive(int(pid))) or now - int(since) > STALE_MS
            paths = [Path(p) for p in json.loads(value)]
        except ValueError:
            dead, paths = True, []
        if dead:
            keys.append(key)
            scopes += paths
    return keys, scopes


def dropping(
    keys: list[str], finalize: Callable[[apsw.Connection], None] | None
) -> Callable[[apsw.Connection], None]:
    """`finalize` (a scan's last-transaction hook), also dropping the records `keys`."""

    def run(conn: apsw.Connection) -> None:
        for key in keys:
            end(conn, key)
        if finalize is not None:
            finalize(conn)

    return run
