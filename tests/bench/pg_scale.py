"""PostgreSQL engine at scale: many projects in one database, the reads a hybrid search makes, timed within one
project and across all of them; SQLite's same reads on one project's file for comparison.

    .venv/bin/python tests/bench/pg_scale.py --projects 100 --files 100        # ~35k chunks
    .venv/bin/python tests/bench/pg_scale.py --url postgresql://…              # an existing server

Each project is indexed by the library's scan (`SPECMEM_DB=<url>`, SPECMEM_PROJECT=repo-NNN) and searched by the
whole search pipeline (`server/search.py`, hybrid, limit 10) within one project and across all of them; one
project's files are also scanned (first index, then a no-op rescan) and searched on SQLite. Vectors come from the
deterministic hash embedder (384 dimensions), which costs nothing to compute: what is timed is the database, not
the model. Prints the figures and records results/pg_scale.json.
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import pct, postgres, record  # noqa: E402

from specmem.indexer import config, db, pg  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server import pg_reads  # noqa: E402
from specmem.server.search import search  # noqa: E402
from tests.corpus import write_corpus  # noqa: E402

QUERY_WORDS = "cache token database session retry queue deploy schema index migration lock timeout".split()


def project_config(db_value: str | Path, root: Path, name: str, work: Path) -> config.Config:
    env = {**os.environ, "SPECMEM_PROJECT": name, "SPECMEM_MODEL": "hash:384"}
    return config.resolve(db=db_value, roots=[root], cwd=work, env=env)


def scanned(cfg: config.Config, embedder) -> tuple[float, float]:  # noqa: ANN001
    """Seconds of a first scan of the project and of a no-op rescan."""
    out = []
    for _ in range(2):
        conn = db.open_writer(cfg)
        t = time.perf_counter()
        scan(conn, cfg, embedder)
        out.append(time.perf_counter() - t)
        conn.close()
    return out[0], out[1]


def hybrid(conn, embedder):  # noqa: ANN001, ANN201
    return lambda words: search(conn, " ".join(words), limit=10, mode="hybrid", embedder=embedder)


def timed(fn, queries) -> list[float]:  # noqa: ANN001
    out = []
    for q in queries:
        t = time.perf_counter()
        fn(q)
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
    url, server = postgres(args.url, work)
    pg_reads.plug()
    first_scan, noop_scan, projects = [], [], []
    for i in range(args.projects):
        name = f"repo-{i:03d}"
        root = work / "files" / name
        write_corpus(root, n=args.files, seed=i)
        first, again = scanned(project_config(url, root, name, work), embedder)
        first_scan.append(first)
        noop_scan.append(again)
        print(
            f"project {i + 1}/{args.projects} indexed in {first:.1f} s, rescanned in {again:.2f} s",
            file=sys.stderr,
        )
    conn = pg.connect(url)
    conn.execute("VACUUM ANALYZE")
    chunks = int(conn.execute("SELECT count(*) FROM memory_chunks").fetchone()[0])  # type: ignore[index]
    projects = list(pg.project_ids(conn, None).values())

    rng = random.Random(0)
    queries = [rng.sample(QUERY_WORDS, 3) for _ in range(args.queries)]
    one = pg.PgConn(conn, (pg.project_ids(conn, ["repo-000"])["repo-000"],))
    every = pg.PgConn(conn, tuple(projects))
    timed(hybrid(one, embedder), queries[:5])  # warm the caches
    within = timed(hybrid(one, embedder), queries)
    across = timed(hybrid(every, embedder), queries)

    # SQLite: one project's own file, scanned and searched as a user would.
    cfg = project_config(work / "sqlite" / "index.db", work / "files" / "repo-000", "repo-000", work)
    sqlite_first, sqlite_noop = scanned(cfg, embedder)
    lite = db.connect(cfg.db_path, readonly=True)
    timed(hybrid(lite, embedder), queries[:5])
    sqlite_within = timed(hybrid(lite, embedder), queries)
    lite.close()

    figures = {
        "projects": args.projects,
        "files_per_project": args.files,
        "chunks": chunks,
        "load": os.getloadavg()[0],
        "scan_one_project_s": {
            "postgres_first_p50": round(pct(first_scan, 50), 2),
            "postgres_noop_p50": round(pct(noop_scan, 50), 3),
            "sqlite_first": round(sqlite_first, 2),
            "sqlite_noop": round(sqlite_noop, 3),
        },
        "hybrid_search_ms": {
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
