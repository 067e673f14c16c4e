"""Search the index: keyword (FTS5 BM25), semantic (sqlite-vec), hybrid fusion at memory level with tier weights.

Reads only: nothing on the search path writes to the database.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import TYPE_CHECKING, Any, Literal, cast

import apsw

from specmem.indexer import db, tiers
from specmem.indexer.errors import ModelUnavailable, SearchError
from specmem.indexer.parse import normalise
from specmem.indexer.tiers import TIERS
from specmem.server import fusion

if TYPE_CHECKING:
    from specmem.indexer.embed import Embedder  # numpy: not for a keyword search
    from specmem.server.vectors import VectorIndex  # numpy: a server's, made by its ReadState

Mode = Literal["keyword", "semantic", "hybrid"]

# bm25 column weights: text, title/heading path, trigger phrases, tags, path.
BM25_WEIGHTS = (1.0, 2.0, 3.0, 2.0, 0.5)
CANDIDATES = 100  # memories taken from each retriever before fusion
KEYWORD_CUT = 1000  # best chunks taken from FTS5 before they are joined and grouped by memory
PRUNE_SHARE = 0.6  # see _pruning
MAX_QUERY_TOKENS = 64
# Rules leading one result: 3,000 rules all on top made a session's first search 1.76 MB and memory_context 70 s.
MAX_RULES = 100
STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from has have how i if in into is it its me my of on "
    "or our should so such than that the their them then there these they this to was we were what when where "
    "which while who why will with would you your".split()
)
WORD_RE = re.compile(r"\w+", re.UNICODE)


# Plain dataclasses, not pydantic models: a CLI search must not pay pydantic's import (specs/003-cli/memory/
# lazy-imports.md). The MCP tools still validate and describe them: pydantic reads stdlib dataclasses and their
# `__pydantic_config__`, whose hook puts each field's metadata description into the published JSON schema.


def _describe(schema: dict[str, Any], cls: type) -> None:
    for f in fields(cls):
        if "description" in f.metadata:
            schema["properties"][f.name]["description"] = f.metadata["description"]


DESCRIBED = {"json_schema_extra": _describe}  # a pydantic ConfigDict; only the MCP layer reads it


def described(text: str, default: Any = None) -> Any:
    """A dataclass field with a description for the MCP tools' JSON schemas."""
    return field(default=default, metadata={"description": text})


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
class ScoreParts:
    __pydantic_config__ = DESCRIBED

    keyword: float | None = described("BM25 of the best chunk (higher is better)")
    keyword_second: float | None = described(
        "Hybrid: BM25 of the second best chunk; a share of it is added to the keyword score"
    )
    semantic: float | None = described("Cosine similarity of the best chunk")
    keyword_norm: float | None = described("Hybrid: keyword score normalised over the candidates")
    semantic_norm: float | None = described("Hybrid: semantic score normalised over the candidates")
    keyword_weight: float | None = described("Hybrid: weight of the keyword side for this query")
    semantic_weight: float | None = described("Hybrid: weight of the semantic side for this query")
    fusion: str | None = described("Hybrid: the normalisation and the weighting rule applied")
    fused: float = 0.0
    tier_weight: float = 1.0
    recency: float = 1.0
    confidence: float = 1.0


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
    always_surfaced: bool = described("Constitutional memory shown whatever the query", False)

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


def fts_query(text: str) -> str | None:
    """User text as a safe FTS5 query: words only, each quoted, OR-ed. No input can raise a syntax error."""
    words = list(dict.fromkeys(WORD_RE.findall(normalise(text))))
    content = [w for w in words if w not in STOPWORDS]
    words = (content or words)[:MAX_QUERY_TOKENS]
    return " OR ".join(f'"{w}"' for w in words) if words else None


def _where(filters: Filters, include_deprecated: bool, today: str) -> tuple[str, list[object]]:
    clauses = ["(m.expires IS NULL OR m.expires >= ?)"]
    args: list[object] = [today]
    if not include_deprecated and not (filters.tiers and "deprecated" in filters.tiers):
        clauses.append("m.importance_tier != 'deprecated'")
    if filters.spec_folder:
        folder = filters.spec_folder.strip("/")
        clauses.append("(m.spec_folder = ? OR m.spec_folder LIKE ? ESCAPE '\\')")
        args += [folder, folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"]
    if filters.tiers:
        unknown = [t for t in filters.tiers if t not in TIERS]
        if unknown:
            raise SearchError(f"unknown tier(s) {', '.join(unknown)}; use: {', '.join(TIERS)}")
        clauses.append(f"m.importance_tier IN ({','.join('?' * len(filters.tiers))})")
        args += list(filters.tiers)
    if filters.context_type:
        clauses.append("m.context_type = ?")
        args.append(filters.context_type)
    for tag in filters.tags or []:
        clauses.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)")
        args.append(tag)
    if filters.path_glob:
        clauses.append("(m.rel_path GLOB ? OR m.path GLOB ?)")
        args += [filters.path_glob, filters.path_glob]
    if filters.since:
        since = filters.since if filters.since.tzinfo else filters.since.astimezone()
        clauses.append("m.updated_at >= ?")
        args.append(int(since.timestamp() * 1000))
    return " AND ".join(clauses), args


def _pruning(conn: apsw.Connection, query: str) -> list[tuple[str | None, float]]:
    """Ways to rank fewer chunks than the query matches, each as (the query's essential words, an upper bound of
    the BM25 of a chunk with none of them), ending with (None, 0): every match.

    FTS5's bm25 adds, for each query word, idf × f × (k1 + 1) / (f + k1 × (1 − b + b × length / average)), which
    stays below idf × (k1 + 1) whatever the word's frequency f in the chunk (k1 = 1.2, b = 0.75, fixed in FTS5);
    a word in most chunks has a tiny idf. Ranking only the chunks with one of the rarer words is then exact as
    soon as the k-th memory found scores above what the common words alone can add up to."""
    words = query.split(" OR ")
    everything: list[tuple[str | None, float]] = [(None, 0.0)]
    if len(words) < 2:
        return everything
    rows = _fts_rows(conn)
    df = {
        w: int(db.scalar(conn, "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?", (w,)))
        for w in words
    }
    if rows is None or sum(df.values()) < 2 * KEYWORD_CUT:
        return everything  # few matches: ranking them all is as quick
    words.sort(key=lambda w: df[w])
    # 1.01: room for rounding; the bound only decides whether a cheaper way is exact, never a score.
    bound = {w: 1.01 * 2.2 * max(math.log((rows - df[w] + 0.5) / (df[w] + 0.5)), 1e-6) for w in words}
    # One try: leave out the commonest words while all they can add stays under PRUNE_SHARE of what the rarest
    # word alone can score; a miss costs a second pass, so the words left out must be clearly weaker.
    essential, left_out = list(words), 0.0
    while len(essential) > 1 and left_out + bound[essential[-1]] <= PRUNE_SHARE * bound[words[0]]:
        left_out += bound[essential.pop()]
    ways = [(" OR ".join(essential), left_out)] if len(essential) < len(words) else []
    return ways + everything


def _fts_rows(conn: apsw.Connection) -> int | None:
    """The row count FTS5's bm25 uses (the first varint of its averages record, id 1), or None."""
    found = cast(
        list[tuple[bytes | None]], conn.execute("SELECT block FROM memory_fts_data WHERE id = 1").fetchall()
    )
    if not found or not found[0][0]:
        return None
    value = 0
    for i, byte in enumerate(found[0][0][:9]):  # SQLite's varint: 7 bits a byte, big-endian; a 9th byte has 8
        if i == 8:
            return (value << 8) | byte
        value = (value << 7) | (byte & 0x7F)
        if byte < 0x80:
            return value
    return None


def _keyword(
    conn: apsw.Connection,
    query: str,
    where: str,
    args: list[object],
    k: int,
    *,
    filtered: bool,
    seconds: bool,
) -> dict[int, tuple[int, float, float | None]]:
    """memory id → (best chunk id, its bm25, the second best chunk's bm25 or None), higher is better.

    FTS5's best chunks are taken first (a cut of KEYWORD_CUT, widened until `k` memories survive the filters or
    every match is in), so a query matching most of the index joins a thousand chunks, not all of them. With
    filters the cut is taken inside them, so it cannot drop the memories in scope. The result is the same as
    grouping every matching chunk: the best `k` memories by their best chunk, each with its exact second best
    (with `seconds`; otherwise the second best is given when the cut holds it, as only hybrid fusion uses it)."""
    bm25 = f"bm25(memory_fts, {', '.join(str(w) for w in BM25_WEIGHTS)})"
    pruned = False
    for essential, bound in [(None, 0.0)] if filtered else _pruning(conn, query):
        n = max(KEYWORD_CUT, k)
        while True:
            if filtered:
                rows = cast(
                    list[tuple[int, int, float]],  # (memory id, chunk id, bm25)
                    conn.execute(
                        f"SELECT c.memory_id, c.id, {bm25} AS s FROM memory_fts "
                        "JOIN memory_chunks c ON c.id = memory_fts.rowid JOIN memory_index m ON m.id = c.memory_id "
                        f"WHERE memory_fts MATCH ? AND {where} ORDER BY s, c.id LIMIT ?",
                        [query, *args, n],
                    ).fetchall(),
                )
                taken = len(rows)
            else:
                # Scored by the whole query, but only chunks with one of the essential words are ranked.
                among = (
                    ""
                    if essential is None
                    else "AND +rowid IN (SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?) "
                )
                cut = cast(
                    list[tuple[int, float]],  # (chunk id, bm25)
                    conn.execute(
                        f"SELECT rowid, {bm25} AS s FROM memory_fts WHERE memory_fts MATCH ? {among}"
                        "ORDER BY s, rowid LIMIT ?",
                        (query, n) if essential is None else (query, essential, n),
                    ).fetchall(),
                )
                taken = len(cut)
                owner: dict[int, int] = dict(
                    conn.execute(  # type: ignore[arg-type]  # (chunk id, memory id)
                        "SELECT c.id, c.memory_id FROM memory_chunks c JOIN memory_index m ON m.id = c.memory_id "
                        f"WHERE c.id IN (SELECT value FROM json_each(?)) AND {where}",
                        [json.dumps([cid for cid, _ in cut]), *args],
                    ).fetchall()
                )
                rows = [(owner[cid], cid, s) for cid, s in cut if cid in owner]
            best: dict[int, tuple[int, float]] = {}
            second: dict[int, float] = {}
            for mid, cid, s in rows:
                if mid not in best:
                    best[mid] = (cid, s)
                elif mid not in second:
                    second[mid] = s
            complete = taken < n
            if complete or len(best) >= k:
                break
            n *= 8
        if essential is None:
            break
        # Exact when the k-th memory scores more than any chunk without an essential word can: such chunks can
        # then be no top memory's best (they can be its second best: those are all looked up again below).
        if len(best) >= k and -sorted(s for _, s in best.values())[k - 1] > bound:
            pruned = True
            break
    top = sorted(best.items(), key=lambda kv: (kv[1][1], kv[1][0]))[:k]
    if seconds and (pruned or not complete):
        # A second best chunk may lie outside the cut: look it up for the memories whose second is not in it.
        missing = [mid for mid, _ in top if pruned or mid not in second]
        if missing:
            others: dict[int, int] = dict(
                conn.execute(  # type: ignore[arg-type]  # (chunk id, memory id)
                    "SELECT id, memory_id FROM memory_chunks WHERE memory_id IN (SELECT value FROM json_each(?))",
                    (json.dumps(missing),),
                ).fetchall()
            )
            for m in missing:
                others.pop(best[m][0], None)
            for cid, s in conn.execute(
                # `+rowid`: a filter on FTS5's scan, not one FTS5 lookup per chunk (each re-reads the doclists).
                f"SELECT rowid, {bm25} FROM memory_fts WHERE memory_fts MATCH ? "
                "AND +rowid IN (SELECT value FROM json_each(?))",
                (query, json.dumps(list(others))),
            ):
                mid = others[cid]
                second[mid] = min(s, second.get(mid, s))
    return {mid: (cid, -s, None if mid not in second else -second[mid]) for mid, (cid, s) in top}


def _semantic(
    conn: apsw.Connection,
    vector: bytes,
    model: str,
    where: str,
    args: list[object],
    k: int,
    filtered: bool,
    vectors: VectorIndex | None = None,
) -> dict[int, tuple[int, float]]:
    """memory id → (best chunk id, cosine similarity). With `vectors` (a server's in-memory matrix) the same
    result without a scan of the table."""
    if vectors is not None:
        if filtered:
            scope = {r[0] for r in conn.execute(f"SELECT m.id FROM memory_index m WHERE {where}", args)}
            found = vectors.nearest(conn, vector, k, visible=scope)
            return {mid: (h.chunk_id, 1.0 - h.distance) for mid, h in found.items()}
        # Memories hidden by the conditions every search has (deprecated, expired, outside the roots) are few:
        # ask for more until k remain.
        want = k
        while True:
            found = vectors.nearest(conn, vector, want)
            ids = list(found)
            visible = {
                r[0]
                for r in conn.execute(
                    f"SELECT m.id FROM memory_index m WHERE m.id IN (SELECT value FROM json_each(?)) AND {where}",
                    [json.dumps(ids), *args],
                )
            }
            shown = {mid: (h.chunk_id, 1.0 - h.distance) for mid, h in found.items() if mid in visible}
            if len(shown) >= k or len(found) < want:
                return dict(list(shown.items())[:k])
            want *= 4
    if filtered:
        # Exact: distances over the filtered memories only, so filters apply before the limit.
        sql = (
            "SELECT c.memory_id, c.id, min(vec_distance_cosine(e.vector, ?)) AS d FROM memory_chunks c "
            "JOIN memory_index m ON m.id = c.memory_id "
            "JOIN embedding_cache e ON e.model = ? AND e.text_hash = c.text_hash "
            f"WHERE c.embedded = 1 AND {where} GROUP BY c.memory_id ORDER BY d, c.id LIMIT ?"
        )
        rows = cast(
            list[tuple[int, int, float | None]], conn.execute(sql, [vector, model, *args, k]).fetchall()
        )
        # A NULL distance means a zero query vector (a query with no words): nothing to match by meaning.
        return {mid: (cid, 1.0 - d) for mid, cid, d in rows if d is not None}
    total = int(db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE embedded = 1"))
    chunk_k = min(max(k * 4, 50), 4096)
    while True:
        hits = cast(
            list[tuple[int, float | None, int]],
            conn.execute(
                "SELECT v.chunk_id, v.distance, c.memory_id FROM vec_memories v "
                "JOIN memory_chunks c ON c.id = v.chunk_id WHERE v.embedding MATCH ? AND k = ?",
                (vector, chunk_k),
            ).fetchall(),
        )
        best: dict[int, tuple[int, float]] = {}
        # Equal distances (chunks of the same text) go to the lower chunk id, as everywhere in search.
        for distance, cid, mid in sorted((d, cid, mid) for cid, d, mid in hits if d is not None):
            if mid not in best:
                best[mid] = (cid, 1.0 - distance)
        if best:
            ids = list(best)
            visible = {
                r[0]
                for r in conn.execute(
                    f"SELECT m.id FROM memory_index m WHERE m.id IN ({','.join('?' * len(ids))}) AND {where}",
                    [*ids, *args],
                )
            }
            best = {mid: v for mid, v in best.items() if mid in visible}
        if len(best) >= k or chunk_k >= min(total, 4096):
            break
        chunk_k = min(chunk_k * 4, 4096)
    return dict(sorted(best.items(), key=lambda kv: (-kv[1][1], kv[1][0]))[:k])


def _recency(updated_ms: int, now: dt.datetime, tier: str) -> float:
    # Whole days, by the calendar: memories changed on the same day weigh the same, so their order is the fusion's.
    changed = dt.datetime.fromtimestamp(updated_ms / 1000, tz=now.tzinfo).date()
    age_days = max(0, (now.date() - changed).days)
    if tier == "temporary":
        return 0.5 ** (age_days / 30)  # temporary memories decay
    return 1.0 + 0.1 * 0.5 ** (age_days / 90)


def _snippets(conn: apsw.Connection, query: str | None, chunk_ids: list[int | None]) -> dict[int, str]:
    """Short excerpts of these chunks with the matches between `**`, by chunk id (chunks without a match are left
    out); the text's own markdown bold is dropped, so a bold word that matches reads `**word**`, not `****word****`."""
    ids = [c for c in chunk_ids if c is not None]
    if not query or not ids:
        return {}
    out = {}
    # `+rowid`: one pass over the matches with a filter, not one FTS5 lookup per chunk (each re-reads the doclists).
    for cid, text in conn.execute(
        "SELECT rowid, snippet(memory_fts, 0, '\x02', '\x03', '…', 24) FROM memory_fts "
        "WHERE memory_fts MATCH ? AND +rowid IN (SELECT value FROM json_each(?))",
        (query, json.dumps(ids)),
    ):
        if "\x02" in text:
            marked = " ".join(text.replace("**", "").split())
            out[cid] = marked.replace("\x02", "**").replace("\x03", "**")
    return out


def _excerpt(text: str) -> str:
    flat = " ".join(text.replace("**", "").split())
    return flat[:240] + ("…" if len(flat) > 240 else "")


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
    """Ranked memories for `query`. Falls back to keyword mode (and says so) when no model can embed the query.

    With `include_constitutional`, constitutional memories are put on top, outside `limit`: all of them when
    `surface` is None, else the `surface` most relevant of those the query matched; the others are ranked with
    everything else (tier weight 1.5). `vectors`, a long-running server's in-memory copy of the vectors (kept up
    to date by the caller), answers the semantic side with the same results as sqlite-vec, faster."""
    if mode not in ("keyword", "semantic", "hybrid"):
        raise SearchError(f"unknown mode {mode!r}; use keyword, semantic or hybrid")
    if not 1 <= limit <= 1000:
        raise SearchError(f"limit must be between 1 and 1000, not {limit}")
    filters = filters or Filters()
    now = now or dt.datetime.now().astimezone()
    notes: list[str] = []
    where, args = _where(filters, include_deprecated, now.date().isoformat())
    fts = fts_query(query)
    k = max(CANDIDATES, limit * 3)

    vector: bytes | None = None
    used: Mode = mode
    if mode != "keyword":
        index_model = db.get_config(conn, "model")
        if embedder is None:
            notes.append("embedding model not loaded yet: answered in keyword mode")
        elif index_model is None or not db.has_table(conn, "vec_memories"):
            notes.append("no embeddings in the index yet (run `specmem scan`): answered in keyword mode")
        elif index_model != embedder.model_id:
            notes.append(
                f"the index was embedded with {index_model}, not {embedder.model_id}: answered in keyword mode; "
                "run `specmem scan` to re-embed"
            )
        else:
            try:
                vector = embedder.encode([query])[0].astype("float32").tobytes()
            except ModelUnavailable as exc:
                notes.append(f"{exc}: answered in keyword mode")
        if vector is None:
            used = "keyword"

    kw = (
        _keyword(conn, fts, where, args, k, filtered=not filters.is_empty(), seconds=used == "hybrid")
        if fts and used != "semantic"
        else {}
    )
    sem = (
        _semantic(conn, vector, embedder.model_id, where, args, k, not filters.is_empty(), vectors)  # type: ignore[union-attr]
        if vector is not None
        else {}
    )
    hybrid: dict[int, fusion.Fused] = {}
    if used == "hybrid":
        # Scoped: the filtered semantic side ranked every memory in scope, not a top-k cut of the index.
        scoped = not filters.is_empty() and len(sem) < k
        hybrid = fusion.fuse(
            {mid: s for mid, (_, s, _) in kw.items()},
            {mid: s for mid, (_, s) in sem.items()},
            scoped=scoped,
            keyword_second={mid: s2 for mid, (_, _, s2) in kw.items() if s2 is not None},
        )
        fused = {mid: f.score for mid, f in hybrid.items()}
    elif used == "semantic":
        fused = {mid: s for mid, (_, s) in sem.items()}
    else:
        fused = {mid: s for mid, (_, s, _) in kw.items()}

    candidate_ids = set(fused)
    if include_constitutional and surface is None:
        candidate_ids |= {
            r[0]
            for r in conn.execute(
                f"SELECT m.id FROM memory_index m WHERE m.importance_tier = 'constitutional' AND {where}",
                args,
            )
        }
    rows = _memory_rows(conn, candidate_ids)
    # Rank on memory rows alone; chunks are looked up only for the memories that are returned.
    ranked: list[tuple[bool, float, int, ScoreParts]] = []
    for mid, row in rows.items():
        rule = include_constitutional and row["importance_tier"] == "constitutional"
        if not (rule and surface is None) and mid not in kw and mid not in sem:
            continue
        f = hybrid.get(mid)
        parts = ScoreParts(
            keyword=round(kw[mid][1], 6) if mid in kw else None,
            keyword_second=round(f.keyword_second, 6) if f and f.keyword_second is not None else None,
            semantic=round(sem[mid][1], 6) if mid in sem else None,
            keyword_norm=round(f.keyword_norm, 6) if f else None,
            semantic_norm=round(f.semantic_norm, 6) if f else None,
            keyword_weight=f.keyword_weight if f else None,
            semantic_weight=f.semantic_weight if f else None,
            fusion=f.rule if f else None,
            fused=fused.get(mid, 0.0),
            tier_weight=tiers.WEIGHTS[row["importance_tier"]],
            recency=_recency(row["updated_at"], now, row["importance_tier"]),
            confidence=0.8 + 0.4 * row["confidence"],
        )
        score = parts.fused * parts.tier_weight * parts.recency * parts.confidence
        ranked.append((rule, score, mid, parts))

    def order(x: tuple[bool, float, int, ScoreParts]) -> tuple[float, ...]:
        # Ties (to fusion.TIE_DIGITS significant digits) go to the higher sum of normalised scores, then the id.
        return fusion.order_key(x[1], hybrid[x[2]].norm_sum if x[2] in hybrid else x[3].fused, x[2])

    rules = [r for r in ranked if r[0]]
    top = MAX_RULES if surface is None else min(surface, MAX_RULES)
    if surface is not None or len(rules) > top:
        # The `top` most relevant rules stay on top; the others compete like any memory (those the query did not
        # match, taken only to show every rule, are left out).
        on_top = {mid for _, _, mid, _ in sorted(rules, key=order)[:top]}
        ranked = [
            (mid in on_top, score, mid, parts)
            for _, score, mid, parts in ranked
            if mid in on_top or mid in kw or mid in sem
        ]
        if surface is None:
            notes.append(
                f"{len(rules) - top} more constitutional rules are not shown (at most {MAX_RULES} lead a result); "
                "memory_list with tier constitutional lists them all"
            )
    ranked.sort(key=lambda x: (not x[0], *order(x)))
    surfaced_count = sum(1 for r in ranked if r[0])

    # Chunks and snippets are read for the memories shown only, each kind in one query, however many rules lead.
    picked: list[tuple[bool, float, int, ScoreParts, dict[str, Any]]] = []
    chunks = _chunks(
        conn, {mid: _best_chunk(kw, sem, mid) for _, _, mid, _ in ranked[: surfaced_count + limit]}
    )
    for surfaced, score, mid, parts in ranked:
        if not surfaced and len(picked) >= surfaced_count + limit:
            break
        chunk = chunks[mid] if mid in chunks else _chunk(conn, _best_chunk(kw, sem, mid), mid)
        if chunk is None:  # replaced by a writer since the candidate query
            continue
        picked.append((surfaced, score, mid, parts, chunk))
    # No chunk of a memory outside the keyword hits can match the FTS query: those need no snippet lookup.
    marked = _snippets(conn, fts, [chunk["id"] for _, _, mid, _, chunk in picked if mid in kw])
    results: list[SearchResult] = []
    for surfaced, score, mid, parts, chunk in picked:
        row = rows[mid]
        results.append(
            SearchResult(
                id=mid,
                path=row["path"],
                rel_path=row["rel_path"],
                start_line=chunk["start_line"],
                end_line=chunk["end_line"],
                title=row["title"],
                heading=chunk["heading"],
                anchor=chunk["anchor"],
                tier=row["importance_tier"],
                spec_folder=row["spec_folder"],
                context_type=row["context_type"],
                tags=json.loads(row["tags"]),
                score=round(score, 6),
                parts=parts,
                snippet=marked.get(chunk["id"]) or _excerpt(chunk["text"]),
                always_surfaced=surfaced,
            )
        )

    pending = int(db.scalar(conn, "SELECT count(*) FROM memory_index WHERE embedding_status = 'pending'"))
    if pending and used != "keyword":
        notes.append(f"{pending} memories are still waiting for embeddings: they are found by keyword only")
    total = int(db.scalar(conn, "SELECT count(*) FROM memory_index"))
    return SearchResponse(
        query=query,
        mode_requested=mode,
        mode_used=used,
        keyword_only=used == "keyword",
        results=results,
        pending_embeddings=pending,
        total_memories=total,
        notes=notes,
    )


def _memory_rows(conn: apsw.Connection, ids: Sequence[int] | set[int]) -> dict[int, dict[str, Any]]:
    ids = list(ids)
    out: dict[int, dict[str, Any]] = {}
    cols = (
        "id",
        "path",
        "rel_path",
        "title",
        "importance_tier",
        "spec_folder",
        "context_type",
        "tags",
        "updated_at",
        "confidence",
    )
    for start in range(0, len(ids), 500):
        part = ids[start : start + 500]
        for row in conn.execute(
            f"SELECT {', '.join(cols)} FROM memory_index WHERE id IN ({','.join('?' * len(part))})", part
        ):
            out[row[0]] = dict(zip(cols, row, strict=True))
    return out


def _best_chunk(
    kw: dict[int, tuple[int, float, float | None]], sem: dict[int, tuple[int, float]], mid: int
) -> int | None:
    best = kw.get(mid) or sem.get(mid)
    return best[0] if best else None


CHUNK_COLS = ("id", "heading", "anchor", "start_line", "end_line", "text")


def _chunks(conn: apsw.Connection, wanted: dict[int, int | None]) -> dict[int, dict[str, Any] | None]:
    """memory id → its chunk: the given one, or its first when None (see `_chunk`), in two queries at most."""
    out: dict[int, dict[str, Any] | None] = {}
    by_id = {cid: mid for mid, cid in wanted.items() if cid is not None}
    if by_id:
        for row in conn.execute(
            f"SELECT {', '.join(CHUNK_COLS)} FROM memory_chunks WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(by_id)),),
        ):
            out[by_id[row[0]]] = dict(zip(CHUNK_COLS, row, strict=True))
        out.update({mid: None for mid in by_id.values() if mid not in out})
    first = [mid for mid, cid in wanted.items() if cid is None]
    if first:
        # The bare columns come from the row holding min(seq): each memory's first chunk.
        for row in conn.execute(
            f"SELECT memory_id, {', '.join(CHUNK_COLS)}, min(seq) FROM memory_chunks "
            "WHERE memory_id IN (SELECT value FROM json_each(?)) GROUP BY memory_id",
            (json.dumps(first),),
        ):
            out[row[0]] = dict(zip(CHUNK_COLS, row[1:-1], strict=True))
        for mid in first:
            if mid not in out:  # no chunks at all (an empty or binary file)
                out[mid] = _chunk(conn, None, mid)
    return out


def _chunk(conn: apsw.Connection, chunk_id: int | None, memory_id: int) -> dict[str, Any] | None:
    cols = CHUNK_COLS
    if chunk_id is not None:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM memory_chunks WHERE id = ?", (chunk_id,)
        ).fetchall()
    else:
        rows = conn.execute(
            f"SELECT {', '.join(cols)} FROM memory_chunks WHERE memory_id = ? ORDER BY seq LIMIT 1",
            (memory_id,),
        ).fetchall()
    if rows:
        return dict(zip(cols, rows[0], strict=True))
    if chunk_id is None:
        # A memory without chunks (empty or binary file) still cites its first line.
        return {"id": None, "heading": "", "anchor": None, "start_line": 1, "end_line": 1, "text": ""}
    return None
