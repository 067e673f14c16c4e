"""Search the index: keyword (BM25) and semantic (cosine) retrieval, fused at memory level, ranked with tier
weights; the stages live in keyword.py, semantic.py, fusion.py and rank.py, the SQL in reads.py.

Reads only: nothing on the search path writes to the database.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal

import apsw

from specmem.indexer.errors import SearchError
from specmem.indexer.tiers import TIERS
from specmem.server import citations, fusion, keyword, rank, reads, semantic
from specmem.server.keyword import fts_query as fts_query  # the query syntax tests and benchmarks check
from specmem.server.rank import DESCRIBED, MAX_RULES, Ranked, described, figures
from specmem.server.rank import ScoreParts as ScoreParts  # a result's field, named here for its users
from specmem.server.reads import ChunkRow, Scope

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder  # numpy: not for a keyword search
    from specmem.server.vectors import VectorIndex  # numpy: a server's, made by its ReadState

Mode = Literal["keyword", "semantic", "hybrid"]
MODES: tuple[Mode, ...] = ("keyword", "semantic", "hybrid")
CANDIDATES = 100  # memories taken from each retriever before fusion
MAX_TAGS = 100  # tags one filter may require (each is a condition of the query; SQLite nests at most 1,000)
SNIPPET_CHARS = 240  # an excerpt's length when no match marks it


@dataclass
class Filters:
    __pydantic_config__ = DESCRIBED

    spec_folder: str | None = described("Only this spec folder (and folders below it)")
    tiers: list[str] | None = described("Only these importance tiers")
    context_type: str | None = None
    tags: list[str] | None = described("Only memories carrying all of these tags")
    path_glob: str | None = described("Glob on the path relative to its root, e.g. '*/memory/*.md'")
    since: dt.datetime | None = described("Only memories modified at or after this time")

    def is_empty(self) -> bool:
        return not any(getattr(self, f.name) for f in fields(self))


@dataclass
class SearchResult:
    __pydantic_config__ = DESCRIBED

    id: int
    path: str
    rel_path: str
    start_line: int
    end_line: int
    title: str
    heading: str
    anchor: str | None
    tier: str
    spec_folder: str
    context_type: str | None
    tags: list[str]
    score: float
    parts: ScoreParts
    snippet: str
    always_surfaced: bool = described("A rule listed on top because every rule was asked for", False)
    code: str | None = described(citations.CODE_DESCRIPTION, None)
    code_notes: list[str] = field(
        default_factory=list, metadata={"description": "One line per cited place of code that is not current"}
    )
    project: str | None = described("The project the memory belongs to (its name in a shared index)", None)

    @property
    def citation(self) -> str:
        return f"{self.path}:{self.start_line}-{self.end_line}"


@dataclass
class SearchResponse:
    query: str
    mode_requested: Mode
    mode_used: Mode
    keyword_only: bool
    results: list[SearchResult]
    pending_embeddings: int
    total_memories: int
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """The response as plain JSON-ready values (what `--json` prints)."""
        return asdict(self)


def search(
    conn: apsw.Connection,
    query: str,
    *,
    limit: int = 10,
    mode: Mode = "hybrid",
    filters: Filters | None = None,
    embedder: Embedder | None = None,
    include_deprecated: bool = False,
    include_constitutional: bool = True,
    surface: int | None = None,
    now: dt.datetime | None = None,
    vectors: VectorIndex | None = None,
) -> SearchResponse:
    """Ranked memories for `query`, in six steps:

    1. Scope: the filters, with deprecated (unless asked for) and expired memories hidden, applied in every
       retrieval so that a filtered search still returns `limit` results when there are that many.
    2. Query vector: the query embedded, unless the mode is keyword; without a model that fits the index the
       search answers in keyword mode and says so.
    3. Retrieve: the best `k` memories by keyword (keyword.py, BM25) and by meaning (semantic.py, cosine), each
       memory by its best chunk.
    4. Fuse: one score per memory (fusion.py; in hybrid mode both sides normalised and weighed; a memory whose
       vector is pending is ranked by its keyword score on both sides).
    5. Rank: × tier weight × recency × confidence (rank.py). With `include_constitutional`, constitutional
       memories lead outside `limit` when `surface` is None (all of them); else they are ranked by relevance and
       at most `rank.rule_share(surface, limit)` of them stand among the first `limit`.
    6. Results: the memories shown, each with its best chunk (citation lines), a snippet, its score parts and
       the status of the code it cites.

    `vectors`, a long-running server's in-memory copy of the vectors (kept up to date by the caller), answers
    the semantic side with the same results as sqlite-vec, faster."""
    if mode not in MODES:
        raise SearchError(f"unknown mode {mode!r}; use keyword, semantic or hybrid")
    if not 1 <= limit <= 1000:
        raise SearchError(f"limit must be between 1 and 1000, not {limit}")
    now = now or dt.datetime.now().astimezone()
    scope = _scope(filters or Filters(), include_deprecated, now)  # 1
    k = max(CANDIDATES, limit * 3)
    notes: list[str] = []
    vector, why_not = semantic.query_vector(conn, query, embedder) if mode != "keyword" else (None, None)  # 2
    used: Mode = mode if vector is not None else "keyword"
    notes += [why_not] if why_not else []
    words = keyword.words(query)
    found_kw, found_sem = _retrieve(conn, words, vector, embedder, scope, k, used, vectors)  # 3
    # Scoped: the filtered semantic side ranked every memory in scope, not a top-k cut of the index.
    scoped = scope.filtered and len(found_sem) < k
    # A memory whose vector is pending is ranked by what is known, its keyword score (fusion.fuse).
    waiting = (
        reads.pending_among(conn, [m for m in found_kw if m not in found_sem]) if used == "hybrid" else set()
    )
    found = fusion.combine(found_kw, found_sem, hybrid=used == "hybrid", scoped=scoped, pending=waiting)  # 4
    ranked, unshown = rank.rank(
        conn,
        found,
        scope,
        include_constitutional=include_constitutional,
        surface=surface,
        now=now,
        limit=limit,
    )  # 5
    notes += _unshown(unshown)
    results = _results(conn, ranked, found, words, limit)  # 6
    citations.annotate(conn, results)
    pending = reads.pending_count(conn)
    notes += _coverage(conn, pending) if used != "keyword" else []
    return SearchResponse(
        query=query,
        mode_requested=mode,
        mode_used=used,
        keyword_only=used == "keyword",
        results=results,
        pending_embeddings=pending,
        total_memories=reads.memory_count(conn),
        notes=notes,
    )


def _retrieve(
    conn: apsw.Connection,
    words: list[str],
    vector: bytes | None,
    embedder: Embedder | None,
    scope: Scope,
    k: int,
    used: Mode,
    vectors: VectorIndex | None,
) -> tuple[dict[int, keyword.KeywordHit], dict[int, semantic.SemanticHit]]:
    """Step 3: the best `k` memories by keyword and by meaning. In hybrid mode with the in-memory matrix, its
    numpy part runs in a thread while the keyword side runs here."""
    overlap = used == "hybrid" and vector is not None and vectors is not None
    started = semantic.start(vector, scope, k, vectors) if overlap and vector and vectors else None
    found_kw = keyword.retrieve(conn, words, scope, k, seconds=used == "hybrid") if used != "semantic" else {}
    if not (vector and embedder):
        return found_kw, {}
    return found_kw, semantic.retrieve(conn, vector, embedder.model_id, scope, k, vectors, started)


def _epoch_ms(when: dt.datetime) -> int:
    """`when` in ms since the epoch (a time without a zone is local). A date at either end of the calendar,
    which a time zone shifts out of it (0001-01-01, 9999-12-31), stands for the earliest or latest time."""
    try:
        return int((when if when.tzinfo else when.astimezone()).timestamp() * 1000)
    except (OverflowError, ValueError, OSError):
        return -(2**62) if when.year < 1970 else 2**62


def _unshown(unshown: int) -> list[str]:
    """The note of a search whose rules did not all fit on top."""
    if not unshown:
        return []
    return [
        f"{unshown} more constitutional rules are not shown (at most {MAX_RULES} lead a result); "
        "memory_list with tier constitutional lists them all"
    ]


def _coverage(conn: apsw.Connection, pending: int) -> list[str]:
    """The note of a search that used meaning while some memories wait for their embeddings."""
    if not pending:
        return []
    total = reads.memory_count(conn)
    return [
        f"meaning-based ranking ready for {(total - pending) * 100 // max(total, 1)}% of memories; the other "
        f"{pending} are waiting for embeddings and ranked by keyword alone"
    ]


def _scope(filters: Filters, include_deprecated: bool, now: dt.datetime) -> Scope:
    """The memories a search may return: its filters, and what every search hides."""
    unknown = [t for t in filters.tiers or [] if t not in TIERS]
    if unknown:
        raise SearchError(f"unknown tier(s) {', '.join(unknown)}; use: {', '.join(TIERS)}")
    if len(filters.tags or ()) > MAX_TAGS:
        raise SearchError(f"at most {MAX_TAGS} tags in a filter ({len(filters.tags or ())} given)")
    return Scope(
        spec_folder=filters.spec_folder,
        tiers=tuple(filters.tiers or ()),
        context_type=filters.context_type,
        tags=tuple(filters.tags or ()),
        path_glob=filters.path_glob,
        since_ms=_epoch_ms(filters.since) if filters.since else None,
        hide_deprecated=not include_deprecated and "deprecated" not in (filters.tiers or ()),
        today=now.date().isoformat(),
    )


def _results(
    conn: apsw.Connection, ranked: list[Ranked], found: fusion.Candidates, words: list[str], limit: int
) -> list[SearchResult]:
    """The memories shown: every one that leads as a rule, then `limit` more, each with its best chunk and a
    snippet. Chunks and snippets are read for those only, each kind in one query, however many rules lead."""
    shown = sum(1 for r in ranked if r.surfaced) + limit
    chunks = reads.chunks(conn, {r.memory.id: found.best_chunk(r.memory.id) for r in ranked[:shown]})
    picked: list[tuple[Ranked, ChunkRow]] = []
    for r in ranked:
        if not r.surfaced and len(picked) >= shown:
            break
        chunk = chunks[r.memory.id] if r.memory.id in chunks else _chunk(conn, found, r.memory.id)
        if chunk is not None:  # else replaced by a writer since the candidates were found
            picked.append((r, chunk))
    # No chunk of a memory outside the keyword hits can match the words: those need no snippet.
    marked = _snippets(
        conn, words, [c.id for r, c in picked if r.memory.id in found.keyword and c.id is not None]
    )
    return [_result(r, chunk, marked.get(chunk.id) if chunk.id is not None else None) for r, chunk in picked]


def _chunk(conn: apsw.Connection, found: fusion.Candidates, memory_id: int) -> ChunkRow | None:
    return reads.chunks(conn, {memory_id: found.best_chunk(memory_id)})[memory_id]


def _snippets(conn: apsw.Connection, words: list[str], chunk_ids: list[int]) -> dict[int, str]:
    """Excerpts of these chunks with the matches between `**` (chunks without a match are left out); the text's
    own markdown bold is dropped, so a bold word that matches reads `**word**`, not `****word****`."""
    if not words or not chunk_ids:
        return {}
    out = {}
    for cid, text in reads.snippets(conn, words, chunk_ids).items():
        if reads.MARK_START in text:
            flat = " ".join(text.replace("**", "").split())
            out[cid] = flat.replace(reads.MARK_START, "**").replace(reads.MARK_END, "**")
    return out


def _excerpt(text: str) -> str:
    flat = " ".join(text.replace("**", "").split())
    return flat[:SNIPPET_CHARS] + ("…" if len(flat) > SNIPPET_CHARS else "")


def _result(r: Ranked, chunk: ChunkRow, snippet: str | None) -> SearchResult:
    row = r.memory
    return SearchResult(
        id=row.id,
        path=row.path,
        rel_path=row.rel_path,
        start_line=chunk.start_line,
        end_line=chunk.end_line,
        title=row.title,
        heading=chunk.heading,
        anchor=chunk.anchor,
        tier=row.tier,
        spec_folder=row.spec_folder,
        context_type=row.context_type,
        tags=row.tags,
        score=figures(r.score),
        parts=r.parts,
        snippet=snippet or _excerpt(chunk.text),
        always_surfaced=r.surfaced,
    )
