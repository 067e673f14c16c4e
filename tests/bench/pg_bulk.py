"""PostgreSQL at the issue's scale: many projects of synthetic but realistic memories loaded in bulk through the
engine's own batch writer, then hybrid searches through the whole pipeline within one project and across all.

    .venv/bin/python tests/bench/pg_bulk.py --projects 100 --chunks 10000   # the target: 1,000,000 chunks
    .venv/bin/python tests/bench/pg_bulk.py --projects 20 --chunks 10000    # what fits this machine in minutes

What is synthetic, and how: 2,000 `tests/corpus.py` files (realistic markdown, frontmatter, headings, topics) are
parsed and chunked once by the real pipeline (`scan.prepare`); each project's files are drawn from them, each with
a path of its own and every chunk ending with a line of 12 words drawn from a Zipf-distributed vocabulary of
50,000 made-up words (the generator's own vocabulary is small: this gives the term statistics the long tail of
real text, most terms rare and a few in most chunks, and makes every chunk's text its own). They are written by
`pg_store.store_memories` (the scan's batch writer) in batches of 2,000 files, without the file system walk of a
scan (this measures search, not indexing), then embedded by `embed_pending`. Vectors are the
deterministic hash embedder's (384 dimensions) of each chunk's text, computed in batches: they follow the words,
not meaning, which is enough to time pgvector's HNSW (what is timed is the database, not the model). The HNSW
index is built once after the load, as an operator restoring a dump would. Queries: 3 topic words each, the kind
of query an assistant sends. Timed: the pipeline as a one-shot search runs it (keyword from the term tables,
vectors from pgvector), within one project and across all, and within one project as a server runs it (its
project's vectors in memory, server/vectors.py). Prints and records results/pg_bulk.json.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import pct, postgres, record  # noqa: E402

from specmem.indexer import pg, pg_db, pg_store  # noqa: E402
from specmem.indexer.embed import embed_pending, get_embedder  # noqa: E402
from specmem.indexer.scan import prepare  # noqa: E402
from specmem.indexer.store import FileStat, Prepared  # noqa: E402
from specmem.server import pg_reads  # noqa: E402
from specmem.server.search import search  # noqa: E402
from specmem.server.vectors import VectorIndex  # noqa: E402
from tests.corpus import generate  # noqa: E402

MODEL = "hash:384"
BATCH = 2_000  # files per write
VOCABULARY = 50_000
QUERY_WORDS = "cache token database session retry queue deploy schema index migration lock timeout".split()


def made_up(rng: random.Random) -> list[str]:
    """VOCABULARY pronounceable words, the same for the same seed."""
    syllables = [c + v for c in "bcdfghklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < VOCABULARY:
        words.add("".join(rng.choice(syllables) for _ in range(rng.randint(2, 4))))
    return sorted(words)


def pool_of(files: int, embedder) -> list[Prepared]:  # noqa: ANN001
    """`files` generated memory files, parsed and chunked by the real pipeline (the projects' shared material)."""
    root = Path("/bench/pool/specs")
    out = []
    for i, mem in enumerate(generate(n=files, seed=0)):
        st = FileStat(len(mem.data), 1_700_000_000_000_000_000 + i * 1_000_000, 0, i)
        out.append(prepare(root / mem.rel_path, root, st, mem.data, None, embedder))
    return out


def variant(base: Prepared, root: Path, n: int, tail: str) -> Prepared:
    """A file of its own made from a pooled one: its own path, and each chunk ends with a line of its own."""
    path = root / f"{n:06d}-{base.path.name}"
    chunks = [dataclasses.replace(ch, text=f"{ch.text}\n{tail}") for ch in base.chunks]
    return dataclasses.replace(
        base, path=path, root=root, base=None, chunks=chunks, digest=f"{n}-{base.digest}"
    )


def load_project(  # noqa: PLR0913
    conn,  # noqa: ANN001
    name: str,
    files: int,
    pool: list[Prepared],
    vocab: list[str],
    weights: list[float],  # cumulated
    embedder,  # noqa: ANN001
    signal_path: Path,
) -> int:
    """One project's memories written through the engine's batch writer, then embedded; returns its chunks."""
    with pg.write_tx(conn):
        project = pg.project_id(conn, name)
    assert project is not None
    bound = pg.PgConn(conn, (project,))
    rng = random.Random(name)
    root = Path(f"/bench/{name}/specs")
    chunks = 0
    for start in range(0, files, BATCH):
        preps = [
            variant(rng.choice(pool), root, n, " ".join(rng.choices(vocab, cum_weights=weights, k=12)))
            for n in range(start, min(start + BATCH, files))
        ]
        with pg_db.write_tx(bound):
            stored = pg_store.store_memories(bound, [(p, None) for p in preps], None)
        assert len(stored) == len(preps)
        chunks += sum(len(p.chunks) for p in preps)
    embed_pending(bound, embedder, signal_path)
    return chunks


def timed(conn, queries, embedder, vectors=None) -> list[float]:  # noqa: ANN001
    out = []
    for words in queries:
        t = time.perf_counter()
        search(conn, " ".join(words), limit=10, mode="hybrid", embedder=embedder, vectors=vectors)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=10_000, help="chunks per project (about)")
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument(
        "--url", help="an existing PostgreSQL with pgvector (default: a private embedded one)"
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    embedder = get_embedder(MODEL)
    work = Path(tempfile.mkdtemp(prefix="specmem-pg-bulk-"))
    url, server = postgres(args.url, work)
    pg_reads.plug()
    conn = pg.connect(url)
    conn.execute("SET maintenance_work_mem = '1GB'")
    bound = pg.PgConn(conn, (pg.project_id(conn, "setup") or 0,))
    with pg_db.write_tx(bound):
        pg_db.ensure_vec_table(bound, MODEL, 384)
    conn.execute(f"DROP INDEX {pg_db.VEC_TABLE}_hnsw")  # built once after the load
    rng = random.Random(0)
    vocab = made_up(rng)
    weights = list(itertools.accumulate(1 / (rank + 1) for rank in range(VOCABULARY)))  # Zipf, cumulated once
    pool = pool_of(2_000, embedder)
    per_file = sum(len(p.chunks) for p in pool) / len(pool)
    files = max(1, round(args.chunks / per_file))
    t0 = time.perf_counter()
    total = 0
    for i in range(args.projects):
        t = time.perf_counter()
        total += load_project(conn, f"repo-{i:03d}", files, pool, vocab, weights, embedder, work / "signal")
        print(
            f"project {i + 1}/{args.projects}: {total} chunks so far ({time.perf_counter() - t:.0f} s)",
            file=sys.stderr,
        )
    load_s = time.perf_counter() - t0
    t = time.perf_counter()
    conn.execute(
        f"CREATE INDEX {pg_db.VEC_TABLE}_hnsw ON {pg_db.VEC_TABLE} USING hnsw (embedding vector_cosine_ops)"
    )
    hnsw_s = time.perf_counter() - t
    conn.execute("VACUUM ANALYZE")
    size = conn.execute("SELECT pg_database_size(current_database())").fetchone()[0]  # type: ignore[index]

    queries = [rng.sample(QUERY_WORDS, 3) for _ in range(args.queries)]
    ids = pg.project_ids(conn, None)
    one = pg.PgConn(conn, (ids["repo-000"],))
    every = pg.PgConn(conn, tuple(i for n, i in ids.items() if n != "setup"))
    timed(one, queries[:10], embedder)  # warm the caches
    within = timed(one, queries, embedder)
    # A server keeps its own project's vectors in memory (server/vectors.py) and searches them there.
    t = time.perf_counter()
    memory = VectorIndex()
    memory.refresh(one)
    vectors_load_s = time.perf_counter() - t
    served = timed(one, queries, embedder, memory)
    timed(every, queries[:5], embedder)
    across = timed(every, queries, embedder)
    figures = {
        "projects": args.projects,
        "chunks": total,
        "chunks_per_project": round(total / args.projects),
        "database_mb": round(size / 1e6),
        "load_s": round(load_s),
        "hnsw_build_s": round(hnsw_s),
        "server_vectors_load_s": round(vectors_load_s, 1),
        "load": os.getloadavg()[0],
        "hybrid_search_ms": {
            "one_project": {"p50": round(pct(within, 50), 1), "p95": round(pct(within, 95), 1)},
            "one_project_server": {"p50": round(pct(served, 50), 1), "p95": round(pct(served, 95), 1)},
            "all_projects": {"p50": round(pct(across, 50), 1), "p95": round(pct(across, 95), 1)},
        },
    }
    print(figures)
    if not args.no_record:
        record("pg_bulk", figures)
    conn.close()
    pg.close_pools()
    if server is not None:
        server.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
