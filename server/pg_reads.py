"""The read SQL of the PostgreSQL engine: the functions of reads.py, with the same arguments and rows, for a
`pg.PgConn` (a connection and the projects a read may see) in place of an SQLite connection.

Keyword scores are FTS5's BM25, computed from the term statistics the writer keeps (indexer/pg_store.py), over
the projects in scope: on one project they equal what SQLite's bm25() gives for the same files
(specs/002-search/memory/bm25-on-postgres.md). Vectors are pgvector's: exact over a filtered scope, HNSW otherwise.
"""

from __future__ import annotations

import math
import re
import threading
from array import array
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import apsw

from specmem.indexer import terms
from specmem.indexer.pg import PgConn
from specmem.server.reads import (
    BM25_WEIGHTS,
    MARK_END,
    MARK_START,
    NO_CHUNK,
    ChunkRow,
    MemoryRow,
    Near,
    Scope,
)

if TYPE_CHECKING:
    pass

K1, B = 1.2, 0.75  # FTS5's bm25 constants
MIN_IDF = 1e-6  # FTS5: an idf at or below 0 (a term in most chunks) counts as this
EF_SEARCH = 100  # HNSW candidates at least (pgvector's default is 40)


def _ids(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]


# -- which memories a read may return ----------------------------------------------------------------------------


def glob_regex(glob: str) -> str:
    """SQLite's GLOB as a PostgreSQL regular expression: `*` any text, `?` one character, `[...]` a class (`[^`
    negates it); everything else literal, case-sensitive, the whole value."""
    out, i = ["^"], 0
    while i < len(glob):
        ch = glob[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[" and "]" in glob[i + 2 :] + (glob[i + 1 : i + 2] if glob[i + 1 : i + 2] == "]" else ""):
            end = glob.index("]", i + 2)
            body = glob[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out.append("[" + ("^" if negate else "") + body.replace("\\", "\\\\").replace("[", "\\[") + "]")
            i = end
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


def _where(read: PgConn, scope: Scope) -> tuple[str, list[object]]:
    """The scope as a condition on `memory_index m`, with its arguments (the projects first)."""
    clauses = ["m.project_id = ANY(%s)"]
    args: list[object] = [list(read.projects)]
    if scope.today is not None:
        clauses.append("(m.expires IS NULL OR m.expires >= %s)")
        args.append(scope.today)
    if scope.hide_deprecated:
        clauses.append("m.importance_tier != 'deprecated'")
    if scope.spec_folder is not None and not scope.below:
        clauses.append("m.spec_folder = %s")
        args.append(scope.spec_folder.strip("/"))
    elif scope.spec_folder:
        folder = scope.spec_folder.strip("/")
        clauses.append("(m.spec_folder = %s OR m.spec_folder LIKE %s ESCAPE '\\')")
        args += [folder, folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"]
    if scope.tiers:
        clauses.append("m.importance_tier = ANY(%s)")
        args.append(list(scope.tiers))
    if scope.context_type:
        clauses.append("m.context_type = %s")
        args.append(scope.context_type)
    for tag in scope.tags:
        clauses.append("(m.tags::jsonb) ? %s")
        args.append(tag)
    if scope.path_glob:
        clauses.append("(m.rel_path ~ %s OR m.path ~ %s)")
        args += [glob_regex(scope.path_glob)] * 2
    if scope.since_ms is not None:
        clauses.append("m.updated_at >= %s")
        args.append(scope.since_ms)
    return " AND ".join(clauses), args


def in_scope(read: PgConn, scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    return {int(r[0]) for r in read.conn.execute(f"SELECT m.id FROM memory_index m WHERE {where}", args)}


def visible(read: PgConn, ids: Iterable[int], scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    sql = f"SELECT m.id FROM memory_index m WHERE m.id = ANY(%s) AND {where}"
    return {int(r[0]) for r in read.conn.execute(sql, [_ids(ids), *args])}


def constitutional(read: PgConn, scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    sql = f"SELECT m.id FROM memory_index m WHERE m.importance_tier = 'constitutional' AND {where}"
    return {int(r[0]) for r in read.conn.execute(sql, args)}


# -- memory rows and chunks --------------------------------------------------------------------------------------

MEMORY_COLUMNS = (
    "id, path, rel_path, title, importance_tier, spec_folder, context_type, tags, updated_at, confidence, "
    "embedding_status"
)


def memory_rows(read: PgConn, ids: Iterable[int]) -> dict[int, MemoryRow]:
    import json

    sql = f"SELECT {MEMORY_COLUMNS} FROM memory_index WHERE id = ANY(%s) AND project_id = ANY(%s)"
    out = {}
    for values in read.conn.execute(sql, (_ids(ids), list(read.projects))):
        row = MemoryRow._make(values)
        out[int(row.id)] = row._replace(tags=json.loads(str(row.tags)))
    return out


def project_names(read: PgConn, ids: Iterable[int]) -> dict[int, str]:
    """memory id → the name of its project."""
    sql = (
        "SELECT m.id, p.name FROM memory_index m JOIN projects p ON p.id = m.project_id WHERE m.id = ANY(%s)"
    )
    return {int(mid): str(name) for mid, name in read.conn.execute(sql, (_ids(ids),))}


def _count(read: PgConn, sql: str) -> int:
    row = read.conn.execute(sql, (list(read.projects),)).fetchone()
    return int(row[0]) if row else 0


def memory_count(read: PgConn) -> int:
    return _count(read, "SELECT count(*) FROM memory_index WHERE project_id = ANY(%s)")


def pending_count(read: PgConn) -> int:
    return _count(
        read, "SELECT count(*) FROM memory_index WHERE project_id = ANY(%s) AND embedding_status = 'pending'"
    )


CHUNK_COLUMNS = "id, heading, anchor, start_line, end_line, text"


def chunks(read: PgConn, wanted: dict[int, int | None]) -> dict[int, ChunkRow | None]:
    out: dict[int, ChunkRow | None] = {}
    by_id = {cid: mid for mid, cid in wanted.items() if cid is not None}
    if by_id:
        sql = f"SELECT {CHUNK_COLUMNS} FROM memory_chunks WHERE id = ANY(%s)"
        for row in read.conn.execute(sql, (_ids(by_id),)):
            out[by_id[row[0]]] = ChunkRow._make(row)
        out.update({mid: None for mid in by_id.values() if mid not in out})
    first = [mid for mid, cid in wanted.items() if cid is None]
    if first:
        sql = (
            f"SELECT DISTINCT ON (memory_id) memory_id, {CHUNK_COLUMNS} FROM memory_chunks "
            "WHERE memory_id = ANY(%s) ORDER BY memory_id, seq"
        )
        for row in read.conn.execute(sql, (first,)):
            out[int(row[0])] = ChunkRow._make(row[1:])
        out.update({mid: NO_CHUNK for mid in first if mid not in out})
    return out


def chunk_owners(read: PgConn, chunk_ids: Sequence[int], scope: Scope) -> dict[int, int]:
    where, args = _where(read, scope)
    sql = (
        "SELECT c.id, c.memory_id FROM memory_chunks c JOIN memory_index m ON m.id = c.memory_id "
        f"WHERE c.id = ANY(%s) AND {where}"
    )
    return {int(c): int(m) for c, m in read.conn.execute(sql, [_ids(chunk_ids), *args])}


def chunks_of(read: PgConn, memory_ids: Sequence[int]) -> dict[int, int]:
    sql = "SELECT id, memory_id FROM memory_chunks WHERE memory_id = ANY(%s)"
    return {int(c): int(m) for c, m in read.conn.execute(sql, (_ids(memory_ids),))}


# -- keyword: FTS5's BM25 from term statistics --------------------------------------------------------------------

PHRASE_CANDIDATES = 5000  # chunks holding every term of a phrase, at most, that are read to count it exactly


@dataclass(frozen=True)
class _Bm25:
    """A query as FTS5's bm25() scores it over the projects in scope: each one-term word with its weight (idf ×
    times in the query), the exact contribution of each multi-term word (a phrase) per chunk, and the average
    chunk length."""

    terms: list[str]
    weights: list[float]
    phrase_chunks: list[int]
    phrase_scores: list[float]
    avgdl: float


def _words(words: Sequence[str]) -> tuple[Counter[str], list[list[str]]]:
    """The query's one-term words (by term, each counted as often as FTS5 scores it: two words with one stem
    count twice) and its phrases: words the tokenizer splits (`cache_key` is `cache` then `key`)."""
    single: Counter[str] = Counter()
    phrases: list[list[str]] = []
    for word in words:
        found = terms.tokens(word, query=True)
        if len(found) == 1:
            single[found[0]] += 1
        elif found:
            phrases.append(found)
    return single, phrases


def _totals(read: PgConn) -> tuple[int, int]:
    row = read.conn.execute(
        "SELECT coalesce(sum(chunks), 0), coalesce(sum(tokens), 0) FROM projects WHERE id = ANY(%s)",
        (list(read.projects),),
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


def _idf(rows: int, df: int) -> float:
    idf = math.log((rows - df + 0.5) / (df + 0.5))
    return idf if idf > 0 else MIN_IDF


def _phrase_hits(read: PgConn, phrase: list[str]) -> dict[int, tuple[list[int], int]] | None:
    """chunk id → (the phrase's count in each keyword column, the chunk's length) for every chunk in scope holding
    the phrase, found by reading the chunks that hold all its terms; None when more than PHRASE_CANDIDATES do."""
    distinct = sorted(set(phrase))
    rows = read.conn.execute(
        "SELECT c.id, c.text, c.heading, m.trigger_phrases, m.tags, m.rel_path, c.length FROM memory_chunks c "
        "JOIN memory_index m ON m.id = c.memory_id WHERE c.id IN (SELECT chunk_id FROM chunk_terms "
        "WHERE project_id = ANY(%s) AND term = ANY(%s) GROUP BY chunk_id HAVING count(*) = %s) LIMIT %s",
        (list(read.projects), distinct, len(distinct), PHRASE_CANDIDATES + 1),
    ).fetchall()
    if len(rows) > PHRASE_CANDIDATES:
        return None
    import json

    out: dict[int, tuple[list[int], int]] = {}
    n = len(phrase)
    for cid, text, heading, triggers, tags, rel_path, length in rows:
        values = (text, heading, " ; ".join(json.loads(triggers)), " ".join(json.loads(tags)), rel_path)
        counts = []
        for value in values:
            seq = terms.tokens(value)
            counts.append(sum(1 for i in range(len(seq) - n + 1) if seq[i : i + n] == phrase))
        if any(counts):
            out[int(cid)] = (counts, int(length))
    return out


def _bm25(read: PgConn, words: Sequence[str]) -> _Bm25 | None:
    """The query as bm25() scores it, or None when nothing can match. A phrase held by more than
    PHRASE_CANDIDATES chunks is scored as its terms (a bound, not FTS5's figure; see the decision record)."""
    single, phrases = _words(words)
    rows, tokens = _totals(read)
    if rows == 0 or not (single or phrases):
        return None
    avgdl = tokens / rows
    phrase_scores: dict[int, float] = {}
    for phrase in phrases:
        hits = _phrase_hits(read, phrase)
        if hits is None:
            single.update(phrase)
            continue
        idf = _idf(rows, len(hits))
        for cid, (counts, length) in hits.items():
            f = sum(c * w for c, w in zip(counts, BM25_WEIGHTS, strict=True))
            phrase_scores[cid] = phrase_scores.get(cid, 0.0) + idf * f * (K1 + 1) / (
                f + K1 * (1 - B + B * length / avgdl)
            )
    df = dict(
        read.conn.execute(
            "SELECT term, sum(chunks) FROM term_stats WHERE project_id = ANY(%s) AND term = ANY(%s) GROUP BY term",
            (list(read.projects), list(single)),
        ).fetchall()
    )
    found = [t for t in single if df.get(t)]
    if not found and not phrase_scores:
        return None
    weights = [_idf(rows, int(df[t])) * single[t] for t in found]
    ids = list(phrase_scores)
    return _Bm25(found, weights, ids, [phrase_scores[c] for c in ids], avgdl)


_FREQ = " + ".join(f"t.counts[{i + 1}] * {w!r}" for i, w in enumerate(BM25_WEIGHTS))
# Every chunk matching the query with its BM25: Σ weight × f × (k1 + 1) / (f + k1 × (1 − b + b × |D| / avgdl)),
# f the term's count weighted by column, as FTS5's bm25() adds it up; phrases' contributions come computed.
_SCORED = (
    f"(SELECT t.chunk_id, q.w * x.f * {K1 + 1!r} / (x.f + {K1!r} * ({1 - B!r} + {B!r} * t.length / %(avgdl)s)) AS s "
    "FROM chunk_terms t JOIN unnest(%(terms)s::text[], %(weights)s::float8[]) AS q(term, w) ON q.term = t.term "
    f"CROSS JOIN LATERAL (SELECT ({_FREQ})::float8 AS f) x "
    "WHERE t.project_id = ANY(%(projects)s) AND t.term = ANY(%(terms)s) "
    "UNION ALL SELECT * FROM unnest(%(phrase_chunks)s::bigint[], %(phrase_scores)s::float8[])) p"
)


def _args(read: PgConn, q: _Bm25, **more: Any) -> dict[str, Any]:
    return {
        "terms": q.terms,
        "weights": q.weights,
        "phrase_chunks": q.phrase_chunks,
        "phrase_scores": q.phrase_scores,
        "avgdl": q.avgdl,
        "projects": list(read.projects),
        **more,
    }


def best_chunks(
    read: PgConn, words: Sequence[str], n: int, among: Sequence[str] | None = None
) -> list[tuple[int, float]]:
    """The `n` chunks that match `words` best, as (chunk id, BM25), best first (ties: lower id first). With
    `among`, only chunks holding one of those words' terms are ranked (scored by all of `words` still)."""
    q = _bm25(read, words)
    if q is None:
        return []
    args = _args(read, q, n=n)
    narrow = ""
    if among is not None:
        args["among"] = sorted({t for w in among for t in terms.tokens(w, query=True)})
        narrow = (
            "WHERE p.chunk_id IN (SELECT chunk_id FROM chunk_terms WHERE project_id = ANY(%(projects)s) "
            "AND term = ANY(%(among)s)) "
        )
    sql = f"SELECT p.chunk_id, sum(p.s) AS s FROM {_SCORED} {narrow}GROUP BY 1 ORDER BY s DESC, 1 LIMIT %(n)s"
    return [(int(c), float(s)) for c, s in read.conn.execute(sql, args)]


def best_chunks_in_scope(
    read: PgConn, words: Sequence[str], scope: Scope, n: int
) -> list[tuple[int, int, float]]:
    """The `n` chunks of memories in scope that match `words` best, as (memory id, chunk id, BM25), best first."""
    q = _bm25(read, words)
    if q is None:
        return []
    where, args = _where(read, scope)
    named = {f"a{i}": a for i, a in enumerate(args)}
    where = where.replace("%s", "{}").format(*(f"%({k})s" for k in named))
    sql = (
        f"SELECT c.memory_id, p.chunk_id, sum(p.s) AS s FROM {_SCORED} JOIN memory_chunks c ON c.id = p.chunk_id "
        f"JOIN memory_index m ON m.id = c.memory_id WHERE {where} GROUP BY 1, 2 ORDER BY s DESC, 2 LIMIT %(n)s"
    )
    rows = read.conn.execute(sql, _args(read, q, n=n, **named))
    return [(int(m), int(c), float(s)) for m, c, s in rows]


def chunk_scores(read: PgConn, words: Sequence[str], chunk_ids: Sequence[int]) -> list[tuple[int, float]]:
    """(chunk id, BM25) of those of these chunks that match `words`."""
    q = _bm25(read, words) if chunk_ids else None
    if q is None:
        return []
    sql = f"SELECT p.chunk_id, sum(p.s) FROM {_SCORED} WHERE p.chunk_id = ANY(%(ids)s) GROUP BY 1"
    return [(int(c), float(s)) for c, s in read.conn.execute(sql, _args(read, q, ids=_ids(chunk_ids)))]


def keyword_rows(read: PgConn) -> int | None:
    """The number of chunks BM25's idf counts (over the projects in scope)."""
    return _totals(read)[0] or None


def document_frequency(read: PgConn, word: str) -> int:
    """How many chunks hold `word` (a phrase held by too many chunks to count: 0, which only makes pruning
    treat it as rare)."""
    single, phrases = _words([word])
    if phrases:
        hits = _phrase_hits(read, phrases[0])
        return 0 if hits is None else len(hits)
    if not single:
        return 0
    row = read.conn.execute(
        "SELECT coalesce(sum(chunks), 0) FROM term_stats WHERE project_id = ANY(%s) AND term = %s",
        (list(read.projects), next(iter(single))),
    ).fetchone()
    return int(row[0]) if row else 0


_snippet_local = threading.local()


def snippets(read: PgConn, words: Sequence[str], chunk_ids: Sequence[int]) -> dict[int, str]:
    """Chunk id → FTS5's own snippet of it (the same excerpt as on SQLite): the few chunks shown are put in an
    in-memory FTS5 table with the index's tokenizer and columns, and snippet() runs there."""
    import json

    from specmem.server.reads import match

    if not chunk_ids or not words:
        return {}
    mem = getattr(_snippet_local, "conn", None)
    if mem is None:
        mem = _snippet_local.conn = apsw.Connection(":memory:")
        name, args = terms.TOKENIZER
        mem.execute(
            f"CREATE VIRTUAL TABLE s USING fts5({', '.join(terms.COLUMNS)}, tokenize = '{name} {' '.join(args)}')"
        )
    rows = [
        (cid, text, heading, " ; ".join(json.loads(triggers)), " ".join(json.loads(tags)), rel)
        for cid, text, heading, triggers, tags, rel in read.conn.execute(
            "SELECT c.id, c.text, c.heading, m.trigger_phrases, m.tags, m.rel_path FROM memory_chunks c "
            "JOIN memory_index m ON m.id = c.memory_id WHERE c.id = ANY(%s)",
            (_ids(chunk_ids),),
        )
    ]
    with mem:
        mem.execute("DELETE FROM s")
        mem.executemany(f"INSERT INTO s (rowid, {', '.join(terms.COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        found = mem.execute(
            f"SELECT rowid, snippet(s, 0, '{MARK_START}', '{MARK_END}', '…', 24) FROM s WHERE s MATCH ?",
            (match(words),),
        ).fetchall()
    return {int(cast(int, cid)): str(text) for cid, text in found}


# -- semantic: pgvector -------------------------------------------------------------------------------------------


def vector_text(vector: bytes) -> str:
    """A float32 vector's bytes as pgvector reads them."""
    return "[" + ",".join(map(repr, array("f", vector))) + "]"


def nearest_in_scope(
    read: PgConn, vector: bytes, model: str, scope: Scope, k: int | None = None
) -> dict[int, Near]:
    """memory id → its closest chunk, for the `k` closest memories in scope (all when None), closest first. Exact:
    every chunk in scope is compared, so filters apply before the limit. (One model per database: `model` is
    the one the vectors were made with, checked by the caller.)"""
    where, args = _where(read, scope)
    sql = (
        "SELECT DISTINCT ON (c.memory_id) c.memory_id, c.id, v.embedding <=> %s::vector AS d FROM vec_memories v "
        "JOIN memory_chunks c ON c.id = v.chunk_id JOIN memory_index m ON m.id = c.memory_id "
        f"WHERE v.project_id = ANY(%s) AND {where} ORDER BY c.memory_id, d, c.id"
    )
    rows = read.conn.execute(sql, [vector_text(vector), list(read.projects), *args]).fetchall()
    # NaN: a zero query vector (a query with no words) has no direction: nothing to match by meaning.
    best = sorted(
        (float(d), int(cid), int(mid)) for mid, cid, d in rows if d is not None and not math.isnan(d)
    )
    return {mid: Near(cid, 1.0 - d) for d, cid, mid in best[: len(best) if k is None else k]}


def nearest_chunks(read: PgConn, vector: bytes, k: int) -> list[tuple[int, int, float]]:
    """The `k` chunks closest to `vector` in the projects in scope, as (chunk id, memory id, cosine distance):
    HNSW, scanning on while the project filter drops candidates (pgvector's iterative scan)."""
    with read.conn.transaction():
        read.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(k, 1000))}")
        read.conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = read.conn.execute(
            "SELECT v.chunk_id, c.memory_id, v.d FROM (SELECT chunk_id, embedding <=> %s::vector AS d "
            "FROM vec_memories WHERE project_id = ANY(%s) ORDER BY d LIMIT %s) v "
            "JOIN memory_chunks c ON c.id = v.chunk_id",
            (vector_text(vector), list(read.projects), k),
        ).fetchall()
    return [(int(c), int(m), float(d)) for c, m, d in rows if d is not None and not math.isnan(d)]


def embedded_count(read: PgConn) -> int:
    return _count(read, "SELECT count(*) FROM memory_chunks WHERE project_id = ANY(%s) AND embedded")


def has_vectors(read: PgConn) -> bool:
    row = read.conn.execute("SELECT to_regclass('vec_memories') IS NOT NULL").fetchone()
    return bool(row and row[0])


def get_config(read: PgConn, key: str) -> str | None:
    from specmem.indexer import pg

    return pg.get_config(read.conn, key)
