"""A project moved or renamed with its index (`mv ~/code/app ~/code/app2`, `.specmem/` inside it): the rows are keyed
to the old absolute roots, so nothing would be served. The move is recognised from the roots alone and the rows are
rebased onto the new roots in one transaction: no file is read again, no chunk embedded again."""

from __future__ import annotations

import logging
from pathlib import Path

import apsw

from specmem.indexer import db, signal, store
from specmem.indexer.config import Config

log = logging.getLogger("specmem.moved")


def moves(conn: apsw.Connection, config: Config) -> dict[Path, Path]:
    """Old root → new root for every indexed root that no longer exists and sits where a configured root sits
    in its project, the project's folder aside (`/a/app/specs` → `/b/app2/specs`). Empty when nothing moved."""
    if config.db_url or not isinstance(conn, apsw.Connection):
        return {}  # a shared PostgreSQL index is keyed by project, not by one machine's folders
    indexed = store.indexed_roots(conn)
    stale = [r for r in indexed if r not in config.roots and not r.exists()]
    if not stale:
        return {}
    places = {}
    for root in config.roots:
        try:
            places[root] = root.relative_to(config.project)
        except ValueError:
            continue  # a root outside the project (a remembered scan's): its index is its own
    found: dict[Path, Path] = {}
    for old in stale:
        for new, place in places.items():
            if place.parts and old.parts[-len(place.parts) :] == place.parts and new.exists():
                found[old] = new
                break
    return found


def rebase(conn: apsw.Connection, config: Config) -> dict[Path, Path]:
    """Rebase the rows of moved roots (see `moves`); returns what moved. A row whose new path is indexed already
    is left to the next full scan, which removes rows outside the roots."""
    found = moves(conn, config)
    if not found:
        return {}
    with db.write_tx(conn):
        for old, new in found.items():
            store.rebase_root(conn, old, new)
    signal.touch(config.signal_path)
    for old, new in found.items():
        log.warning(
            "%s moved to %s: its memories were rebased onto the new folder (nothing re-embedded)", old, new
        )
    return found
