"""Keyword retrieval: the memories whose chunks match the query's words best by BM25, each by its best chunk.

The engine (reads.py) ranks chunks; this stage takes the best of them a cut at a time and groups them by memory,
widening the cut until enough memories are found, and knows when a cheaper cut is exact (`_pruning`).
"""

from __future__ import annotations

import math
import re
from typing import NamedTuple

import apsw

from specmem.indexer.parse import normalise
from specmem.server import reads
from specmem.server.reads import Scope

KEYWORD_CUT = 1000  # best chunks taken from the engine before they are grouped by memory
PRUNE_SHARE = 0.6  # see _pruning
MAX_QUERY_TOKENS = 64
STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from has have how i if in into is it its me my of on "
    "or our should so such than that the their them then there these they this to was we were what when where "
    "which while who why will with would you your".split()
)
WORD_RE = re.compile(r"\w+", re.UNICODE)


class KeywordHit(NamedTuple):
    """A memory found by keyword: its best chunk and that chunk's BM25, with its second best chunk's BM25."""

    chunk_id: int
    score: float  # BM25, higher is better
    second: float | None  # None: no second chunk matched (or it was not asked for, see `retrieve`)


def words(text: str) -> list[str]:
    """The words of user text that a keyword search looks for: normalised, each once, stopwords dropped (unless
    there is nothing else), at most MAX_QUERY_TOKENS."""
    found = list(dict.fromkeys(WORD_RE.findall(normalise(text))))
    content = [w for w in found if w not in STOPWORDS]
    return (content or found)[:MAX_QUERY_TOKENS]


def fts_query(text: str) -> str | None:
    """User text as a safe FTS5 query: words only, each quoted, OR-ed. No input can raise a syntax error."""
    found = words(text)
    return reads.match(found) if found else None


def retrieve(
    conn: apsw.Connection, query_words: list[str], scope: Scope, k: int, *, seconds: bool
) -> dict[int, KeywordHit]:
    """The `k` memories in scope whose best chunk matches best, best first (ties: lower chunk id).

    The engine's best chunks are taken first (a cut of KEYWORD_CUT, widened until `k` memories survive the scope
    or every match is in), so a query matching most of the index groups a thousand chunks, not all of them. With
    filters the cut is taken inside them, so it cannot drop the memories in scope. The result is the same as
    grouping every matching chunk: the best `k` memories by their best chunk, each with its exact second best
    (with `seconds`; otherwise the second best is given when the cut holds it, as only hybrid fusion uses it)."""
    if not query_words:
        return {}
    pruned = False
    for essential, bound in [(None, 0.0)] if scope.filtered else _pruning(conn, query_words):
        best, second, complete = _cut(conn, query_words, essential, scope, k)
        if essential is None:
            break
        # Exact when the k-th memory scores more than any chunk without an essential word can: such chunks can
        # then be no top memory's best (they can be its second best: those are all looked up again below).
        if len(best) >= k and sorted((s for _, s in best.values()), reverse=True)[k - 1] > bound:
            pruned = True
            break
    top = sorted(best.items(), key=lambda kv: (-kv[1][1], kv[1][0]))[:k]
    if seconds and (pruned or not complete):
        _look_up_seconds(
            conn, query_words, [mid for mid, _ in top if pruned or mid not in second], best, second
        )
    return {mid: KeywordHit(cid, s, second.get(mid)) for mid, (cid, s) in top}


Best = dict[int, tuple[int, float]]  # memory id → (best chunk id, its BM25)


def _cut(
    conn: apsw.Connection, query_words: list[str], essential: list[str] | None, scope: Scope, k: int
) -> tuple[Best, dict[int, float], bool]:
    """Each memory's best (and second best) chunk among the engine's best chunks, the cut widened until it holds
    `k` memories in scope or every match; the last value says whether it holds every match."""
    n = max(KEYWORD_CUT, k)
    while True:
        if scope.filtered:
            rows = reads.best_chunks_in_scope(conn, query_words, scope, n)
            taken = len(rows)
        else:
            # Scored by the whole query, but only chunks with one of the essential words are ranked.
            cut = reads.best_chunks(conn, query_words, n, among=essential)
            taken = len(cut)
            owner = reads.chunk_owners(conn, [cid for cid, _ in cut], scope)
            rows = [(owner[cid], cid, s) for cid, s in cut if cid in owner]
        best: Best = {}
        second: dict[int, float] = {}
        for mid, cid, s in rows:
            if mid not in best:
                best[mid] = (cid, s)
            elif mid not in second:
                second[mid] = s
        complete = taken < n
        if complete or len(best) >= k:
            return best, second, complete
        n *= 8


def _look_up_seconds(
    conn: apsw.Connection, query_words: list[str], missing: list[int], best: Best, second: dict[int, float]
) -> None:
    """Fill in `second` for these memories: the best BM25 among their chunks other than their best one."""
    if not missing:
        return
    others = reads.chunks_of(conn, missing)
    for mid in missing:
        others.pop(best[mid][0], None)
    for cid, s in reads.chunk_scores(conn, query_words, list(others)):
        mid = others[cid]
        second[mid] = max(s, second.get(mid, s))


def _pruning(conn: apsw.Connection, query_words: list[str]) -> list[tuple[list[str] | None, float]]:
    """Ways to rank fewer chunks than the query matches, each as (the query's essential words, an upper bound of
    the BM25 of a chunk with none of them), ending with (None, 0): every match.

    BM25 adds, for each query word, idf × f × (k1 + 1) / (f + k1 × (1 − b + b × length / average)), which stays
    below idf × (k1 + 1) whatever the word's frequency f in the chunk (k1 = 1.2, b = 0.75, FTS5's); a word in
    most chunks has a tiny idf. Ranking only the chunks with one of the rarer words is then exact as soon as the
    k-th memory found scores above what the common words alone can add up to."""
    everything: list[tuple[list[str] | None, float]] = [(None, 0.0)]
    if len(query_words) < 2:
        return everything
    rows = reads.keyword_rows(conn)
    df = {w: reads.document_frequency(conn, w) for w in query_words}
    if rows is None or sum(df.values()) < 2 * KEYWORD_CUT:
        return everything  # few matches: ranking them all is as quick
    ordered = sorted(query_words, key=lambda w: df[w])
    # 1.01: room for rounding; the bound only decides whether a cheaper way is exact, never a score.
    bound = {w: 1.01 * 2.2 * max(math.log((rows - df[w] + 0.5) / (df[w] + 0.5)), 1e-6) for w in ordered}
    # One try: leave out the commonest words while all they can add stays under PRUNE_SHARE of what the rarest
    # word alone can score; a miss costs a second pass, so the words left out must be clearly weaker.
    essential, left_out = list(ordered), 0.0
    while len(essential) > 1 and left_out + bound[essential[-1]] <= PRUNE_SHARE * bound[ordered[0]]:
        left_out += bound[essential.pop()]
    ways = [(essential, left_out)] if len(essential) < len(ordered) else []
    return ways + everything
