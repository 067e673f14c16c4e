"""What a server process holds between tool calls: a read-only connection reopened when `index.db-updated` changes,
the caches that go with it, and the embedding model loading in the background.

The check before every call is two `stat`s (signal file and database file); a missing or garbled signal is no
error. Nothing here imports torch or sentence-transformers: the model loads in a thread.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeVar, cast

import apsw

from specmem.indexer import db
from specmem.indexer.config import Config, missing_index
from specmem.indexer.errors import DatabaseError, ModelUnavailable, SearchError

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder  # numpy: imported when a model is needed, not at start-up
    from specmem.server.vectors import VectorIndex

log = logging.getLogger("specmem.server")
T = TypeVar("T")


def open_reader(config: Config) -> apsw.Connection:
    """A read-only connection to the configured index (on PostgreSQL: one that sees this project's rows)."""
    if config.db_url:
        from specmem.indexer import pg
        from specmem.server import pg_reads

        pg_reads.plug()
        return cast(apsw.Connection, pg.open_project(config.db_url, config.index_project, write=False))
    return db.connect(config.db_path, readonly=True)


def stamp(path: os.PathLike[str] | str) -> tuple[int, int, int] | None:
    """(inode, mtime, size) of a file, or None when it is missing: what tells that it was replaced."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class ReadState:
    """The server's view of one index. `conn()` is called at the start of every tool call."""

    def __init__(
        self,
        config: Config,
        *,
        load_model: bool = True,
        embedder: Embedder | None = None,
        memory_vectors: bool = False,
        on_first_open: Callable[[apsw.Connection], None] | None = None,
    ) -> None:
        self.config = config
        # Called once, with the first connection opened: what the owner checks before the first read (Memories
        # rebases an index whose project moved).
        self._on_first_open = on_first_open
        self._local = threading.local()
        self._open: set[apsw.Connection] = set()
        self._cache_stamp: tuple[object, object] | None = None
        self._caches: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.reloads = 0
        self._listener: Any = None  # PostgreSQL: the thread LISTENing for change notices
        # Searches embed their query with `query_embedder`, ONNX Runtime when it can run the model: same vectors
        # as sentence-transformers, no torch import, ready in about a second and a third of the memory. Indexing
        # (`embedder`) uses the same model object once it needs vectors.
        self._embedder = embedder
        self.query_embedder: Embedder | None = embedder
        self.model_error: str | None = None
        self._model_ready = threading.Event()
        self._model_tried = threading.Event()  # loaded or failed; set at once when nothing loads it
        # The vectors as an in-memory matrix (server/vectors.py): loaded in a thread at the first semantic search,
        # then refreshed by what changed whenever the index changes on disk.
        self._memory_vectors = memory_vectors  # the matrix (and numpy) is made by the first semantic search
        self._vectors: VectorIndex | None = None
        self._vectors_stamp: tuple[object, object] | None = None
        self._vectors_loading = threading.Lock()
        self._vectors_ready = threading.Event()
        if load_model:
            threading.Thread(target=self._load_model, name="specmem-model", daemon=True).start()
        else:
            self._model_tried.set()

    # -- the model --------------------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The indexing embedder, made on first use: a keyword search never needs it (nor numpy). It counts tokens
        at once and loads its model at the first vector: the query embedder's (ONNX Runtime when it can run it)."""
        if self._embedder is None:
            from specmem.indexer.onnx_embed import get_indexing_embedder

            self._embedder = get_indexing_embedder(
                self.config.model
            )  # a race makes two equal wrappers: harmless
        return self._embedder

    def _load_model(self) -> None:
        try:
            if self.query_embedder is None:
                from specmem.indexer.onnx_embed import get_query_embedder

                self.query_embedder = get_query_embedder(self.config.model)
            _ = self.query_embedder.dim
        except ModelUnavailable as exc:
            self.model_error = str(exc)
            log.warning("embedding model unavailable (%s); searches answer in keyword mode", exc)
        except Exception as exc:  # noqa: BLE001 - any failure to load means keyword mode, never a dead server
            self.model_error = f"{type(exc).__name__}: {exc}"
            log.exception("embedding model failed to load")
        else:
            self._model_ready.set()
        finally:
            self._model_tried.set()

    @property
    def model_state(self) -> str:
        if self._model_ready.is_set():
            return "ready"
        return "unavailable" if self.model_error else "loading"

    def ready_embedder(self) -> Embedder | None:
        """The query embedder if its model is loaded; never waits for it."""
        return self.query_embedder if self._model_ready.is_set() else None

    def wait_model(self, timeout: float | None = None) -> bool:
        """Wait for the background load of the model to end; whether the model is ready."""
        self._model_tried.wait(timeout)
        return self._model_ready.is_set()

    # -- the connection ---------------------------------------------------------------------------------------

    def conn(self) -> apsw.Connection:
        """This thread's read-only connection, reopened (and the caches dropped) when the index changed on disk.

        Tool calls run on worker threads; each keeps its own connection, so a reload never closes a connection
        that another call is using."""
        current = self._current()
        local = self._local
        if current[1] is None and getattr(local, "conn", None) is None:
            raise DatabaseError(missing_index(self.config))
        if (
            getattr(local, "conn", None) is None
            or (local.stamp != current and self._reopen(local.conn))
            or self._lost(local.conn)
        ):
            if getattr(local, "conn", None) is not None:
                local.conn.close()
                with self._lock:
                    self._open.discard(local.conn)
            local.conn = None
            local.conn = open_reader(self.config)
            db.serve_only(local.conn, self.config.roots)
            with self._lock:
                self._open.add(local.conn)
                first, self._on_first_open = self._on_first_open, None
            if first is not None:
                first(local.conn)
        local.stamp = current
        with self._lock:
            if self._cache_stamp != current:
                if self._cache_stamp is not None:
                    self.reloads += 1
                self._caches.clear()
                self._cache_stamp = current
        return local.conn

    def conn_for(self, projects: Sequence[str]) -> apsw.Connection:
        """This thread's connection seeing these projects besides this one ("*": every project of the index);
        only a shared (PostgreSQL) index holds several. An unknown name is a SearchError naming those there are."""
        if not self.config.db_url:
            if list(projects) in ([], [self.config.index_project]):
                return self.conn()
            raise SearchError(
                "searching other projects needs a shared index: set SPECMEM_DB=postgresql://… (see the README, "
                '"A server for your team")'
            )
        from specmem.indexer import pg

        own = cast(pg.PgConn, self.conn())
        known = pg.project_ids(own.conn, None)
        wanted = list(known) if "*" in projects else list(projects)
        unknown = [name for name in wanted if name not in known]
        if unknown:
            raise SearchError(
                f"no project {', '.join(map(repr, unknown))} in the index; it holds {', '.join(known) or 'none'}"
            )
        ids = tuple(dict.fromkeys([*own.projects, *(known[name] for name in wanted)]))
        return cast(apsw.Connection, pg.PgConn(own.conn, ids))

    def scoped(self, projects: Sequence[str] | None = None) -> apsw.Connection:
        """This thread's connection for a read of `projects` besides this one; None: the configured ones
        (SPECMEM_PROJECTS), none by default."""
        wanted = self.config.projects if projects is None else projects
        return self.conn_for(wanted) if wanted else self.conn()

    def config_of(self, conn: apsw.Connection) -> Config:
        """The configuration a read through `conn` serves files with: this project's, and on a shared index the
        roots every project it sees was indexed from (a memory of another project is read where its indexer
        read it, on this machine: a team server holds the clones it indexes)."""
        if not self.config.db_url:
            return self.config
        from pathlib import Path

        from specmem.server import pg_reads

        seen = cast(Any, conn).projects
        others = self.cached(f"roots {seen}", lambda _: [Path(r) for r in pg_reads.roots(cast(Any, conn))])
        extra = tuple(r for r in others if r not in self.config.roots)
        return dataclasses.replace(self.config, roots=self.config.roots + extra) if extra else self.config

    def project_names(self, conn: apsw.Connection, memory_ids: Sequence[int]) -> dict[int, str]:
        """memory id → its project's name, for a shared index; {} for a file of one project."""
        if not self.config.db_url or not memory_ids:
            return {}
        from specmem.server import pg_reads

        return pg_reads.project_names(cast(Any, conn), memory_ids)

    def _lost(self, conn: Any) -> bool:
        """PostgreSQL: whether this connection broke in a call, or may have (the listener lost its own: the
        database may be down or restarted) and does not answer now."""
        if not self.config.db_url:
            return False
        if conn.conn.broken:
            return True
        return self._listener is not None and not self._listener.connected.is_set() and self._reopen(conn)

    def _reopen(self, conn: Any) -> bool:
        """Whether a change of the index means a new connection: always on SQLite (the file may have been
        replaced); on PostgreSQL only when the connection was lost (the listener's stamp also changes when it
        reconnected after the database came back)."""
        if not self.config.db_url:
            return True
        from specmem.indexer import pg

        return not pg.alive(conn.conn)

    def version(self) -> tuple[object, object]:
        """What changes whenever the index changes (any writer, on PostgreSQL any machine): compare two."""
        return self._current()

    def _current(self) -> tuple[object, object]:
        """What says the index changed: the signal file's and the index file's stamps; on PostgreSQL the count of
        change notices heard (NOTIFY from any writer on any machine), and the index is always there."""
        if not self.config.db_url:
            return (stamp(self.config.signal_path), stamp(self.config.db_path))
        with self._lock:
            if self._listener is None:
                from specmem.indexer import pg

                self._listener = pg.Listener(self.config.db_url)
        return (self._listener.stamp(), "postgresql")

    # -- the vectors in memory -------------------------------------------------------------------------------

    def vectors(self, conn: apsw.Connection) -> VectorIndex | None:
        """The in-memory vectors, brought up to date through `conn` (this thread's, from `conn()`) when the index
        changed; None when they are off, while their first load runs in its thread (searches use sqlite-vec
        meanwhile) or when it failed."""
        if not self._memory_vectors:
            return None
        if not self._vectors_ready.is_set() or self._vectors is None:
            if self._vectors_loading.acquire(blocking=False):
                threading.Thread(target=self._load_vectors, name="specmem-vectors", daemon=True).start()
            return None
        # The stamp `conn` was checked against: a change after it is seen at the next call, never skipped.
        seen = getattr(self._local, "stamp", None)
        if seen is not None and self._vectors_stamp != seen:
            self._vectors.refresh(conn)
            self._vectors_stamp = seen
        return self._vectors

    def wait_vectors(self, timeout: float) -> bool:
        """Wait for the first load of the in-memory vectors (started by `vectors()`); whether it is done."""
        return self._vectors_ready.wait(timeout)

    def _load_vectors(self) -> None:
        try:
            from specmem.server.vectors import VectorIndex  # numpy: not before the first semantic search

            vectors = VectorIndex()
            current = self._current()
            conn = open_reader(self.config)
            try:
                vectors.refresh(conn)
            finally:
                conn.close()
            self._vectors, self._vectors_stamp = vectors, current
            log.info("%d chunk vectors in memory (%.0f MB)", len(vectors), vectors.nbytes / 1e6)
            self._vectors_ready.set()
        except Exception:  # noqa: BLE001 - searches go on with sqlite-vec
            log.exception("loading the vectors into memory failed; searches use sqlite-vec")
            self._memory_vectors = False

    def cached(self, name: str, build: Callable[[apsw.Connection], T]) -> T:
        """A value derived from the index, kept until the index next changes."""
        conn = self.conn()
        with self._lock:
            if name in self._caches:
                return self._caches[name]
        value = build(conn)
        with self._lock:
            self._caches.setdefault(name, value)
        return value

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
