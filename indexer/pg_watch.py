"""The watcher election of a project on a shared (PostgreSQL) index: one watcher per project across every machine,
held as a session advisory lock (pg.ProjectLock) where SQLite's is a lock file beside the index.

`WatcherLock` has the part of `lock.FileLock`'s interface the watcher uses (try_acquire, release, still_ours,
retake, holder), so `watch.Watcher` and `watch.WatchHost` elect and take over the same way on both engines
(specs/004-watcher/memory/watcher-election-on-postgres.md).
"""

from __future__ import annotations

import os
from pathlib import Path

from specmem.indexer import pg
from specmem.indexer.atomic import hostname
from specmem.indexer.config import Config
from specmem.indexer.lock import Holder

LABEL = "specmem-watch"  # application_name prefix of a watcher's lock session


def label(holder: Holder) -> str:
    """The holder as the lock session's application_name (63 bytes at most: the host is cut last)."""
    return f"{LABEL} {holder.role} {holder.pid} {holder.since_ms} {holder.host}"[:63]


def parse(text: str) -> Holder | None:
    """The holder a lock session's application_name names, or None when it is not a watcher's."""
    parts = text.split(" ", 4)
    if len(parts) != 5 or parts[0] != LABEL or not parts[2].isdigit() or not parts[3].isdigit():
        return None
    return Holder(int(parts[2]), parts[4], int(parts[3]), parts[1])


class WatcherLock:
    """The watcher lock of this config's project: held by at most one process of any machine; released when its
    session ends (the process exits or dies, or its machine is lost and keepalives give up)."""

    def __init__(self, config: Config, role: str) -> None:
        assert config.db_url is not None
        self.url = config.db_url
        self.project = config.index_project
        self.role = role
        self.path = Path(f"{pg.redacted(self.url)} (project {self.project})")  # as messages name the lock
        self._lock: pg.ProjectLock | None = None
        self._holder: Holder | None = None
        self._project_id: int | None = None  # a waiting server tries every few seconds: looked up once

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.held

    @property
    def holder(self) -> Holder | None:
        """This lock's own record while held."""
        return self._holder if self.held else None

    def _project_lock(self, *, create: bool = True) -> pg.ProjectLock | None:
        """The project's lock; `create`: make the schema and the project first if need be (a watcher writes;
        a reader asking who watches does not: None then when there is no such project)."""
        if self._project_id is not None:
            return pg.ProjectLock(self.url, self._project_id)
        conn = pg.connect(self.url, migrate_schema=create)
        try:
            if create:
                with pg.write_tx(conn):
                    project = pg.project_id(conn, self.project)
            else:
                exists = pg.schema_version(conn) > 0
                project = pg.project_id(conn, self.project, create=False) if exists else None
        finally:
            conn.close()
        if project is None:
            return None
        self._project_id = project
        return pg.ProjectLock(self.url, project)

    def try_acquire(self) -> bool:
        if self.held:
            return True
        lock = self._project_lock()
        assert lock is not None
        me = Holder(os.getpid(), hostname(), pg.now_ms(), self.role)
        lock.label = label(me)
        if not lock.try_acquire():
            return False
        self._lock, self._holder = lock, me
        return True

    def still_ours(self) -> bool:
        """Whether the lock's session still answers: a restart of the database ended it and freed the lock."""
        return self._lock is not None and self._lock.still_held()

    def retake(self) -> bool:
        """Take the lock again after its session was lost; False when another process took it meanwhile."""
        self.release()
        return self.try_acquire()

    def current(self) -> Holder | None:
        """The holder now (this process or another, on any machine), or None when nobody watches the project."""
        lock = self._lock or self._project_lock(create=False)
        found = None if lock is None else lock.holder()
        if found is None:
            return None
        return parse(found[1]) or Holder(found[0], "the database server (backend pid)", 0, "watcher")

    def release(self) -> None:
        if self._lock is not None:
            try:
                self._lock.release()
            finally:
                self._lock, self._holder = None, None


def watcher_holder(config: Config) -> Holder | None:
    """Who watches this config's project of a shared index now, on any machine; None when nobody does (or when
    the database cannot be reached: then nobody can watch it either)."""
    from specmem.indexer.errors import DatabaseError

    try:
        return WatcherLock(config, "?").current()
    except DatabaseError:
        return None
