"""The PostgreSQL engine reads what SQLite reads: the same files give the same BM25 scores, snippets, vectors and
scoped rows on both (a real PostgreSQL with pgvector, started by the `pg_server` fixture)."""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest

from specmem.indexer import db, pg, pg_store
from specmem.indexer.embed import embed_pending, get_embedder
from specmem.indexer.scan import prepare, scan
from specmem.indexer.store import FileStat
from specmem.server import pg_reads, reads
from specmem.server.reads import Scope
from tests.corpus import write_corpus
from tests.helpers import memory, write

QUERIES = [
    "database locked",
    "token expiry refresh",
    "cache keys hashed with xxh3",
    "why did we choose postgres",
    "running runners ran",
    "café naïve",
    "the",
    "foo_bar 3.5",
]


def index_into_pg(url: str, root: Path, name: str = "demo") -> pg.PgConn:
    """The files under `root` indexed into PostgreSQL as one project, with vectors from the test embedder."""
    embedder = get_embedder("hash:64")
    conn = pg.connect(url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, name)
        assert project is not None
    bound = pg.PgConn(conn, (project,))
    with pg.write_tx(conn):
        pg_store.ensure_vec_table(bound, embedder.model_id, embedder.dim)
    with pg.write_tx(conn, project):
        items = [
            (prepare(path, root, FileStat.of(path.stat()), path.read_bytes(), None, embedder), None)
            for path in sorted(root.rglob("*.md"))
        ]
        pg_store.store_memories(bound, items, None)
        pg.committed(conn, project)
    pending = pg_store.pending_chunks(bound, 0, 100_000)
    vectors = embedder.encode([f"{heading}\n{text}" for _, _, heading, text in pending])
    found = [(c, h, v.tolist()) for (c, h, _, _), v in zip(pending, vectors, strict=True)]
    with pg.write_tx(conn, project):
        pg_store.store_vectors(bound, embedder.model_id, found)
    return bound


@pytest.fixture
def both(specs: Path, cfg, pg_url: str):
    write_corpus(specs, n=150, seed=3)
    write(
        specs / "odd" / "memory" / "words.md",
        memory("Odd words", "running runners ran; café naïve; foo_bar 3.5"),
    )
    conn = db.connect(cfg.db_path)
    embedder = get_embedder("hash:64")
    scan(conn, cfg, embedder)
    read = index_into_pg(pg_url, specs)
    yield conn, read
    conn.close()
    read.conn.close()


def by_path(conn, read: pg.PgConn) -> tuple[dict[int, str], dict[int, str]]:
    """chunk id → (path, seq) on each engine: ids differ between engines, chunks do not."""
    lite = {
        cid: f"{p}#{s}"
        for cid, p, s in conn.execute(
            "SELECT c.id, m.path, c.seq FROM memory_chunks c JOIN memory_index m ON m.id = c.memory_id"
        )
    }
    post = {
        int(cid): f"{p}#{s}"
        for cid, p, s in read.conn.execute(
            "SELECT c.id, m.path, c.seq FROM memory_chunks c JOIN memory_index m ON m.id = c.memory_id"
        )
    }
    return lite, post


def test_bm25_equals_fts5(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    assert reads.keyword_rows(conn) == pg_reads.keyword_rows(read)
    for query in QUERIES:
        words = list(dict.fromkeys(re.findall(r"\w+", query.lower())))
        for word in words:
            assert reads.document_frequency(conn, word) == pg_reads.document_frequency(read, word), word
        lite = {lite_names[c]: s for c, s in reads.best_chunks(conn, words, 10_000)}
        post = {pg_names[c]: s for c, s in pg_reads.best_chunks(read, words, 10_000)}
        assert lite.keys() == post.keys(), query
        for key, score in lite.items():
            assert math.isclose(score, post[key], rel_tol=1e-9, abs_tol=1e-12), (query, key, score, post[key])


def test_pruned_and_scoped_cuts_equal_fts5(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    words = ["database", "locked", "the", "cache"]
    lite = [(lite_names[c], round(s, 9)) for c, s in reads.best_chunks(conn, words, 20, among=["locked"])]
    post = [(pg_names[c], round(s, 9)) for c, s in pg_reads.best_chunks(read, words, 20, among=["locked"])]
    assert lite == post
    scope = Scope(tiers=("critical", "important"), today="2000-01-01")
    lite_rows = reads.best_chunks_in_scope(conn, words, scope, 50)
    post_rows = pg_reads.best_chunks_in_scope(read, words, scope, 50)
    assert [(lite_names[c], round(s, 9)) for _, c, s in lite_rows] == [
        (pg_names[c], round(s, 9)) for _, c, s in post_rows
    ]


def test_snippets_equal_fts5(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    words = ["database", "token", "running"]
    lite_ids = [c for c, _ in reads.best_chunks(conn, words, 15)]
    pg_ids = [c for c, _ in pg_reads.best_chunks(read, words, 15)]
    lite = {lite_names[c]: t for c, t in reads.snippets(conn, words, lite_ids).items()}
    post = {pg_names[c]: t for c, t in pg_reads.snippets(read, words, pg_ids).items()}
    assert lite == post and lite


def test_scopes_select_the_same_memories(both) -> None:
    conn, read = both

    def paths_lite(ids: set[int]) -> set[str]:
        return {
            p
            for (p,) in conn.execute(
                f"SELECT path FROM memory_index WHERE id IN ({','.join(map(str, ids)) or 0})"
            )
        }

    def paths_pg(ids: set[int]) -> set[str]:
        return {
            p for (p,) in read.conn.execute("SELECT path FROM memory_index WHERE id = ANY(%s)", (list(ids),))
        }

    scopes = [
        Scope(),
        Scope(today="2030-01-01"),
        Scope(hide_deprecated=False),
        Scope(tiers=("constitutional",)),
        Scope(spec_folder="odd"),
        Scope(path_glob="*/memory/*.md"),
        Scope(path_glob="[a-m]*"),
        Scope(since_ms=1),
    ]
    tags = [t for (t,) in conn.execute("SELECT DISTINCT value FROM memory_index, json_each(tags)")]
    if tags:
        scopes.append(Scope(tags=(tags[0],)))
    for scope in scopes:
        assert paths_lite(reads.in_scope(conn, scope)) == paths_pg(pg_reads.in_scope(read, scope)), scope


def test_vectors_give_the_same_nearest(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    embedder = get_embedder("hash:64")
    embed_pending(conn, embedder, None)
    vector = embedder.encode(["token expiry"])[0].astype("float32").tobytes()
    scope = Scope(today="2000-01-01")
    lite = reads.nearest_in_scope(conn, vector, embedder.model_id, scope, 20)
    post = pg_reads.nearest_in_scope(read, vector, embedder.model_id, scope, 20)
    assert [round(n.similarity, 5) for n in lite.values()] == [round(n.similarity, 5) for n in post.values()]
    ann = pg_reads.nearest_chunks(read, vector, 20)
    exact = sorted(reads.nearest_chunks(conn, vector, 20), key=lambda r: r[2])
    assert {pg_names[c] for c, _, _ in ann} & {lite_names[c] for c, _, _ in exact}


def test_projects_are_separate(pg_url: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one / "a.md", memory("Payments", "idempotency keys on every charge"))
    write(two / "b.md", memory("Search", "idempotency of the indexer"))
    first = index_into_pg(pg_url, one, "payments")
    second = index_into_pg(pg_url, two, "search")
    both = pg.PgConn(first.conn, first.projects + second.projects)
    assert len(pg_reads.best_chunks(first, ["idempotency"], 10)) == 1
    assert len(pg_reads.best_chunks(both, ["idempotency"], 10)) == 2
    assert pg_reads.keyword_rows(both) == 2
    ids = pg_reads.in_scope(both, Scope())
    assert sorted(pg_reads.project_names(both, ids).values()) == ["payments", "search"]
    first.conn.close()
    second.conn.close()
