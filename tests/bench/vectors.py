"""Semantic search at scale without a model: k-NN over specmem's `vec_memories` table (sqlite-vec, brute force)
next to the same k-NN as an in-memory numpy matrix product, at 13k, 100k, 200k and 500k chunks.

    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python tests/bench/vectors.py     # a few minutes, 0.8 GB of disk at 500k
    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python tests/bench/vectors.py --sizes 13000,100000

One BLAS thread, as a server answering several clients would use, and because several threads on a busy
machine make the numpy figures wait for one another (the recorded JSON keeps the thread settings).

The vectors are random unit vectors of 384 dimensions (the default model's), inserted straight into the table as
specmem creates it; the queries are random unit vectors too. One database grows from size to size. For each size:
sqlite-vec query p50/p95 with k = 400 (the chunk candidates specmem's semantic search asks for: 4 × its 100 memory
candidates), the time to load every vector into a numpy matrix (what an in-memory index pays once per process and
again after every write), that matrix's size, and the query p50/p95 of `matrix @ q` plus a top-k selection. Both
must return the same top 10. 13k chunks is md-manpages-2000 indexed (2,000 files).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from specmem.indexer import db

DIM = 384
K = 400
BATCH = 5000


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM), dtype=np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def grow(conn, rng: np.random.Generator, start: int, stop: int) -> float:
    t = time.perf_counter()
    for first in range(start, stop, BATCH):
        block = unit(rng, min(BATCH, stop - first))
        with db.write_tx(conn):
            conn.executemany(
                "INSERT INTO vec_memories (chunk_id, embedding) VALUES (?, ?)",
                ((first + i + 1, row.tobytes()) for i, row in enumerate(block)),
            )
    return time.perf_counter() - t


def measure(conn, queries: np.ndarray) -> dict[str, object]:
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
    return {
        "sqlite_vec_p50_ms": round(pct(vec_ms, 50), 2),
        "sqlite_vec_p95_ms": round(pct(vec_ms, 95), 2),
        "numpy_load_s": round(load_s, 3),
        "numpy_matrix_mb": round(matrix.nbytes / 1e6, 1),
        "numpy_p50_ms": round(pct(np_ms, 50), 2),
        "numpy_p95_ms": round(pct(np_ms, 95), 2),
        "speedup_p50": round(statistics.median(vec_ms) / statistics.median(np_ms), 1),
        "same_top10_share": agree,
    }


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
    rng = np.random.default_rng(42)
    queries = unit(rng, args.queries)
    sizes: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="specmem-vectors-") as tmp:
        conn = db.connect(Path(tmp) / "index.db")
        with db.write_tx(conn):
            db.ensure_vec_table(conn, "random-unit-vectors", DIM)
        have = 0
        for n in sorted(int(s) for s in args.sizes.split(",")):
            insert_s = grow(conn, rng, have, n)
            have = n
            sizes[str(n)] = {"insert_s": round(insert_s, 1), **measure(conn, queries)}
            sizes[str(n)]["db_mb"] = round(os.path.getsize(Path(tmp) / "index.db") / 1e6, 1)
            print(n, sizes[str(n)], file=sys.stderr)
        conn.close()
    print("| chunks | sqlite-vec p50 / p95 | numpy p50 / p95 | numpy load | matrix | same top 10 |")
    print("|---|---|---|---|---|---|")
    for n, f in sizes.items():
        print(
            f"| {int(n):,} | {f['sqlite_vec_p50_ms']} / {f['sqlite_vec_p95_ms']} ms | "
            f"{f['numpy_p50_ms']} / {f['numpy_p95_ms']} ms | {f['numpy_load_s']} s | {f['numpy_matrix_mb']} MB | "
            f"{f['same_top10_share']:.0%} |"
        )
    if not args.no_record:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from common import record

        record("vectors", {"dim": DIM, "k": K, "queries": args.queries, "sizes": sizes})


if __name__ == "__main__":
    main()
