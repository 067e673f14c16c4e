"""Every chunk vector of the index in memory, for a long-running server: exact k-NN without a scan of the table.

sqlite-vec's k-NN is a brute-force scan of `vec_memories` that reads every vector from the database on each
query: 0.8 s at 500,000 chunks. Here they are one float32 matrix, read once and then kept up to date by the
chunk ids that changed, so a query is one matrix-vector product (about a tenth of that). The price is memory:
4 bytes × the model's dimension per chunk (1.5 KB with the default model, 768 MB at 500,000 chunks).

Results are sqlite-vec's: the matrix only picks the candidates, with a margin far wider than float32 rounding;
their distances are then computed by sqlite-vec's own `vec_distance_cosine`, so scores and order are the same
to the bit.

Keeping up: chunk ids come from AUTOINCREMENT, so they are never reused and every new chunk's id is above every
older one. Per block of BLOCK ids, `count(*)` and `sum(id)` of the chunks then change whenever a chunk of the
block was added or deleted (a deletion and an insertion cannot cancel: the new id is larger than any deleted
one). Chunks that got their vector since the last look are found through the index of pending chunks. Only the
blocks that changed are read again, through the embedding cache, which holds every chunk's vector by text hash.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import NamedTuple

import apsw
import numpy as np

from specmem.indexer import db
from specmem.server import reads

BLOCK_BITS = 10  # chunk ids per block: 1,024
MARGIN = 1e-4  # candidates' approximate distances may exceed the k-th by this much (float32 error is ~1e-7)


@dataclass(frozen=True)
class Hit:
    chunk_id: int
    memory_id: int
    distance: float  # sqlite-vec's cosine distance


class Picked(NamedTuple):
    """Candidate chunks of a k-NN by the matrix: their ids, their memories' ids, their vectors' bytes."""

    ids: list[int]
    owners: list[int]
    blobs: list[bytes]


class VectorIndex:
    """The chunk vectors of one index as a matrix. `refresh(conn)` brings it up to date; `nearest()` searches it.

    Thread-safe: a refresh and the queries hold one lock (a query at 500,000 chunks holds it for about 0.1 s)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.model: str | None = None
        self.identity: str | None = None  # db.index_identity of the index the vectors came from
        self._clear(0)

    def _clear(self, dim: int) -> None:
        self.dim = dim
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._inverse_norms = np.zeros(0, dtype=np.float32)
        self._ids = np.zeros(0, dtype=np.int64)  # chunk id per row; -1: a free row
        self._memories = np.zeros(0, dtype=np.int64)
        self._size = 0  # rows in use or freed; rows beyond are spare capacity
        self._free: list[int] = []
        self._blocks: dict[
            int, tuple[int, int]
        ] = {}  # block → (count, sum) of its chunk ids, embedded or not
        self._pending: set[int] = set()
        self._last_id = 0

    def __len__(self) -> int:
        return self._size - len(self._free)

    def chunk_ids(self) -> set[int]:
        """The chunks whose vectors are held."""
        with self._lock:
            return {int(i) for i in self._ids[: self._size] if i >= 0}

    @property
    def nbytes(self) -> int:
        return int(
            self._vectors.nbytes + self._inverse_norms.nbytes + self._ids.nbytes + self._memories.nbytes
        )

    # -- keeping up -------------------------------------------------------------------------------------------

    def refresh(self, conn: apsw.Connection) -> int:
        """Read what changed in the index since the last refresh; returns how many blocks were read again."""
        with self._lock:
            return self._refresh(conn)

    def _refresh(self, conn: apsw.Connection) -> int:
        model = db.get_config(conn, "model")
        dim = db.get_config(conn, "dim")
        if model is None or dim is None or not reads.has_vectors(conn):
            self.model = None
            self._clear(0)
            return 0
        last_id = reads.last_chunk_id(conn)
        identity = db.index_identity(conn)
        if (
            model != self.model
            or int(dim) != self.dim
            or last_id < self._last_id
            or identity != self.identity
        ):
            # Another model, or another index (deleted and built again: its chunk ids start again, and may reach
            # the same numbers with other texts): nothing held is valid.
            self.model = model
            self.identity = identity
            self._clear(int(dim))
        self._last_id = last_id
        blocks = reads.chunk_blocks(conn, BLOCK_BITS)
        pending = reads.unembedded_chunks(conn)
        changed = {b for b in blocks.keys() | self._blocks.keys() if blocks.get(b) != self._blocks.get(b)}
        changed |= {cid >> BLOCK_BITS for cid in pending ^ self._pending}
        if changed:
            if not len(self):  # a first load: room for every chunk at once, no growing copies
                self._slots(0, room=sum(n for n, _ in blocks.values()))
            self._update(conn, changed, model)
        self._blocks = blocks
        self._pending = pending
        return len(changed)

    def _update(self, conn: apsw.Connection, blocks: set[int], model: str) -> None:
        """Make the rows of these blocks of chunk ids match the index: free the rows of chunks gone (or no longer
        embedded), read the vectors of the chunks not held yet."""
        used = self._ids[: self._size]
        rows = np.flatnonzero((used >= 0) & np.isin(used >> BLOCK_BITS, np.fromiter(blocks, dtype=np.int64)))
        held: dict[int, dict[int, int]] = {}  # block → chunk id → row
        for cid, row in zip(used[rows].tolist(), rows.tolist(), strict=True):
            held.setdefault(cid >> BLOCK_BITS, {})[cid] = row
        for block in sorted(blocks):
            low, high = block << BLOCK_BITS, ((block + 1) << BLOCK_BITS) - 1
            mine = held.get(block)
            if not mine:
                self._add(
                    reads.chunk_vectors(conn, model, between=(low, high))
                )  # a block read whole: one range
                continue
            live = reads.embedded_between(conn, low, high)
            gone = [row for cid, row in mine.items() if cid not in live]
            self._ids[gone] = -1
            self._memories[gone] = -1
            self._inverse_norms[gone] = 0.0
            self._free.extend(gone)
            new = [cid for cid in live if cid not in mine]
            if new:
                self._add(reads.chunk_vectors(conn, model, ids=new))

    def _add(self, rows: list[tuple[int, int, bytes]]) -> None:
        """Hold these (chunk id, memory id, vector) rows."""
        if not rows:
            return
        vectors = np.frombuffer(b"".join(r[2] for r in rows), dtype=np.float32).reshape(len(rows), self.dim)
        slots = self._slots(len(rows))
        self._ids[slots] = [r[0] for r in rows]
        self._memories[slots] = [r[1] for r in rows]
        self._vectors[slots] = vectors
        norms = np.linalg.norm(vectors, axis=1)
        self._inverse_norms[slots] = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    def _slots(self, n: int, room: int = 0) -> np.ndarray:
        reused = [self._free.pop() for _ in range(min(n, len(self._free)))]
        fresh = n - len(reused)
        if self._size + max(fresh, room) > len(self._ids):
            capacity = max(self._size + max(fresh, room), int(len(self._ids) * 1.5), 1024)
            self._vectors = _grown(self._vectors, capacity)
            self._inverse_norms = _grown(self._inverse_norms, capacity)
            self._ids = _grown(self._ids, capacity, fill=-1)
            self._memories = _grown(self._memories, capacity, fill=-1)
        slots = np.array(reused + list(range(self._size, self._size + fresh)), dtype=np.int64)
        self._size += fresh
        return slots

    # -- searching --------------------------------------------------------------------------------------------

    def nearest(
        self,
        conn: apsw.Connection,
        query: bytes,
        k: int,
        visible: set[int] | None = None,
        picked: Picked | None = None,
    ) -> dict[int, Hit]:
        """memory id → its closest chunk, for the `k` memories closest to `query` (a float32 vector's bytes) among
        `visible` (memory ids; None: every memory), best first. Distances are sqlite-vec's, computed by `conn`.
        `picked`: what `candidates(query, k, visible)` returned, computed earlier (in another thread)."""
        if picked is None:
            picked = self.candidates(query, k, visible)
        ids, owners, blobs = picked
        if not ids:
            return {}
        exact = reads.cosine_distances(conn, blobs, query)
        hits: dict[int, Hit] = {}
        measured = [(d, cid, mid) for d, cid, mid in zip(exact, ids, owners, strict=True) if d is not None]
        for d, cid, mid in sorted(measured):
            if mid not in hits:
                hits[mid] = Hit(cid, mid, d)
        return dict(list(hits.items())[:k])

    def candidates(self, query: bytes, k: int, visible: set[int] | None = None) -> Picked:
        """The chunks that may be among the `k` memories' closest (see `nearest`), by the matrix alone: numpy
        work that needs no connection and releases the GIL, so a search runs it while its keyword side runs."""
        q = np.frombuffer(query, dtype=np.float32)
        q_norm = float(np.linalg.norm(q))
        if q_norm == 0.0 or k <= 0:
            return Picked([], [], [])  # a zero vector (a query with no words) is near nothing
        with self._lock:
            memories = self._memories[: self._size]
            usable = memories >= 0
            if visible is not None:
                usable &= np.isin(memories, np.fromiter(visible, dtype=np.int64))
            if not usable.any():
                return Picked([], [], [])
            distance = 1.0 - (self._vectors[: self._size] @ q) * self._inverse_norms[: self._size] / q_norm
            distance[~usable] = np.inf
            # The k-th memory's distance: from the closest rows, taken 4k at a time until they hold k memories.
            n = int(usable.sum())
            m = min(n, 4 * k)
            while True:
                top = np.argpartition(distance, m - 1)[:m] if m < len(distance) else np.arange(len(distance))
                top = top[np.isfinite(distance[top])]
                top = top[np.argsort(distance[top], kind="stable")]
                _, first = np.unique(memories[top], return_index=True)
                if len(first) >= k or m >= n:
                    break
                m = min(n, m * 4)
            kth = np.sort(distance[top[first]])[min(k, len(first)) - 1]
            # Every chunk within the margin of it: it holds each of the k closest memories' closest chunk.
            pick = np.flatnonzero(distance <= kth + MARGIN)
            ids = self._ids[pick].tolist()
            owners = memories[pick].tolist()
            blobs = [self._vectors[r].tobytes() for r in pick.tolist()]
        return Picked(ids, owners, blobs)


def _grown(array: np.ndarray, capacity: int, fill: float = 0.0) -> np.ndarray:
    # Spare vector rows stay unwritten (np.empty), so the memory they reserve is not touched until used.
    out = np.empty((capacity, *array.shape[1:]), dtype=array.dtype)
    out[: len(array)] = array
    if array.ndim == 1:
        out[len(array) :] = fill
    return out
