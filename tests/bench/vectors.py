"""Semantic search at scale without indexing a corpus: sqlite-vec's brute-force k-NN, a plain numpy matrix, and
the servers' in-memory vectors (server/vectors.py), at 13k, 100k, 200k and 500k chunks; and a whole hybrid search
at each size, with the real query encoder.

    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python tests/bench/vectors.py     # ~15 minutes, 2.5 GB of disk at 500k
    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python tests/bench/vectors.py --sizes 13000,100000

One BLAS thread, as a server answering several clients would use, and because several threads on a busy
machine make the numpy figures wait for one another (the recorded JSON keeps the thread settings).

The vectors are random unit vectors of 384 dimensions (the default model's); the chunks' texts are random words
(Zipf-distributed over 5,000) in FTS5, five chunks a memory, the vectors in the embedding cache and in
`vec_memories` as specmem stores them; the queries are random unit vectors for the k-NN figures and short word
queries for the hybrid ones. One database grows from size to size. For each size:

- sqlite-vec k-NN p50/p95 with k = 400 (the chunk candidates specmem's semantic search asks for: 4 × its 100
  memory candidates), and the same k-NN as a plain `matrix @ q` plus a top-k selection: same top 10;
- the in-memory vectors: first load (a thread does it in a server), a refresh when nothing changed and one
  after a memory was rewritten, its size, and its memory-level k-NN (100 memories) p50/p95; the share of
  queries whose 100 memories, best chunks and distances equal sqlite-vec's (1.0 expected);
- hybrid search p50/p95 and CPU p50, wall including the query's embedding, with sqlite-vec and with the
  in-memory vectors; the query embedding's own p50.

13k chunks is md-manpages-2000 indexed (2,000 files).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from specmem.indexer import config, db
from specmem.server import semantic
from specmem.server.search import Filters, _scope, search
from specmem.server.vectors import VectorIndex

DIM = 384
K = 400
BATCH = 5000
CHUNKS_PER_MEMORY = 5
VOCABULARY = 5000
WORDS_PER_CHUNK = 40


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def word(i: int) -> str:
    return "w" + np.base_repr(int(i), 36).lower()


def texts(rng: np.random.Generator, n: int) -> list[str]:
    ranks = np.minimum(rng.zipf(1.2, (n, WORDS_PER_CHUNK)), VOCABULARY)
    return [" ".join(word(r) for r in row) for row in ranks]


def grow(conn, rng: np.random.Generator, model: str, start: int, stop: int) -> float:
    """Chunks start+1..stop, five a memory, stored as specmem stores them (memory row, chunk row, FTS row,
    cached vector, vec_memories row)."""
    t = time.perf_counter()
    now = db.now_ms()
    # Ids go on from the highest ever given (measure() rewrites a memory, which takes new chunk ids).
    base = int(db.scalar(conn, "SELECT coalesce(max(id), 0) FROM memory_chunks"))
    first_memory = int(db.scalar(conn, "SELECT coalesce(max(id), 0) FROM memory_index")) + 1
    for first in range(start, stop, BATCH):
        n = min(BATCH, stop - first)
        block = unit(rng, n)
        words = texts(rng, n)
        with db.write_tx(conn):
            for i in range(n):
                cid = base + first - start + i + 1
                mid = first_memory + (first - start + i) // CHUNKS_PER_MEMORY
                if (first - start + i) % CHUNKS_PER_MEMORY == 0:
                    conn.execute(
                        "INSERT INTO memory_index (id, path, root, rel_path, spec_folder, title, size, mtime_ns, "
                        "content_hash, created_at, updated_at, indexed_at, embedding_status) "
                        "VALUES (?, ?, '/bench', ?, ?, ?, 1, 0, ?, ?, ?, ?, 'done')",
                        (mid, f"/bench/m{mid}.md", f"m{mid}.md", f"f{mid % 100}", f"Memory {mid}", str(mid))
                        + (now,) * 3,
                    )
                conn.execute(
                    "INSERT INTO memory_chunks (id, memory_id, seq, heading, start_line, end_line, text, text_hash, "
                    "embedded) VALUES (?, ?, ?, '', 1, 1, ?, ?, 1)",
                    (cid, mid, (cid - 1) % CHUNKS_PER_MEMORY, words[i], f"h{cid}"),
                )
                conn.execute(
                    "INSERT INTO memory_fts (rowid, text, title, triggers, tags, path) VALUES (?, ?, '', '', '', ?)",
                    (cid, words[i], f"m{mid}.md"),
                )
                blob = block[i].tobytes()
                conn.execute(
                    "INSERT INTO embedding_cache (model, text_hash, vector, used_at) VALUES (?, ?, ?, ?)",
                    (model, f"h{cid}", blob, now),
                )
                conn.execute("INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)", (cid, blob))
    return time.perf_counter() - t


def timed(fn, reps: int) -> tuple[list[float], list[float], object]:
    wall, cpu, out = [], [], None
    for _ in range(reps):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        wall.append((time.perf_counter() - w) * 1000)
        cpu.append((time.process_time() - c) * 1000)
    return wall, cpu, out


def measure(conn, queries: np.ndarray, index: VectorIndex, embedder, words: list[str]) -> dict[str, object]:
    def vec_knn(q: np.ndarray) -> list[int]:
        rows = conn.execute(
            "SELECT chunk_id, distance FROM vec_memories WHERE embedding MATCH ? AND k = ?", (q.tobytes(), K)
        ).fetchall()
        return [r[0] for r in rows]

    vec_knn(queries[0])  # warm
    vec_ms, vec_top = [], []
    for q in queries:
        t = time.perf_counter()
        ids = vec_knn(q)
        vec_ms.append((time.perf_counter() - t) * 1000)
        vec_top.append(ids[:10])

    t = time.perf_counter()
    rows = conn.execute("SELECT chunk_id, embedding FROM vec_memories ORDER BY chunk_id").fetchall()
    ids = np.fromiter((r[0] for r in rows), dtype=np.int64, count=len(rows))
    matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), DIM)
    del rows
    load_s = time.perf_counter() - t

    def np_knn(q: np.ndarray) -> list[int]:
        scores = matrix @ q
        top = np.argpartition(-scores, K)[:K]
        return ids[top[np.argsort(-scores[top])]].tolist()

    np_knn(queries[0])
    np_ms, np_top = [], []
    for q in queries:
        t = time.perf_counter()
        found = np_knn(q)
        np_ms.append((time.perf_counter() - t) * 1000)
        np_top.append(found[:10])
    agree = sum(a == b for a, b in zip(vec_top, np_top, strict=True)) / len(queries)
    out: dict[str, object] = {
        "sqlite_vec_p50_ms": round(pct(vec_ms, 50), 2),
        "sqlite_vec_p95_ms": round(pct(vec_ms, 95), 2),
        "numpy_load_s": round(load_s, 3),
        "numpy_p50_ms": round(pct(np_ms, 50), 2),
        "numpy_p95_ms": round(pct(np_ms, 95), 2),
        "speedup_p50": round(statistics.median(vec_ms) / statistics.median(np_ms), 1),
        "same_top10_share": agree,
    }

    # The servers' in-memory vectors: loaded (or brought up to date) by the blocks of chunk ids that changed.
    w, c = time.perf_counter(), time.process_time()
    index.refresh(conn)
    out["index_load_s"] = round(time.perf_counter() - w, 3)
    out["index_load_cpu_s"] = round(time.process_time() - c, 3)
    out["index_mb"] = round(index.nbytes / 1e6, 1)
    noop, noop_cpu, _ = timed(lambda: index.refresh(conn), 5)
    out["index_refresh_unchanged_ms"] = round(statistics.median(noop), 2)
    out["index_refresh_unchanged_cpu_ms"] = round(statistics.median(noop_cpu), 2)
    one = int(db.scalar(conn, "SELECT max(id) FROM memory_index")) // 2  # a memory rewritten: new chunk ids
    with db.write_tx(conn):
        old = [r[0] for r in conn.execute("SELECT id FROM memory_chunks WHERE memory_id = ?", (one,))]
        for cid in old:
            conn.execute("DELETE FROM vec_memories WHERE chunk_id = ?", (cid,))
            conn.execute("DELETE FROM memory_fts WHERE rowid = ?", (cid,))
        conn.execute("DELETE FROM memory_chunks WHERE memory_id = ?", (one,))
        cid = int(db.scalar(conn, "SELECT max(id) FROM memory_chunks")) + 1
        blob = unit(np.random.default_rng(cid), 1)[0].tobytes()
        conn.execute(
            "INSERT INTO memory_chunks (id, memory_id, seq, heading, start_line, end_line, text, text_hash, embedded)"
            " VALUES (?, ?, 0, '', 1, 1, 'rewritten', ?, 1)",
            (cid, one, f"h{cid}"),
        )
        conn.execute(
            "INSERT INTO embedding_cache (model, text_hash, vector, used_at) VALUES (?, ?, ?, 0)",
            (embedder.model_id, f"h{cid}", blob),
        )
        conn.execute("INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)", (cid, blob))
    w, c = time.perf_counter(), time.process_time()
    blocks = index.refresh(conn)
    out["index_refresh_one_memory_ms"] = round((time.perf_counter() - w) * 1000, 2)
    out["index_refresh_one_memory_cpu_ms"] = round((time.process_time() - c) * 1000, 2)
    out["index_refresh_one_memory_blocks"] = blocks

    scope = _scope(Filters(), False, dt.datetime.now().astimezone())
    same, idx_ms = 0, []
    for q in queries:
        blob = q.tobytes()
        t = time.perf_counter()
        mine = semantic.retrieve(conn, blob, embedder.model_id, scope, 100, index)
        idx_ms.append((time.perf_counter() - t) * 1000)
        theirs = semantic.retrieve(conn, blob, embedder.model_id, scope, 100)
        same += list(mine.items()) == list(theirs.items())
    out["index_semantic_p50_ms"] = round(pct(idx_ms, 50), 2)
    out["index_semantic_p95_ms"] = round(pct(idx_ms, 95), 2)
    out["index_same_as_sqlite_vec_share"] = same / len(queries)

    # Whole hybrid searches, the query embedded by the real encoder each time.
    phrases = [" ".join(words[i : i + 3]) for i in range(0, 3 * len(queries), 3)]
    embed_ms = []
    for phrase in phrases:
        t = time.perf_counter()
        embedder.encode([phrase])
        embed_ms.append((time.perf_counter() - t) * 1000)
    out["query_embedding_p50_ms"] = round(pct(embed_ms, 50), 2)
    for name, vectors in (("sqlite_vec", None), ("in_memory", index)):
        wall, cpu = [], []
        search(conn, phrases[0], mode="hybrid", embedder=embedder, vectors=vectors)
        for phrase in phrases:
            w, c = time.perf_counter(), time.process_time()
            found = search(conn, phrase, mode="hybrid", embedder=embedder, vectors=vectors)
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
            assert found.mode_used == "hybrid", found.notes
        out[f"hybrid_{name}_p50_ms"] = round(pct(wall, 50), 2)
        out[f"hybrid_{name}_p95_ms"] = round(pct(wall, 95), 2)
        out[f"hybrid_{name}_cpu_p50_ms"] = round(pct(cpu, 50), 2)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="13000,100000,200000,500000", help="Comma-separated chunk counts.")
    parser.add_argument("--queries", type=int, default=30, help="Random queries per size (default 30).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    from specmem.indexer.onnx_embed import get_query_embedder

    embedder = get_query_embedder(config.DEFAULT_MODEL)
    rng = np.random.default_rng(42)
    queries = unit(rng, args.queries)
    words = [word(r) for r in np.minimum(rng.zipf(1.2, 3 * args.queries), VOCABULARY)]
    sizes: dict[str, dict[str, object]] = {}
    index = VectorIndex()
    with tempfile.TemporaryDirectory(prefix="specmem-vectors-") as tmp:
        conn = db.connect(Path(tmp) / "index.db")
        with db.write_tx(conn):
            db.ensure_vec_table(conn, embedder.model_id, DIM)
        have = 0
        for n in sorted(int(s) for s in args.sizes.split(",")):
            insert_s = grow(conn, rng, embedder.model_id, have, n)
            have = n
            sizes[str(n)] = {"insert_s": round(insert_s, 1), **measure(conn, queries, index, embedder, words)}
            sizes[str(n)]["db_mb"] = round(os.path.getsize(Path(tmp) / "index.db") / 1e6, 1)
            print(n, sizes[str(n)], file=sys.stderr)
        conn.close()
    print(
        "| chunks | sqlite-vec k-NN p50 | in-memory k-NN p50 | load / refresh (one memory) | memory | same |"
    )
    print("|---|---|---|---|---|---|")
    for n, f in sizes.items():
        print(
            f"| {int(n):,} | {f['sqlite_vec_p50_ms']} ms | {f['index_semantic_p50_ms']} ms | "
            f"{f['index_load_s']} s / {f['index_refresh_one_memory_ms']} ms | {f['index_mb']} MB | "
            f"{f['index_same_as_sqlite_vec_share']:.0%} |"
        )
    print()
    print(
        "| chunks | hybrid p50 (CPU p50), sqlite-vec | hybrid p50 (CPU p50), in memory | query embedding p50 |"
    )
    print("|---|---|---|---|")
    for n, f in sizes.items():
        print(
            f"| {int(n):,} | {f['hybrid_sqlite_vec_p50_ms']} ({f['hybrid_sqlite_vec_cpu_p50_ms']}) ms | "
            f"{f['hybrid_in_memory_p50_ms']} ({f['hybrid_in_memory_cpu_p50_ms']}) ms | "
            f"{f['query_embedding_p50_ms']} ms |"
        )
    if not args.no_record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import record

        record("vectors", {"dim": DIM, "k": K, "queries": args.queries, "sizes": sizes})


if __name__ == "__main__":
    main()
