"""What a server process holds between tool calls: a read-only connection reopened when `index.db-updated` changes,
the caches that go with it, and the embedding model loading in the background.

The check before every call is two `stat`s (signal file and database file); a missing or garbled signal is no
error. Nothing here imports torch or sentence-transformers: the model loads in a thread.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import apsw

from specmem.indexer import db
from specmem.indexer.config import Config, missing_index
from specmem.indexer.errors import DatabaseError, ModelUnavailable

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder  # numpy: imported when a model is needed, not at start-up
    from specmem.server.vectors import VectorIndex

log = logging.getLogger("specmem.server")
T = TypeVar("T")


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
    ) -> None:
        self.config = config
        self._local = threading.local()
        self._open: set[apsw.Connection] = set()
        self._cache_stamp: tuple[object, object] | None = None
        self._caches: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.reloads = 0
        # Indexing embeds with `embedder` (sentence-transformers, loaded only when a write needs it); searches embed
        # their query with `query_embedder`, ONNX Runtime when it can run the model: same vectors, no torch import,
        # ready in about a second and a third of the memory.
        self._embedder = embedder
        self.query_embedder: Embedder | None = embedder
        self.model_error: str | None = None
        self._model_ready = threading.Event()
        # The vectors as an in-memory matrix (server/vectors.py): loaded in a thread at the first semantic search,
        # then refreshed by what changed whenever the index changes on disk.
        self._memory_vectors = memory_vectors  # the matrix (and numpy) is made by the first semantic search
        self._vectors: VectorIndex | None = None
        self._vectors_stamp: tuple[object, object] | None = None
        self._vectors_loading = threading.Lock()
        self._vectors_ready = threading.Event()
        if load_model:
            threading.Thread(target=self._load_model, name="specmem-model", daemon=True).start()

    # -- the model --------------------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        """The indexing embedder, made on first use: a keyword search never needs it (nor numpy)."""
        if self._embedder is None:
            from specmem.indexer.embed import get_embedder

            self._embedder = get_embedder(self.config.model)  # one per model per process: a race is harmless
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

    @property
    def model_state(self) -> str:
        if self._model_ready.is_set():
            return "ready"
        return "unavailable" if self.model_error else "loading"

    def ready_embedder(self) -> Embedder | None:
        """The query embedder if its model is loaded; never waits for it."""
        return self.query_embedder if self._model_ready.is_set() else None

    # -- the connection ---------------------------------------------------------------------------------------

    def conn(self) -> apsw.Connection:
        """This thread's read-only connection, reopened (and the caches dropped) when the index changed on disk.

        Tool calls run on worker threads; each keeps its own connection, so a reload never closes a connection
        that another call is using."""
        current = (stamp(self.config.signal_path), stamp(self.config.db_path))
        local = self._local
        if current[1] is None and getattr(local, "conn", None) is None:
            raise DatabaseError(missing_index(self.config))
        if getattr(local, "conn", None) is None or local.stamp != current:
            if getattr(local, "conn", None) is not None:
                local.conn.close()
                with self._lock:
                    self._open.discard(local.conn)
            local.conn = None
            local.conn = db.connect(self.config.db_path, readonly=True)
            db.serve_only(local.conn, self.config.roots)
            local.stamp = current
            with self._lock:
                self._open.add(local.conn)
        with self._lock:
            if self._cache_stamp != current:
                if self._cache_stamp is not None:
                    self.reloads += 1
                self._caches.clear()
                self._cache_stamp = current
        return local.conn

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
            current = (stamp(self.config.signal_path), stamp(self.config.db_path))
            conn = db.connect(self.config.db_path, readonly=True)
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
        with self._lock:
            for conn in self._open:
                conn.close()
            self._open.clear()
