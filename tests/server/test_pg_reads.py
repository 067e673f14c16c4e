"""The PostgreSQL engine reads what SQLite reads: the same files give the same BM25 scores, snippets, vectors and
scoped rows on both (a real PostgreSQL with pgvector, started by the `pg_server` fixture)."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest

from specmem.indexer import db, pg
from specmem.indexer.embed import get_embedder
from specmem.indexer.scan import scan
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


def index_into_pg(url: str, cfg, name: str = "demo", roots: tuple[Path, ...] | None = None) -> pg.PgConn:
    """The files under the roots scanned into PostgreSQL as one project by the library's own scan (the engine
    plugged behind the seam), with vectors from the test embedder."""
    pg_reads.plug()
    conn = pg.connect(url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, name)
        assert project is not None
    bound = pg.PgConn(conn, (project,))
    scan(bound, cfg, get_embedder("hash:64"), roots=roots)
    return bound


@pytest.fixture
def both(specs: Path, cfg, pg_url: str):
    write_corpus(specs, n=150, seed=3)
    write(
        specs / "odd" / "memory" / "words.md",
        memory("Odd words", "running runners ran; café naïve; foo_bar 3.5"),
    )
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, get_embedder("hash:64"))
    read = index_into_pg(pg_url, cfg)
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
    assert reads.keyword_rows(conn) == reads.keyword_rows(read)
    for query in QUERIES:
        words = list(dict.fromkeys(re.findall(r"\w+", query.lower())))
        for word in words:
            assert reads.document_frequency(conn, word) == reads.document_frequency(read, word), word
        lite = {lite_names[c]: s for c, s in reads.best_chunks(conn, words, 10_000)}
        post = {pg_names[c]: s for c, s in reads.best_chunks(read, words, 10_000)}
        assert lite.keys() == post.keys(), query
        for key, score in lite.items():
            assert math.isclose(score, post[key], rel_tol=1e-9, abs_tol=1e-12), (query, key, score, post[key])


def test_pruned_and_scoped_cuts_equal_fts5(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    words = ["database", "locked", "the", "cache"]
    lite = [(lite_names[c], round(s, 9)) for c, s in reads.best_chunks(conn, words, 20, among=["locked"])]
    post = [(pg_names[c], round(s, 9)) for c, s in reads.best_chunks(read, words, 20, among=["locked"])]
    assert lite == post
    scope = Scope(tiers=("critical", "important"), today="2000-01-01")
    lite_rows = reads.best_chunks_in_scope(conn, words, scope, 50)
    post_rows = reads.best_chunks_in_scope(read, words, scope, 50)
    assert [(lite_names[c], round(s, 9)) for _, c, s in lite_rows] == [
        (pg_names[c], round(s, 9)) for _, c, s in post_rows
    ]


def test_snippets_equal_fts5(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    words = ["database", "token", "running"]
    lite_ids = [c for c, _ in reads.best_chunks(conn, words, 15)]
    pg_ids = [c for c, _ in reads.best_chunks(read, words, 15)]
    lite = {lite_names[c]: t for c, t in reads.snippets(conn, words, lite_ids).items()}
    post = {pg_names[c]: t for c, t in reads.snippets(read, words, pg_ids).items()}
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
        assert paths_lite(reads.in_scope(conn, scope)) == paths_pg(reads.in_scope(read, scope)), scope


def test_vectors_give_the_same_nearest(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    embedder = get_embedder("hash:64")
    vector = embedder.encode(["token expiry"])[0].astype("float32").tobytes()
    scope = Scope(today="2000-01-01")
    lite = reads.nearest_in_scope(conn, vector, embedder.model_id, scope, 20)
    post = reads.nearest_in_scope(read, vector, embedder.model_id, scope, 20)
    assert [round(n.similarity, 5) for n in lite.values()] == [round(n.similarity, 5) for n in post.values()]
    ann = reads.nearest_chunks(read, vector, 20)
    exact = sorted(reads.nearest_chunks(conn, vector, 20), key=lambda r: r[2])
    assert {pg_names[c] for c, _, _ in ann} & {lite_names[c] for c, _, _ in exact}


def test_projects_are_separate(pg_url: str, cfg, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write(one / "a.md", memory("Payments", "idempotency keys on every charge"))
    write(two / "b.md", memory("Search", "idempotency of the indexer"))
    first = index_into_pg(pg_url, cfg, "payments", (one,))
    second = index_into_pg(pg_url, cfg, "search", (two,))
    both = pg.PgConn(first.conn, first.projects + second.projects)
    assert len(reads.best_chunks(first, ["idempotency"], 10)) == 1
    assert len(reads.best_chunks(both, ["idempotency"], 10)) == 2
    assert reads.keyword_rows(both) == 2
    ids = reads.in_scope(both, Scope())
    assert sorted(pg_reads.project_names(both, ids).values()) == ["payments", "search"]
    first.conn.close()
    second.conn.close()


def _path_keyed(value, paths):
    """A read's answer with memory ids replaced by paths (ids differ between engines)."""
    if isinstance(value, dict):
        return {paths.get(k, k): _path_keyed(v, paths) for k, v in value.items()}
    if isinstance(value, (reads.MemoryRow, reads.MemoryDetail)):
        return dataclasses.replace(value, id=paths[value.id])
    if isinstance(value, list) or type(value) is tuple:
        return type(value)(_path_keyed(v, paths) for v in value)
    return value


def test_every_read_agrees(both) -> None:
    """Each read of the seam gives the same answer on both engines for the same files (ids aside)."""
    conn, read = both
    lite_paths = {i: p for i, p in conn.execute("SELECT id, path FROM memory_index")}
    pg_paths = {int(i): p for i, p in read.conn.execute("SELECT id, path FROM memory_index")}
    by_path_pg = {p: i for i, p in pg_paths.items()}

    def same(name, lite_args=(), pg_args=None):
        fn = getattr(reads, name)
        lite = _path_keyed(fn(conn, *lite_args), lite_paths)
        post = _path_keyed(fn(read, *(lite_args if pg_args is None else pg_args)), pg_paths)
        assert lite == post, name

    some = sorted(lite_paths)[:40]
    pg_some = [by_path_pg[lite_paths[i]] for i in some]
    scope = Scope(tiers=("critical", "important", "normal"))
    same("memories_in", (scope,))
    for sort in reads.SORTS:
        same("page", (scope, sort, 3, 25))
    same("served")
    same("triggered")
    for column in reads.COUNTED:
        same("counts", (column,))
    for name in (
        "file_warnings",
        "files_bytes",
        "memory_count",
        "chunk_count",
        "embedded_count",
        "has_vectors",
    ):
        same(name)
    same("memory_rows", (some,), (pg_some,))
    same("memory_by_id", (some[0],), (pg_some[0],))
    path = lite_paths[some[1]]
    same("memory_by_path", (path,))
    rel = reads.memory_by_path(conn, path).rel_path
    same("memories_by_rel_path", (rel,))
    same("spans", (some,), (pg_some,))
    lite_chunks = {k: v._replace(id=None) for k, v in reads.chunks(conn, dict.fromkeys(some)).items()}
    pg_chunks = {k: v._replace(id=None) for k, v in reads.chunks(read, dict.fromkeys(pg_some)).items()}
    assert _path_keyed(lite_chunks, lite_paths) == _path_keyed(pg_chunks, pg_paths)
    lc, pc = reads.consistency(conn), reads.consistency(read)
    assert (lc.chunks, lc.keyword_rows, lc.vectors, lc.embedded_chunks) == (
        pc.chunks,
        pc.keyword_rows,
        pc.vectors,
        pc.embedded_chunks,
    )
    assert reads.integrity(conn) == reads.integrity(read) == []
    assert reads.vector_version(read).startswith("pgvector ")
    assert reads.pending_count(read) == reads.pending_count(conn) == 0


def test_vectors_read_back_to_the_bit(both) -> None:
    conn, read = both
    lite_names, pg_names = by_path(conn, read)
    model = get_embedder("hash:64").model_id
    lite = {lite_names[c]: v for c, _, v in reads.chunk_vectors(conn, model, between=(0, 10**9))}
    post = {pg_names[c]: v for c, _, v in reads.chunk_vectors(read, model, between=(0, 10**9))}
    assert lite == post and lite
    blobs = list(post.values())[:20]
    distances = reads.cosine_distances(read, blobs, blobs[0])
    assert distances[0] == pytest.approx(0.0, abs=1e-6) and all(d is not None for d in distances)
    assert reads.last_chunk_id(read) >= max(pg_names)
    blocks = reads.chunk_blocks(read, 8)
    assert sum(n for n, _ in blocks.values()) == reads.chunk_count(read)
    assert reads.unembedded_chunks(read) == set()
    assert reads.embedded_between(read, 0, 10**9) == set(pg_names)


def test_search_gives_the_same_results(both) -> None:
    """The whole search pipeline, run on each engine, ranks the same memories with the same scores."""
    from specmem.server.search import search

    conn, read = both
    embedder = get_embedder("hash:64")
    for mode in ("keyword", "semantic", "hybrid"):
        for query in ("database locked", "token expiry refresh", "cache keys hashed with xxh3"):
            lite = search(conn, query, mode=mode, limit=10, embedder=embedder)
            post = search(read, query, mode=mode, limit=10, embedder=embedder)
            assert [h.path for h in lite.results] == [h.path for h in post.results], (mode, query)
            # sqlite-vec and pgvector sum a cosine in different orders: the last float32 bits may differ.
            assert [h.score for h in post.results] == pytest.approx([h.score for h in lite.results], abs=1e-5)
