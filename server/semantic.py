"""Semantic retrieval: the query's vector, and the memories whose chunks are closest to it (cosine), each by its
closest chunk.

The engine (reads.py) compares vectors; a long-running server's in-memory copy of them (vectors.py) answers the
same, faster.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, TypeAlias

import apsw

from specmem.indexer import db
from specmem.indexer.errors import ModelUnavailable
from specmem.server import reads
from specmem.server.reads import Near, Scope

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder  # numpy: not for a keyword search
    from specmem.server.vectors import Picked, VectorIndex  # numpy: a server's, made by its ReadState

# A memory found by meaning: its closest chunk and that chunk's cosine similarity.
SemanticHit: TypeAlias = Near
MAX_CHUNK_K = 4096  # chunks asked of the engine's k-NN at most


def query_vector(
    conn: apsw.Connection, query: str, embedder: Embedder | None
) -> tuple[bytes | None, str | None]:
    """The query's vector (float32 bytes), or None with the reason a search must answer by keyword instead."""
    index_model = db.get_config(conn, "model")
    if index_model is None or not reads.has_vectors(conn):
        return None, "no embeddings in the index yet: answered in keyword mode"
    if embedder is None:
        return None, "embedding model not loaded yet: answered in keyword mode"
    if index_model != embedder.model_id:
        return None, (
            f"the index was embedded with {index_model}, not {embedder.model_id}: answered in keyword mode; "
            "run `specmem scan` to re-embed"
        )
    try:
        return embedder.encode([query])[0].astype("float32").tobytes(), None
    except ModelUnavailable as exc:
        return None, f"{exc}: answered in keyword mode"


class Started:
    """The in-memory matrix's candidates for a query (vectors.py `candidates`), computed in a thread of its own
    while the caller goes on (a hybrid search: its keyword side). numpy's product releases the GIL and SQLite's
    steps do too, so on two cores the semantic side's 60 ms at 500,000 chunks overlap the keyword side's."""

    def __init__(self, vectors: VectorIndex, vector: bytes, k: int) -> None:
        self.k = k
        self._vectors, self._vector = vectors, vector
        self._picked: Picked | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="specmem-knn", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._picked = self._vectors.candidates(self._vector, self.k)
        except BaseException as exc:  # raised again in the caller's thread, by result()
            self._error = exc

    def result(self) -> Picked:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._picked is not None
        return self._picked


def start(vector: bytes, scope: Scope, k: int, vectors: VectorIndex) -> Started | None:
    """Begin `retrieve`'s work on the in-memory matrix now, in a thread (None when there is nothing to begin:
    a filtered search first asks the index which memories are in scope)."""
    return None if scope.filtered else Started(vectors, vector, k)


def retrieve(
    conn: apsw.Connection,
    vector: bytes,
    model: str,
    scope: Scope,
    k: int,
    vectors: VectorIndex | None = None,
    started: Started | None = None,
) -> dict[int, SemanticHit]:
    """The `k` memories in scope closest to `vector`, closest first. With `vectors` (a server's in-memory
    matrix) the same result without a scan of the table; `started`: its candidates begun by `start`."""
    if vectors is not None:
        return _from_memory(conn, vector, scope, k, vectors, started)
    if scope.filtered:
        # Exact: distances over the filtered memories only, so filters apply before the limit.
        return reads.nearest_in_scope(conn, vector, model, scope, k)
    total = reads.embedded_count(conn)
    chunk_k = min(max(k * 4, 50), MAX_CHUNK_K)
    while True:
        best: dict[int, SemanticHit] = {}
        # Equal distances (chunks of the same text) go to the lower chunk id, as everywhere in search.
        for distance, cid, mid in sorted(
            (d, cid, mid) for cid, mid, d in reads.nearest_chunks(conn, vector, chunk_k)
        ):
            if mid not in best:
                best[mid] = SemanticHit(cid, 1.0 - distance)
        if best:
            shown = reads.visible(conn, best, scope)
            best = {mid: hit for mid, hit in best.items() if mid in shown}
        if len(best) >= k or chunk_k >= min(total, MAX_CHUNK_K):
            break
        chunk_k = min(chunk_k * 4, MAX_CHUNK_K)
    return dict(sorted(best.items(), key=lambda kv: (-kv[1].similarity, kv[1].chunk_id))[:k])


def _from_memory(
    conn: apsw.Connection, vector: bytes, scope: Scope, k: int, vectors: VectorIndex, started: Started | None
) -> dict[int, SemanticHit]:
    if scope.filtered:
        found = vectors.nearest(conn, vector, k, visible=reads.in_scope(conn, scope))
        return {mid: SemanticHit(h.chunk_id, 1.0 - h.distance) for mid, h in found.items()}
    # Memories hidden by the conditions every search has (deprecated, expired, outside the roots) are few: ask
    # for more until k remain.
    want = k
    while True:
        picked = started.result() if started is not None and started.k == want else None
        found = vectors.nearest(conn, vector, want, picked=picked)
        shown = reads.visible(conn, found, scope)
        hits = {mid: SemanticHit(h.chunk_id, 1.0 - h.distance) for mid, h in found.items() if mid in shown}
        if len(hits) >= k or len(found) < want:
            return dict(list(hits.items())[:k])
        want *= 4
