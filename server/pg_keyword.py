"""The keyword reads of the PostgreSQL engine: FTS5's BM25, computed from the term statistics the writer keeps
(indexer/pg_store.py) over the projects in scope, and FTS5's own snippets. On one project the scores equal what
SQLite's bm25() gives for the same files (specs/002-search/memory/bm25-on-postgres.md). The functions of
server/reads.py's keyword part, same names, arguments and rows, for a `pg.PgConn`; server/pg_reads.py has the rest.
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import apsw

from specmem.indexer import terms
from specmem.indexer.pg import PgConn
from specmem.server.pg_reads import ids_of, named_where
from specmem.server.reads import BM25_WEIGHTS, MARK_END, MARK_START, Scope, match

K1, B = 1.2, 0.75  # FTS5's bm25 constants
MIN_IDF = 1e-6  # FTS5: an idf at or below 0 (a term in most chunks) counts as this
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


def _columns(text: str, heading: str, triggers: str, tags: str, rel_path: str) -> tuple[str, ...]:
    """A chunk's keyword columns (terms.COLUMNS) from its row, as the writer made them."""
    return (text, heading, " ; ".join(json.loads(triggers)), " ".join(json.loads(tags)), rel_path)


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
    out: dict[int, tuple[list[int], int]] = {}
    n = len(phrase)
    for cid, text, heading, triggers, tags, rel_path, length in rows:
        counts = []
        for value in _columns(text, heading, triggers, tags, rel_path):
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
    where, named = named_where(read, scope)
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
    return [(int(c), float(s)) for c, s in read.conn.execute(sql, _args(read, q, ids=ids_of(chunk_ids)))]


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


def _snippet_table() -> apsw.Connection:
    """This thread's in-memory FTS5 table with the index's tokenizer and keyword columns."""
    mem = getattr(_snippet_local, "conn", None)
    if mem is None:
        mem = _snippet_local.conn = apsw.Connection(":memory:")
        name, args = terms.TOKENIZER
        mem.execute(
            f"CREATE VIRTUAL TABLE s USING fts5({', '.join(terms.COLUMNS)}, tokenize = '{name} {' '.join(args)}')"
        )
    return cast(apsw.Connection, mem)


def snippets(read: PgConn, words: Sequence[str], chunk_ids: Sequence[int]) -> dict[int, str]:
    """Chunk id → FTS5's own snippet of it (the same excerpt as on SQLite): the few chunks shown are put in an
    in-memory FTS5 table with the index's tokenizer and columns, and snippet() runs there."""
    if not chunk_ids or not words:
        return {}
    rows = [
        (cid, *_columns(text, heading, triggers, tags, rel))
        for cid, text, heading, triggers, tags, rel in read.conn.execute(
            "SELECT c.id, c.text, c.heading, m.trigger_phrases, m.tags, m.rel_path FROM memory_chunks c "
            "JOIN memory_index m ON m.id = c.memory_id WHERE c.id = ANY(%s)",
            (ids_of(chunk_ids),),
        )
    ]
    mem = _snippet_table()
    with mem:
        mem.execute("DELETE FROM s")
        mem.executemany(f"INSERT INTO s (rowid, {', '.join(terms.COLUMNS)}) VALUES (?, ?, ?, ?, ?, ?)", rows)
        found = mem.execute(
            f"SELECT rowid, snippet(s, 0, '{MARK_START}', '{MARK_END}', '…', 24) FROM s WHERE s MATCH ?",
            (match(words),),
        ).fetchall()
    return {int(cast(int, cid)): str(text) for cid, text in found}
