"""The read SQL: every query the read side runs, with its typed rows. The write SQL lives in indexer/store.py.

This module and indexer/store.py are where a storage engine plugs in (specs/001-indexer/memory/storage-seam.md):
what is engine-specific here (FTS5's MATCH, bm25() and snippet(), sqlite-vec's cosine and k-NN, `?` placeholders,
JSON1) stays behind these functions. Callers pass values (a `Scope`, a list of query words, a vector's bytes) and
get named rows or plain mappings back; no SQL leaves this module. Scores come back higher-is-better on both sides.
"""

# No `from __future__ import annotations` here: typing.NamedTuple compiles every string annotation of its fields
# (about 50 rows' worth, most of this module's import time); evaluated at once they cost nothing.
import dataclasses
import functools
import json
import weakref
from collections.abc import Iterable, Sequence
from typing import Any, NamedTuple, cast

import apsw

from specmem.indexer import db
from specmem.indexer.db import pending_count as pending_count  # one count, the writer's too
from specmem.indexer.tiers import TIERS

# bm25 column weights: text, title/heading path, trigger phrases, tags, path.
BM25_WEIGHTS = (1.0, 2.0, 3.0, 2.0, 0.5)
_BM25 = f"bm25(memory_fts, {', '.join(str(w) for w in BM25_WEIGHTS)})"
_IDS = "(SELECT value FROM json_each(?))"  # a list of ids passed as one JSON argument


# -- which memories a read may return ----------------------------------------------------------------------------


class Scope(NamedTuple):
    """The memories a read may return: the conditions every search has and the user's filters. Each engine turns
    it into its own condition (here `_where`)."""

    spec_folder: str | None = None  # this spec folder and the folders below it; "/" at either end is ignored
    below: bool = True  # False: this spec folder only, not the folders below it
    tiers: tuple[str, ...] = ()
    context_type: str | None = None
    tags: tuple[str, ...] = ()  # every one of them
    path_glob: str | None = None  # on the path relative to its root, or the absolute path
    since_ms: int | None = None  # updated at or after
    hide_deprecated: bool = True
    today: str | None = None  # ISO date: memories whose `expires` is before it are hidden; None: none are

    @property
    def filtered(self) -> bool:
        """Whether the user narrowed the scope (beyond what every search hides)."""
        return bool(
            self.spec_folder
            or self.tiers
            or self.context_type
            or self.tags
            or self.path_glob
            or self.since_ms
        )


def _like_prefix(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "/%"


def _where(scope: Scope) -> tuple[str, list[object]]:
    """The scope as an SQL condition on `memory_index m`, with its arguments."""
    clauses: list[str] = []
    args: list[object] = []
    if scope.today is not None:
        clauses.append("(m.expires IS NULL OR m.expires >= ?)")
        args.append(scope.today)
    if scope.hide_deprecated:
        clauses.append("m.importance_tier != 'deprecated'")
    if scope.spec_folder is not None and not scope.below:
        clauses.append("m.spec_folder = ?")
        args.append(scope.spec_folder.strip("/"))
    elif scope.spec_folder:
        folder = scope.spec_folder.strip("/")
        clauses.append("(m.spec_folder = ? OR m.spec_folder LIKE ? ESCAPE '\\')")
        args += [folder, _like_prefix(folder)]
    if scope.tiers:
        clauses.append(f"m.importance_tier IN ({','.join('?' * len(scope.tiers))})")
        args += list(scope.tiers)
    if scope.context_type:
        clauses.append("m.context_type = ?")
        args.append(scope.context_type)
    for tag in scope.tags:
        clauses.append("EXISTS (SELECT 1 FROM json_each(m.tags) WHERE json_each.value = ?)")
        args.append(tag)
    if scope.path_glob:
        clauses.append("(m.rel_path GLOB ? OR m.path GLOB ?)")
        args += [scope.path_glob, scope.path_glob]
    if scope.since_ms is not None:
        clauses.append("m.updated_at >= ?")
        args.append(scope.since_ms)
    return " AND ".join(clauses) or "1", args


@db.engine_specific
def in_scope(conn: apsw.Connection, scope: Scope) -> set[int]:
    """The ids of every memory in scope."""
    where, args = _where(scope)
    return {r[0] for r in conn.execute(f"SELECT m.id FROM memory_index m WHERE {where}", args)}


@db.engine_specific
def visible(conn: apsw.Connection, ids: Iterable[int], scope: Scope) -> set[int]:
    """Those of `ids` that are in scope."""
    where, args = _where(scope)
    sql = f"SELECT m.id FROM memory_index m WHERE m.id IN {_IDS} AND {where}"
    return {r[0] for r in conn.execute(sql, [json.dumps(list(ids)), *args])}


@db.engine_specific
def constitutional(conn: apsw.Connection, scope: Scope) -> set[int]:
    """The ids of the constitutional memories in scope."""
    where, args = _where(scope)
    sql = f"SELECT m.id FROM memory_index m WHERE m.importance_tier = 'constitutional' AND {where}"
    return {r[0] for r in conn.execute(sql, args)}


# -- memory rows -------------------------------------------------------------------------------------------------


# A memory's columns are its rows' fields, in their order: each named as in memory_index (`m.`) but these.
_COLUMN_OF = {"tier": "m.importance_tier", "written": "r.written"}


def _columns(row_type: type) -> str:
    """The SELECT list that fills `row_type` (a dataclass of this module), field by field."""
    return ", ".join(_COLUMN_OF.get(f.name, f"m.{f.name}") for f in dataclasses.fields(row_type))


@dataclasses.dataclass(slots=True)
class MemoryRef:
    """What names a memory wherever it is listed (`row.tier`, never `row[4]`)."""

    id: int
    path: str
    rel_path: str
    title: str
    tier: str
    spec_folder: str


@dataclasses.dataclass(slots=True)
class MemoryRow(MemoryRef):
    """A memory's index row as search, lists and resources name it."""

    context_type: str | None
    tags: list[str]
    updated_at: int
    confidence: float
    embedding_status: str
    content_hash: str


MEMORY_COLUMNS = _columns(MemoryRow)
_TAGS = [f.name for f in dataclasses.fields(MemoryRow)].index("tags")


def _memory(values: Sequence[object]) -> MemoryRow:
    row = list(values)
    row[_TAGS] = _json_list(cast(str, row[_TAGS]))
    return MemoryRow(*cast(list[Any], row))


@functools.lru_cache(maxsize=4096)
def _decoded(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text))


def _json_list(text: str) -> list[str]:
    """A JSON list column as a list of its own (a search decodes the same few tag lists for every candidate)."""
    return list(_decoded(text))


@dataclasses.dataclass(slots=True)
class MemoryDetail(MemoryRow):
    """Everything the index knows of one memory (what `get` shows beside the file's content)."""

    trigger_phrases: list[str]
    expires: str | None
    anchors: list[str]
    warnings: list[str]
    line_count: int


DETAIL_COLUMNS = _columns(MemoryDetail)
_JSON_LISTS = ("tags", "trigger_phrases", "anchors", "warnings")


def _detail(values: Sequence[object]) -> MemoryDetail:
    row = MemoryDetail(*cast(Sequence[Any], values))
    for name in _JSON_LISTS:
        setattr(row, name, json.loads(getattr(row, name)))
    return row


def named(row: MemoryRef, of: type[MemoryRef] | None = None) -> dict[str, Any]:
    """A row's fields by name (shallow; only those of the row type `of` when given), to build an answer from it:
    `Memory(**named(row), content=...)`."""
    return {f.name: getattr(row, f.name) for f in dataclasses.fields(of or row)}


@db.engine_specific
def memory_rows(conn: apsw.Connection, ids: Iterable[int]) -> dict[int, MemoryRow]:
    """The rows of these memories by id (ids no longer in the index are left out)."""
    sql = f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE m.id IN {_IDS}"
    return {row.id: row for row in map(_memory, conn.execute(sql, (json.dumps(list(ids)),)))}


@db.engine_specific
def memories_in(conn: apsw.Connection, scope: Scope) -> list[MemoryRow]:
    """Every memory in scope, by id."""
    where, args = _where(scope)
    sql = f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {where} ORDER BY m.id"
    return [_memory(r) for r in conn.execute(sql, args)]


@db.engine_specific
def memory_by_id(conn: apsw.Connection, memory_id: int) -> MemoryDetail | None:
    rows = conn.execute(
        f"SELECT {DETAIL_COLUMNS} FROM memory_index m WHERE m.id = ?", (memory_id,)
    ).fetchall()
    return _detail(rows[0]) if rows else None


@db.engine_specific
def memory_by_path(conn: apsw.Connection, path: str) -> MemoryDetail | None:
    """The memory indexed at this absolute path."""
    rows = conn.execute(f"SELECT {DETAIL_COLUMNS} FROM memory_index m WHERE m.path = ?", (path,)).fetchall()
    return _detail(rows[0]) if rows else None


@db.engine_specific
def memories_by_rel_path(conn: apsw.Connection, rel_path: str) -> list[MemoryDetail]:
    """The memories at this path relative to their root (one per root that has it)."""
    sql = f"SELECT {DETAIL_COLUMNS} FROM memory_index m WHERE m.rel_path = ?"
    return [_detail(r) for r in conn.execute(sql, (rel_path,))]


def _tier_rank(column: str) -> str:
    """An expression ordering `column` by tier, as tiers.rank does."""
    whens = " ".join(f"WHEN '{t}' THEN {i}" for i, t in enumerate(TIERS))
    return f"CASE {column} {whens} ELSE {len(TIERS)} END"


SORTS = {
    "updated": "m.updated_at DESC, m.id",
    "title": "m.title COLLATE NOCASE, m.id",
    "path": "m.rel_path, m.id",
    "tier": f"{_tier_rank('m.importance_tier')}, m.updated_at DESC, m.id",
}


@db.engine_specific
def page(
    conn: apsw.Connection, scope: Scope, sort: str, offset: int, limit: int
) -> tuple[int, list[MemoryRow]]:
    """How many memories are in scope, and `limit` of them from `offset` in the order `sort` (a key of SORTS)."""
    where, args = _where(scope)
    total = int(db.scalar(conn, f"SELECT count(*) FROM memory_index m WHERE {where}", args))
    sql = f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {where} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?"
    return total, [_memory(r) for r in conn.execute(sql, [*args, limit, offset])]


@db.engine_specific
def served(conn: apsw.Connection) -> list[MemoryRow]:
    """Every memory but deprecated ones, most important first, then by path (what MCP resources list)."""
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE m.importance_tier != 'deprecated' "
        f"ORDER BY {_tier_rank('m.importance_tier')}, m.rel_path"
    )
    return [_memory(r) for r in conn.execute(sql)]


@db.engine_specific
def triggered(conn: apsw.Connection) -> list[tuple[MemoryRow, list[str]]]:
    """Every memory that has trigger phrases (deprecated ones aside), with its phrases."""
    sql = (
        f"SELECT {MEMORY_COLUMNS}, m.trigger_phrases FROM memory_index m "
        "WHERE m.trigger_phrases != '[]' AND m.importance_tier != 'deprecated'"
    )
    return [(_memory(r[:-1]), json.loads(r[-1])) for r in conn.execute(sql)]


COUNTED = ("importance_tier", "spec_folder", "context_type", "embedding_status")


@db.engine_specific
def counts(conn: apsw.Connection, column: str) -> dict[str, int]:
    """Memories by the value of `column` (one of COUNTED; none counts as ""), most first."""
    assert column in COUNTED, column
    sql = f"SELECT coalesce({column}, ''), count(*) FROM memory_index GROUP BY 1 ORDER BY 2 DESC, 1"
    return dict(cast(list[tuple[str, int]], conn.execute(sql).fetchall()))


@db.engine_specific
def file_warnings(conn: apsw.Connection) -> list[tuple[str, list[str]]]:
    """(path, warnings) of every memory whose file had problems, by path."""
    sql = "SELECT path, warnings FROM memory_index WHERE warnings != '[]' ORDER BY path"
    return [(p, json.loads(w)) for p, w in conn.execute(sql)]


@db.engine_specific
def files_bytes(conn: apsw.Connection) -> int:
    """The total size of the indexed files."""
    return int(db.scalar(conn, "SELECT coalesce(sum(size), 0) FROM memory_index"))


@db.engine_specific
def memory_count(conn: apsw.Connection) -> int:
    return int(db.scalar(conn, "SELECT count(*) FROM memory_index"))


@db.engine_specific
def pending_among(conn: apsw.Connection, ids: Sequence[int]) -> set[int]:
    """Those of `ids` whose embeddings are not computed yet."""
    if not ids:
        return set()
    sql = f"SELECT id FROM memory_index WHERE embedding_status = 'pending' AND id IN {_IDS}"
    return {int(r[0]) for r in conn.execute(sql, (json.dumps(list(ids)),))}


@db.engine_specific
def chunk_count(conn: apsw.Connection) -> int:
    """Chunks of the memories served (those of rows hidden from this connection aside)."""
    return int(
        db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE memory_id IN (SELECT id FROM memory_index)")
    )


# -- chunks ------------------------------------------------------------------------------------------------------


class ChunkRow(NamedTuple):
    """One chunk of a memory: the lines it cites and its text."""

    id: int | None  # None: the stand-in for a memory without chunks (an empty or binary file)
    heading: str
    anchor: str | None
    start_line: int
    end_line: int
    text: str


CHUNK_COLUMNS = "id, heading, anchor, start_line, end_line, text"
NO_CHUNK = ChunkRow(None, "", None, 1, 1, "")  # a memory without chunks still cites its first line


@db.engine_specific
def chunks(conn: apsw.Connection, wanted: dict[int, int | None]) -> dict[int, ChunkRow | None]:
    """memory id → the given chunk of it, or its first chunk when the chunk id is None (`NO_CHUNK` when it has
    none); None when the given chunk is gone (replaced by a writer since it was found)."""
    out: dict[int, ChunkRow | None] = {}
    by_id = {cid: mid for mid, cid in wanted.items() if cid is not None}
    if by_id:
        sql = f"SELECT {CHUNK_COLUMNS} FROM memory_chunks WHERE id IN {_IDS}"
        for row in conn.execute(sql, (json.dumps(list(by_id)),)):
            out[by_id[row[0]]] = ChunkRow._make(row)
        out.update({mid: None for mid in by_id.values() if mid not in out})
    first = [mid for mid, cid in wanted.items() if cid is None]
    if first:
        # The bare columns come from the row holding min(seq): each memory's first chunk.
        sql = f"SELECT memory_id, {CHUNK_COLUMNS}, min(seq) FROM memory_chunks WHERE memory_id IN {_IDS} GROUP BY 1"
        for row in conn.execute(sql, (json.dumps(first),)):
            out[row[0]] = ChunkRow._make(row[1:-1])
        out.update({mid: NO_CHUNK for mid in first if mid not in out})
    return out


@db.engine_specific
def chunk_owners(conn: apsw.Connection, chunk_ids: Sequence[int], scope: Scope) -> dict[int, int]:
    """chunk id → memory id, for those of the chunks whose memory is in scope."""
    where, args = _where(scope)
    sql = (
        "SELECT c.id, c.memory_id FROM memory_chunks c JOIN memory_index m ON m.id = c.memory_id "
        f"WHERE c.id IN {_IDS} AND {where}"
    )
    return dict(
        cast(list[tuple[int, int]], conn.execute(sql, [json.dumps(list(chunk_ids)), *args]).fetchall())
    )


@db.engine_specific
def chunks_of(conn: apsw.Connection, memory_ids: Sequence[int]) -> dict[int, int]:
    """chunk id → memory id, for every chunk of these memories."""
    sql = f"SELECT id, memory_id FROM memory_chunks WHERE memory_id IN {_IDS}"
    return dict(cast(list[tuple[int, int]], conn.execute(sql, (json.dumps(list(memory_ids)),)).fetchall()))


@db.engine_specific
def anchor_span(conn: apsw.Connection, memory_id: int, anchor: str) -> tuple[int, int] | None:
    """(first line, last line) of a memory's section marked `<!-- ANCHOR:anchor -->`, or None."""
    sql = "SELECT min(start_line), max(end_line) FROM memory_chunks WHERE memory_id = ? AND anchor = ?"
    rows = cast(list[tuple[int | None, int | None]], conn.execute(sql, (memory_id, anchor)).fetchall())
    first, last = rows[0] if rows else (None, None)
    return None if first is None or last is None else (first, last)


@db.engine_specific
def spans(conn: apsw.Connection, memory_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    """memory id → (first line of its first chunk, last line of its last chunk): its whole body."""
    sql = (
        "SELECT memory_id, min(start_line), max(end_line) FROM memory_chunks "
        f"WHERE memory_id IN {_IDS} GROUP BY memory_id"
    )
    rows = cast(list[tuple[int, int, int]], conn.execute(sql, (json.dumps(list(memory_ids)),)).fetchall())
    return {mid: (first, last) for mid, first, last in rows}


# -- keyword: BM25 over chunks (FTS5) ----------------------------------------------------------------------------


def match(words: Sequence[str]) -> str:
    """The FTS5 query for these words: each quoted (so no input is FTS5 syntax), any of them."""
    return " OR ".join(f'"{w}"' for w in words)


@db.engine_specific
def keyword_rows(conn: apsw.Connection) -> int | None:
    """The number of chunks BM25's idf counts (the first varint of FTS5's averages record, id 1), or None."""
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


@db.engine_specific
def document_frequency(conn: apsw.Connection, word: str) -> int:
    """How many chunks hold `word`. Counting reads the word's whole doclist (about 20 ms for a word in 500,000
    chunks, and the common words of queries recur), so a connection keeps the counts until the index changes:
    PRAGMA data_version moves when another connection commits, total_changes when this one writes."""
    state = (int(db.scalar(conn, "PRAGMA data_version")), conn.total_changes())
    held = _frequencies.get(conn)
    if held is None or held[0] != state:
        held = _frequencies[conn] = (state, {})
    counts = held[1]
    if word not in counts:
        if len(counts) >= MAX_FREQUENCIES:
            counts.clear()
        counts[word] = int(
            db.scalar(conn, "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?", (match([word]),))
        )
    return counts[word]


MAX_FREQUENCIES = 10_000  # words whose counts a connection keeps
_frequencies: weakref.WeakKeyDictionary[apsw.Connection, tuple[tuple[int, int], dict[str, int]]] = (
    weakref.WeakKeyDictionary()
)


@db.engine_specific
def best_chunks(
    conn: apsw.Connection, words: Sequence[str], n: int, among: Sequence[str] | None = None
) -> list[tuple[int, float]]:
    """The `n` chunks that match `words` best, as (chunk id, BM25), best first (ties: lower id first). With
    `among`, only chunks holding one of those words are ranked (scored by all of `words` still)."""
    # `+rowid`: a filter on FTS5's scan, not one FTS5 lookup per chunk.
    narrow = "" if among is None else "AND +rowid IN (SELECT rowid FROM memory_fts WHERE memory_fts MATCH ?) "
    sql = f"SELECT rowid, {_BM25} AS s FROM memory_fts WHERE memory_fts MATCH ? {narrow}ORDER BY s, rowid LIMIT ?"
    args = (match(words), n) if among is None else (match(words), match(among), n)
    return [(cid, -s) for cid, s in cast(list[tuple[int, float]], conn.execute(sql, args).fetchall())]


@db.engine_specific
def best_chunks_in_scope(
    conn: apsw.Connection, words: Sequence[str], scope: Scope, n: int
) -> list[tuple[int, int, float]]:
    """The `n` chunks of memories in scope that match `words` best, as (memory id, chunk id, BM25), best first."""
    where, args = _where(scope)
    sql = (
        f"SELECT c.memory_id, c.id, {_BM25} AS s FROM memory_fts JOIN memory_chunks c ON c.id = memory_fts.rowid "
        f"JOIN memory_index m ON m.id = c.memory_id WHERE memory_fts MATCH ? AND {where} ORDER BY s, c.id LIMIT ?"
    )
    rows = cast(list[tuple[int, int, float]], conn.execute(sql, [match(words), *args, n]).fetchall())
    return [(mid, cid, -s) for mid, cid, s in rows]


@db.engine_specific
def chunk_scores(
    conn: apsw.Connection, words: Sequence[str], chunk_ids: Sequence[int]
) -> list[tuple[int, float]]:
    """(chunk id, BM25) of those of these chunks that match `words`."""
    # `+rowid`: a filter on FTS5's scan, not one FTS5 lookup per chunk (each re-reads the doclists).
    sql = f"SELECT rowid, {_BM25} FROM memory_fts WHERE memory_fts MATCH ? AND +rowid IN {_IDS}"
    rows = cast(
        list[tuple[int, float]], conn.execute(sql, (match(words), json.dumps(list(chunk_ids)))).fetchall()
    )
    return [(cid, -s) for cid, s in rows]


MARK_START, MARK_END = "\x02", "\x03"  # around each match in a snippet


@db.engine_specific
def snippets(conn: apsw.Connection, words: Sequence[str], chunk_ids: Sequence[int]) -> dict[int, str]:
    """Chunk id → a short excerpt of it around its matches, each match between MARK_START and MARK_END (chunks
    that do not match are left out)."""
    sql = (
        f"SELECT rowid, snippet(memory_fts, 0, '{MARK_START}', '{MARK_END}', '…', 24) FROM memory_fts "
        f"WHERE memory_fts MATCH ? AND +rowid IN {_IDS}"
    )
    return dict(
        cast(list[tuple[int, str]], conn.execute(sql, (match(words), json.dumps(list(chunk_ids)))).fetchall())
    )


# -- semantic: cosine over chunk vectors (sqlite-vec) ------------------------------------------------------------


class Near(NamedTuple):
    """A memory's chunk closest to a query vector."""

    chunk_id: int
    similarity: float  # cosine similarity, higher is better


@db.engine_specific
def nearest_in_scope(
    conn: apsw.Connection, vector: bytes, model: str, scope: Scope, k: int | None = None
) -> dict[int, Near]:
    """memory id → its chunk closest to `vector` (a float32 vector's bytes), for the `k` closest memories in scope
    (all of them when `k` is None) among those with vectors of `model`, closest first (ties: lower chunk id).
    Exact: every chunk in scope is compared, so filters apply before the limit."""
    where, args = _where(scope)
    sql = (
        "SELECT c.memory_id, c.id, min(vec_distance_cosine(e.vector, ?)) AS d FROM memory_chunks c "
        "JOIN memory_index m ON m.id = c.memory_id "
        "JOIN embedding_cache e ON e.model = ? AND e.text_hash = c.text_hash "
        f"WHERE c.embedded = 1 AND {where} GROUP BY c.memory_id ORDER BY d, c.id"
    )
    limit = [] if k is None else [k]
    rows = cast(
        list[tuple[int, int, float | None]],
        conn.execute(sql + (" LIMIT ?" if k is not None else ""), [vector, model, *args, *limit]).fetchall(),
    )
    # A NULL distance means a zero query vector (a query with no words): nothing to match by meaning.
    return {mid: Near(cid, 1.0 - d) for mid, cid, d in rows if d is not None}


@db.engine_specific
def nearest_chunks(conn: apsw.Connection, vector: bytes, k: int) -> list[tuple[int, int, float]]:
    """The `k` chunks closest to `vector` in the whole index, as (chunk id, memory id, cosine distance), in no
    particular order (approximate engines may return fewer)."""
    sql = (
        "SELECT v.chunk_id, c.memory_id, v.distance FROM vec_memories v "
        "JOIN memory_chunks c ON c.id = v.chunk_id WHERE v.embedding MATCH ? AND k = ?"
    )
    rows = cast(list[tuple[int, int, float | None]], conn.execute(sql, (vector, k)).fetchall())
    return [(cid, mid, d) for cid, mid, d in rows if d is not None]


@db.engine_specific
def embedded_count(conn: apsw.Connection) -> int:
    """Chunks that have their vector."""
    return int(db.scalar(conn, "SELECT count(*) FROM memory_chunks WHERE embedded = 1"))


@db.engine_specific
def has_vectors(conn: apsw.Connection) -> bool:
    """Whether the index holds a vector table (a model was recorded and vectors can be searched)."""
    return db.has_table(conn, "vec_memories")


# -- the health of the index ---------------------------------------------------------------------------------------


class Consistency(NamedTuple):
    """Row counts that must agree in a sound index."""

    chunks: int
    keyword_rows: int
    chunks_without_memory: int
    keyword_rows_without_chunk: int
    vectors: int | None  # None: no vector table yet
    embedded_chunks: int


@db.engine_specific
def consistency(conn: apsw.Connection) -> Consistency:
    def count(sql: str) -> int:
        return int(db.scalar(conn, sql))

    return Consistency(
        chunks=count("SELECT count(*) FROM memory_chunks"),
        keyword_rows=count("SELECT count(*) FROM memory_fts"),
        chunks_without_memory=count(
            "SELECT count(*) FROM memory_chunks WHERE memory_id NOT IN (SELECT id FROM memory_index)"
        ),
        keyword_rows_without_chunk=count(
            "SELECT count(*) FROM memory_fts WHERE rowid NOT IN (SELECT id FROM memory_chunks)"
        ),
        vectors=count("SELECT count(*) FROM vec_memories") if has_vectors(conn) else None,
        embedded_chunks=embedded_count(conn),
    )


@db.engine_specific
def integrity(conn: apsw.Connection) -> list[str]:
    """What the engine's own check of the database file finds wrong; [] when nothing."""
    found = [str(r[0]) for r in conn.execute("PRAGMA integrity_check")]
    return [] if found == ["ok"] else found


@db.engine_specific
def vector_version(conn: apsw.Connection) -> str:
    """The vector extension's version (sqlite-vec's)."""
    return str(db.scalar(conn, "SELECT vec_version()"))


# -- what a server's in-memory copy of the vectors reads (vectors.py) -------------------------------------------


@db.engine_specific
def last_chunk_id(conn: apsw.Connection) -> int:
    """The highest chunk id ever given (ids are never reused); 0 for none."""
    sql = "SELECT coalesce(max(seq), 0) FROM sqlite_sequence WHERE name = 'memory_chunks'"
    return int(db.scalar(conn, sql))


@db.engine_specific
def chunk_blocks(conn: apsw.Connection, bits: int) -> dict[int, tuple[int, int]]:
    """Per block of 2**bits chunk ids: (how many chunks, the sum of their ids), embedded or not."""
    sql = f"SELECT id >> {int(bits)}, count(*), sum(id) FROM memory_chunks GROUP BY 1"
    return {b: (n, total) for b, n, total in cast(list[tuple[int, int, int]], conn.execute(sql).fetchall())}


@db.engine_specific
def unembedded_chunks(conn: apsw.Connection) -> set[int]:
    """The ids of the chunks still waiting for their vector."""
    return {r[0] for r in conn.execute("SELECT id FROM memory_chunks WHERE embedded = 0")}


@db.engine_specific
def embedded_between(conn: apsw.Connection, low: int, high: int) -> set[int]:
    """The ids, from `low` to `high`, of chunks that have their vector."""
    sql = "SELECT id FROM memory_chunks WHERE id BETWEEN ? AND ? AND embedded = 1"
    return {r[0] for r in conn.execute(sql, (low, high))}


@db.engine_specific
def chunk_vectors(
    conn: apsw.Connection, model: str, *, between: tuple[int, int] | None = None, ids: Sequence[int] = ()
) -> list[tuple[int, int, bytes]]:
    """(chunk id, memory id, vector) of the embedded chunks with ids `between` (low, high), or these `ids`."""
    which, args = (
        ("c.id BETWEEN ? AND ?", list(between)) if between else (f"c.id IN {_IDS}", [json.dumps(list(ids))])
    )
    # CROSS JOIN: chunks first. Left to the planner, it may scan the whole cache for each block.
    sql = (
        "SELECT c.id, c.memory_id, e.vector FROM memory_chunks c "
        "CROSS JOIN embedding_cache e ON e.model = ? AND e.text_hash = c.text_hash "
        f"WHERE {which} AND c.embedded = 1"
    )
    return cast(list[tuple[int, int, bytes]], conn.execute(sql, [model, *args]).fetchall())


@db.engine_specific
def cosine_distances(conn: apsw.Connection, vectors: Sequence[bytes], query: bytes) -> list[float | None]:
    """The engine's own cosine distance of each vector to `query` (None for a zero vector), to the bit."""
    cursor = conn.cursor().executemany("SELECT vec_distance_cosine(?, ?)", [(v, query) for v in vectors])
    return [row[0] for row in cursor]


# -- citations of code (server/citations.py says what they mean) -------------------------------------------------


class CitationRow(NamedTuple):
    """A citation as an answer shows it."""

    memory_id: int
    line: int
    target: str
    path: str
    start_line: int | None
    end_line: int | None
    baseline: str
    baseline_at: int
    status: str
    now_start: int | None
    now_end: int | None
    diff: str | None
    note: str | None


CITATION_COLUMNS = ", ".join(CitationRow._fields)


@db.engine_specific
def citations_of(conn: apsw.Connection, memory_ids: Sequence[int]) -> list[CitationRow]:
    """The citations of these memories, by memory and in the order written."""
    sql = f"SELECT {CITATION_COLUMNS} FROM citations WHERE memory_id IN {_IDS} ORDER BY memory_id, seq"
    return [CitationRow._make(r) for r in conn.execute(sql, (json.dumps(list(memory_ids)),))]


@db.engine_specific
def citation_statuses(conn: apsw.Connection) -> list[tuple[int, str]]:
    """Each (memory id, status) that some citation of the memory has."""
    return cast(
        list[tuple[int, str]], conn.execute("SELECT DISTINCT memory_id, status FROM citations").fetchall()
    )


@dataclasses.dataclass(slots=True)
class CitingMemory(MemoryRef):
    """A memory listed for its citations, with when they were baselined (the oldest of those listed)."""

    written: int


@db.engine_specific
def citing(
    conn: apsw.Connection, statuses: Sequence[str], limit: int, offset: int
) -> tuple[int, list[CitingMemory]]:
    """How many memories (deprecated ones aside) have a citation in one of `statuses`, and `limit` of them from
    `offset`, the oldest baseline of those citations first (then by id)."""
    marks = ",".join("?" * len(statuses))
    ranked = (
        "SELECT c.memory_id, min(c.baseline_at) AS written FROM citations c JOIN memory_index m ON m.id = c.memory_id "
        f"WHERE c.status IN ({marks}) AND m.importance_tier != 'deprecated' GROUP BY c.memory_id"
    )
    total = int(db.scalar(conn, f"SELECT count(*) FROM ({ranked})", statuses))
    sql = f"SELECT {_columns(CitingMemory)} FROM ({ranked}) r JOIN memory_index m ON m.id = r.memory_id ORDER BY r.written, m.id LIMIT ? OFFSET ?"
    return total, [CitingMemory(*r) for r in conn.execute(sql, [*statuses, limit, offset])]


@db.engine_specific
def citation_counts(conn: apsw.Connection) -> dict[str, int]:
    """Citations of the memories served, by status."""
    sql = "SELECT status, count(*) FROM citations WHERE memory_id IN (SELECT id FROM memory_index) GROUP BY status"
    return dict(cast(list[tuple[str, int]], conn.execute(sql).fetchall()))
