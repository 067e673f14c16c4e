"""The in-memory vectors of a server (server/vectors.py) rank exactly as sqlite-vec and follow the index's changes."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pytest

from specmem.indexer import db
from specmem.indexer.embed import embed_pending
from specmem.server import semantic
from specmem.server.search import Filters, _scope, search
from specmem.server.state import ReadState
from specmem.server.vectors import VectorIndex
from tests.helpers import memory, write

WORDS = "cache eviction policy ttl warm cold lru size token expiry session cookie index vector chunk".split()


def notes(specs, start: int, stop: int, *, tag: str = "") -> None:
    for i in range(start, stop):
        parts = [
            f"<!-- ANCHOR:p{j} -->\n"
            + " ".join(WORDS[(i * 7 + j * 3 + n) % len(WORDS)] for n in range(4 + (i + j) % 5))
            + f" n{i}p{j} {tag}\n<!-- /ANCHOR:p{j} -->"
            for j in range(1 + i % 3)
        ]
        meta = {"importance_tier": "deprecated"} if i % 13 == 5 else {}
        write(
            specs / f"00{i % 3}-f" / "memory" / f"n{i:03d}.md",
            memory(f"Note {i}", "\n\n".join(parts), **meta),
        )


def queries(embedder) -> list[bytes]:
    """Dense random query vectors: with the sparse test embedder's own, many chunks would tie, and sqlite-vec
    cuts ties at its `k` in an order of its own. Every chunk's text is unique, so its vector is too."""
    rng = np.random.default_rng(16)
    return [rng.standard_normal(embedder.dim).astype(np.float32).tobytes() for _ in range(12)]


def semantic_both(conn, embedder, index: VectorIndex, vector: bytes, filters: Filters) -> tuple[dict, dict]:
    scope = _scope(filters, False, dt.datetime(2026, 1, 1).astimezone())
    on_disk = semantic.retrieve(conn, vector, embedder.model_id, scope, 7)
    in_memory = semantic.retrieve(conn, vector, embedder.model_id, scope, 7, index)
    return on_disk, in_memory


def test_in_memory_vectors_rank_exactly_as_sqlite_vec(specs, run_scan, conn, hash_embedder):
    notes(specs, 0, 60)
    run_scan()
    index = VectorIndex()
    index.refresh(conn)
    assert len(index) == db.scalar(conn, "SELECT count(*) FROM vec_memories") > 60
    for vector in queries(hash_embedder):
        for filters in (Filters(), Filters(spec_folder="001-f"), Filters(tiers=["normal"])):
            on_disk, in_memory = semantic_both(conn, hash_embedder, index, vector, filters)
            # Same memories, same best chunks, same distances to the bit, same order.
            assert list(in_memory.items()) == list(on_disk.items())
            assert len(on_disk) == 7
        for mode in ("semantic", "hybrid"):
            embedder = _Fixed(hash_embedder.model_id, vector)
            plain = search(conn, "cache lru", mode=mode, embedder=embedder)
            fast = search(conn, "cache lru", mode=mode, embedder=embedder, vectors=index)
            assert fast.results == plain.results and fast.mode_used == mode


def test_in_memory_vectors_follow_inserts_updates_and_deletes(specs, cfg, run_scan, conn, hash_embedder):
    notes(specs, 0, 40)
    run_scan()
    state = ReadState(cfg, load_model=False, embedder=hash_embedder, memory_vectors=True)
    try:
        assert (
            state.vectors(state.conn()) is None
        )  # the first load runs in a thread; searches use sqlite-vec meanwhile
        assert state.wait_vectors(30)

        def check() -> None:
            index = state.vectors(state.conn())
            assert index is not None
            embedded = {r[0] for r in conn.execute("SELECT id FROM memory_chunks WHERE embedded = 1")}
            assert index.chunk_ids() == embedded
            for vector in queries(hash_embedder)[:6]:
                on_disk, in_memory = semantic_both(state.conn(), hash_embedder, index, vector, Filters())
                assert list(in_memory.items()) == list(on_disk.items())

        check()
        notes(specs, 40, 55)  # inserts
        run_scan()
        check()
        notes(specs, 55, 65, tag="later")  # chunks waiting for their vectors, then given them
        run_scan(embed=False)
        assert db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE embedded = 0") > 0
        check()
        embed_pending(conn, hash_embedder, cfg.signal_path)
        check()
        notes(specs, 0, 10, tag="changed")  # updates: each memory's chunks are replaced
        for path in sorted(specs.rglob("n02*.md")):  # deletes
            path.unlink()
        run_scan()
        check()
        with db.write_tx(conn):  # another model: every vector goes
            db.reset_vectors(conn)
        run_scan()
        check()
    finally:
        state.close()


def test_refresh_reads_again_only_the_blocks_that_changed(specs, run_scan, conn, hash_embedder):
    notes(specs, 0, 30)
    run_scan()
    index = VectorIndex()
    assert index.refresh(conn) >= 1
    assert index.refresh(conn) == 0
    notes(specs, 3, 4, tag="edited")
    run_scan()
    assert index.refresh(conn) == 1  # the new chunks' block (the old ones lie in the same block here)
    assert index.chunk_ids() == {
        r[0] for r in conn.execute("SELECT id FROM memory_chunks WHERE embedded = 1")
    }


class _Fixed:
    """An embedder whose every query is one given vector."""

    def __init__(self, model_id: str, vector: bytes) -> None:
        self.model_id = model_id
        self.vector = np.frombuffer(vector, dtype=np.float32)

    def encode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vector for _ in texts])


@pytest.fixture(autouse=True)
def _numpy_errors():
    with np.errstate(all="raise"):
        yield
