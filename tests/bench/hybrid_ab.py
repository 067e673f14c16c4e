"""Hybrid search at scale, before and after a change to its keyword side, in one process and in turns.

    OPENBLAS_NUM_THREADS=1 nice .venv/bin/python tests/bench/hybrid_ab.py --db /tmp/hybrid-500k/index.db

The index is vectors.py's (random unit vectors, Zipf-distributed random words, five chunks a memory, the same seed
and queries), built at the first run into `--db` (500,000 chunks: 3.4 GB, several minutes) and reused afterwards.
A server's in-memory vectors are loaded once; then each query is searched in hybrid mode three times, in rotated
order: as before (document frequencies counted again for each search, the connection's counts dropped first;
the keyword side, then the matrix's k-NN), with the counts kept (the connection keeps them until the index
changes), and as now (also the matrix's numpy part in a thread while the keyword side runs). Wall and CPU
p50/p95 of each, and whether all return the same results (they must).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import pct, record  # noqa: E402
from vectors import DIM, VOCABULARY, grow, unit, word  # noqa: E402

from specmem.indexer import config, db  # noqa: E402
from specmem.server import reads, semantic  # noqa: E402
from specmem.server.search import search  # noqa: E402
from specmem.server.vectors import VectorIndex  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--db", required=True, type=Path, help="The index: built there at the first run.")
    parser.add_argument("--chunks", type=int, default=500_000, help="Chunks in the index (default 500,000).")
    parser.add_argument("--queries", type=int, default=30, help="Queries (default 30, as vectors.py).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    from specmem.indexer.onnx_embed import get_query_embedder

    embedder = get_query_embedder(config.DEFAULT_MODEL)
    rng = np.random.default_rng(42)  # vectors.py's seed and order: its queries, then its index
    unit(rng, args.queries)
    words = [word(r) for r in np.minimum(rng.zipf(1.2, 3 * args.queries), VOCABULARY)]
    phrases = [" ".join(words[i : i + 3]) for i in range(0, 3 * args.queries, 3)]
    args.db.parent.mkdir(parents=True, exist_ok=True)
    conn = db.connect(args.db)
    if db.get_config(conn, "model") is None:
        with db.write_tx(conn):
            db.ensure_vec_table(conn, embedder.model_id, DIM)
        print(f"building {args.chunks:,} chunks in {args.db}", file=sys.stderr)
        grow(conn, rng, embedder.model_id, 0, args.chunks)
    chunks = int(db.scalar(conn, "SELECT count(*) FROM memory_chunks"))
    index = VectorIndex()
    index.refresh(conn)
    load = os.getloadavg()

    start = semantic.start

    def one(phrase: str, variant: str) -> tuple[float, float, list[tuple[int, float]]]:
        if variant == "before":
            reads._frequencies.pop(conn, None)
        semantic.start = start if variant == "now" else (lambda *args: None)  # type: ignore[assignment]
        w, c = time.perf_counter(), time.process_time()
        found = search(conn, phrase, mode="hybrid", embedder=embedder, vectors=index)
        wall, cpu = (time.perf_counter() - w) * 1000, (time.process_time() - c) * 1000
        semantic.start = start
        assert found.mode_used == "hybrid", found.notes
        return wall, cpu, [(r.id, r.score) for r in found.results]

    variants = ["before", "counts_kept", "now"]
    for variant in variants:
        one(phrases[0], variant)  # warm
    runs: dict[str, tuple[list[float], list[float]]] = {v: ([], []) for v in variants}
    same = 0
    for i, phrase in enumerate(phrases):
        ids = {}
        for name in variants[i % 3 :] + variants[: i % 3]:
            wall, cpu, ids[name] = one(phrase, name)
            runs[name][0].append(wall)
            runs[name][1].append(cpu)
        same += ids["before"] == ids["counts_kept"] == ids["now"]
    figures: dict[str, object] = {
        "chunks": chunks,
        "queries": len(phrases),
        "loadavg_before_after": [round(load[0], 2), round(os.getloadavg()[0], 2)],
        "same_results_share": same / len(phrases),
    }
    for name, (wall, cpu) in runs.items():
        figures[name] = {
            "wall_p50_ms": round(pct(wall, 50), 1),
            "wall_p95_ms": round(pct(wall, 95), 1),
            "cpu_p50_ms": round(pct(cpu, 50), 1),
            "cpu_p95_ms": round(pct(cpu, 95), 1),
        }
    for name in variants[1:]:
        figures[f"{name}_wall_p50_ratio"] = round(pct(runs[name][0], 50) / pct(runs["before"][0], 50), 3)
        figures[f"{name}_cpu_p50_ratio"] = round(pct(runs[name][1], 50) / pct(runs["before"][1], 50), 3)
    conn.close()
    print(figures)
    if not args.no_record:
        record("hybrid_ab", figures)


if __name__ == "__main__":
    main()
