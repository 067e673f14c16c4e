"""The read SQL of the PostgreSQL engine: every function of server/reads.py, with the same arguments and rows, for a
`pg.PgConn` (a connection and the projects a read may see) in place of an SQLite connection. The keyword part
(BM25 from term statistics, snippets) is in server/pg_keyword.py; `plug()` puts both, and the write side's
indexer/pg_store.py, behind the storage seam (specs/001-indexer/memory/postgres-engine.md).

Vectors are pgvector's: exact over a filtered scope, HNSW for the whole index. Every read sees the rows of the
connection's projects only.
"""

from __future__ import annotations

import functools
import math
import re
import sys
from array import array
from collections.abc import Iterable, Sequence
from typing import Any

from specmem.indexer import pg_db, pg_store
from specmem.indexer.pg import PgConn
from specmem.server import reads
from specmem.server.reads import (
    CHUNK_COLUMNS,
    COUNTED,
    DETAIL_COLUMNS,
    MEMORY_COLUMNS,
    NO_CHUNK,
    ChunkRow,
    Consistency,
    MemoryDetail,
    MemoryRow,
    Near,
    Scope,
)

EF_SEARCH = 100  # HNSW candidates at least (pgvector's default is 40)


def ids_of(ids: Iterable[int]) -> list[int]:
    return [int(i) for i in ids]


# -- which memories a read may return ----------------------------------------------------------------------------


def glob_regex(glob: str) -> str:
    """SQLite's GLOB as a PostgreSQL regular expression: `*` any text, `?` one character, `[...]` a class (`[^`
    negates it); everything else literal, case-sensitive, the whole value."""
    out, i = ["^"], 0
    while i < len(glob):
        ch = glob[i]
        end = glob.find("]", i + 2) if ch == "[" else -1
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif end != -1:
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


def named_where(read: PgConn, scope: Scope) -> tuple[str, dict[str, object]]:
    """The scope's condition with named placeholders (%(w0)s, …), for queries that name their arguments."""
    where, args = _where(read, scope)
    named = {f"w{i}": a for i, a in enumerate(args)}
    return where.replace("%s", "{}").format(*(f"%({k})s" for k in named)), named


def _set(read: PgConn, sql: str, args: Sequence[object]) -> set[int]:
    return {int(r[0]) for r in read.conn.execute(sql, args)}


def in_scope(read: PgConn, scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    return _set(read, f"SELECT m.id FROM memory_index m WHERE {where}", args)


def visible(read: PgConn, ids: Iterable[int], scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    return _set(
        read, f"SELECT m.id FROM memory_index m WHERE m.id = ANY(%s) AND {where}", [ids_of(ids), *args]
    )


def constitutional(read: PgConn, scope: Scope) -> set[int]:
    where, args = _where(read, scope)
    sql = f"SELECT m.id FROM memory_index m WHERE m.importance_tier = 'constitutional' AND {where}"
    return _set(read, sql, args)


# -- memory rows -------------------------------------------------------------------------------------------------

_MINE = "m.project_id = ANY(%s)"
# SQLite compares text byte by byte and NOCASE folds ASCII letters only: the same orders here, whatever the
# database's collation.
_C = 'COLLATE "C"'
_NOCASE = f"translate(m.title, 'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz') {_C}"
SORTS = {
    "updated": "m.updated_at DESC, m.id",
    "title": f"{_NOCASE}, m.id",
    "path": f"m.rel_path {_C}, m.id",
    "tier": f"{reads._tier_rank('m.importance_tier')}, m.updated_at DESC, m.id",
}
assert SORTS.keys() == reads.SORTS.keys()


def _memories(read: PgConn, sql: str, args: Sequence[object] = ()) -> list[MemoryRow]:
    return [reads._memory(r) for r in read.conn.execute(sql, [list(read.projects), *args])]


def _details(read: PgConn, where: str, args: Sequence[object]) -> list[MemoryDetail]:
    sql = f"SELECT {DETAIL_COLUMNS} FROM memory_index m WHERE {_MINE} AND {where} ORDER BY m.id"
    return [reads._detail(r) for r in read.conn.execute(sql, [list(read.projects), *args])]


def memory_rows(read: PgConn, ids: Iterable[int]) -> dict[int, MemoryRow]:
    rows = _memories(
        read, f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {_MINE} AND m.id = ANY(%s)", [ids_of(ids)]
    )
    return {row.id: row for row in rows}


def memories_in(read: PgConn, scope: Scope) -> list[MemoryRow]:
    where, args = _where(read, scope)
    sql = f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {where} ORDER BY m.id"
    return [reads._memory(r) for r in read.conn.execute(sql, args)]


def memory_by_id(read: PgConn, memory_id: int) -> MemoryDetail | None:
    found = _details(read, "m.id = %s", [memory_id])
    return found[0] if found else None


def memory_by_path(read: PgConn, path: str) -> MemoryDetail | None:
    found = _details(read, "m.path = %s", [path])
    return found[0] if found else None


def memories_by_rel_path(read: PgConn, rel_path: str) -> list[MemoryDetail]:
    return _details(read, "m.rel_path = %s", [rel_path])


def page(read: PgConn, scope: Scope, sort: str, offset: int, limit: int) -> tuple[int, list[MemoryRow]]:
    where, args = _where(read, scope)
    total = _scalar(read, f"SELECT count(*) FROM memory_index m WHERE {where}", args)
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {where} ORDER BY {SORTS[sort]} LIMIT %s OFFSET %s"
    )
    return total, [reads._memory(r) for r in read.conn.execute(sql, [*args, limit, offset])]


def served(read: PgConn) -> list[MemoryRow]:
    sql = (
        f"SELECT {MEMORY_COLUMNS} FROM memory_index m WHERE {_MINE} AND m.importance_tier != 'deprecated' "
        f"ORDER BY {reads._tier_rank('m.importance_tier')}, m.rel_path {_C}"
    )
    return _memories(read, sql)


def triggered(read: PgConn) -> list[tuple[MemoryRow, list[str]]]:
    sql = (
        f"SELECT {MEMORY_COLUMNS}, m.trigger_phrases FROM memory_index m "
        f"WHERE {_MINE} AND m.trigger_phrases != '[]' AND m.importance_tier != 'deprecated' ORDER BY m.id"
    )
    import json

    return [
        (reads._memory(r[:-1]), json.loads(r[-1])) for r in read.conn.execute(sql, (list(read.projects),))
    ]


def counts(read: PgConn, column: str) -> dict[str, int]:
    assert column in COUNTED, column
    sql = (
        f"SELECT coalesce(m.{column}, '') {_C} AS v, count(*) FROM memory_index m WHERE {_MINE} "
        "GROUP BY 1 ORDER BY 2 DESC, 1"
    )
    return {str(v): int(n) for v, n in read.conn.execute(sql, (list(read.projects),))}


def file_warnings(read: PgConn) -> list[tuple[str, list[str]]]:
    import json

    sql = f"SELECT m.path, m.warnings FROM memory_index m WHERE {_MINE} AND m.warnings != '[]' ORDER BY m.path {_C}"
    return [(str(p), json.loads(w)) for p, w in read.conn.execute(sql, (list(read.projects),))]


def _scalar(read: PgConn, sql: str, args: Sequence[object] | None = None) -> int:
    row = read.conn.execute(sql, [list(read.projects)] if args is None else args).fetchone()
    return int(row[0] or 0) if row else 0


def files_bytes(read: PgConn) -> int:
    return _scalar(read, "SELECT sum(size) FROM memory_index WHERE project_id = ANY(%s)")


def memory_count(read: PgConn) -> int:
    return _scalar(read, "SELECT count(*) FROM memory_index WHERE project_id = ANY(%s)")


def chunk_count(read: PgConn) -> int:
    return _scalar(read, "SELECT count(*) FROM memory_chunks WHERE project_id = ANY(%s)")


def project_names(read: PgConn, ids: Iterable[int]) -> dict[int, str]:
    """memory id → the name of its project."""
    sql = (
        "SELECT m.id, p.name FROM memory_index m JOIN projects p ON p.id = m.project_id WHERE m.id = ANY(%s)"
    )
    return {int(mid): str(name) for mid, name in read.conn.execute(sql, (ids_of(ids),))}


def roots(read: PgConn) -> list[str]:
    """The roots the projects in scope were indexed from (as their indexers recorded them)."""
    sql = "SELECT DISTINCT root FROM memory_index WHERE project_id = ANY(%s) ORDER BY root"
    return [str(r) for (r,) in read.conn.execute(sql, (list(read.projects),))]


def pending_among(read: PgConn, ids: Iterable[int]) -> set[int]:
    """Those of `ids` whose embeddings are not computed yet."""
    sql = "SELECT id FROM memory_index WHERE embedding_status = 'pending' AND id = ANY(%s)"
    return {int(mid) for (mid,) in read.conn.execute(sql, (ids_of(ids),))}


# -- chunks ------------------------------------------------------------------------------------------------------


def chunks(read: PgConn, wanted: dict[int, int | None]) -> dict[int, ChunkRow | None]:
    out: dict[int, ChunkRow | None] = {}
    by_id = {cid: mid for mid, cid in wanted.items() if cid is not None}
    if by_id:
        sql = f"SELECT {CHUNK_COLUMNS} FROM memory_chunks WHERE id = ANY(%s)"
        for row in read.conn.execute(sql, (ids_of(by_id),)):
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
    return {int(c): int(m) for c, m in read.conn.execute(sql, [ids_of(chunk_ids), *args])}


def chunks_of(read: PgConn, memory_ids: Sequence[int]) -> dict[int, int]:
    sql = "SELECT id, memory_id FROM memory_chunks WHERE memory_id = ANY(%s)"
    return {int(c): int(m) for c, m in read.conn.execute(sql, (ids_of(memory_ids),))}


def anchor_span(read: PgConn, memory_id: int, anchor: str) -> tuple[int, int] | None:
    sql = "SELECT min(start_line), max(end_line) FROM memory_chunks WHERE memory_id = %s AND anchor = %s"
    row = read.conn.execute(sql, (memory_id, anchor)).fetchone()
    return None if row is None or row[0] is None or row[1] is None else (int(row[0]), int(row[1]))


def spans(read: PgConn, memory_ids: Sequence[int]) -> dict[int, tuple[int, int]]:
    sql = (
        "SELECT memory_id, min(start_line), max(end_line) FROM memory_chunks WHERE memory_id = ANY(%s) "
        "GROUP BY memory_id"
    )
    return {int(m): (int(a), int(b)) for m, a, b in read.conn.execute(sql, (ids_of(memory_ids),))}


# -- semantic: pgvector -------------------------------------------------------------------------------------------


def vector_text(vector: bytes) -> str:
    """A float32 vector's bytes as pgvector reads them."""
    return "[" + ",".join(map(repr, array("f", vector))) + "]"


def _blob(values: Sequence[float]) -> bytes:
    """A pgvector value (read as real[]) as a float32 vector's bytes, as SQLite stores it."""
    return array("f", values).tobytes()


def nearest_in_scope(
    read: PgConn, vector: bytes, model: str, scope: Scope, k: int | None = None
) -> dict[int, Near]:
    """memory id → its closest chunk, for the `k` closest memories in scope (all when None), closest first. Exact:
    every chunk in scope is compared, so filters apply before the limit. (One model per database: `model` is
    the one the vectors were made with, checked by the caller.)"""
    if not has_vectors(read):
        return {}
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
    if not has_vectors(read):
        return []
    with read.conn.transaction():
        read.conn.execute(f"SET LOCAL hnsw.ef_search = {max(EF_SEARCH, min(int(k), 1000))}")
        read.conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        rows = read.conn.execute(
            "SELECT v.chunk_id, c.memory_id, v.d FROM (SELECT chunk_id, embedding <=> %s::vector AS d "
            "FROM vec_memories WHERE project_id = ANY(%s) ORDER BY d LIMIT %s) v "
            "JOIN memory_chunks c ON c.id = v.chunk_id",
            (vector_text(vector), list(read.projects), k),
        ).fetchall()
    return [(int(c), int(m), float(d)) for c, m, d in rows if d is not None and not math.isnan(d)]


def embedded_count(read: PgConn) -> int:
    return _scalar(read, "SELECT count(*) FROM memory_chunks WHERE project_id = ANY(%s) AND embedded")


def has_vectors(read: PgConn) -> bool:
    return pg_db.has_table(read, pg_db.VEC_TABLE)


def cosine_distances(read: PgConn, vectors: Sequence[bytes], query: bytes) -> list[float | None]:
    """pgvector's cosine distance of each vector to `query` (None for a zero vector)."""
    rows = read.conn.execute(
        "SELECT u.v::vector <=> %s::vector FROM unnest(%s::text[]) WITH ORDINALITY AS u(v, n) ORDER BY u.n",
        (vector_text(query), [vector_text(v) for v in vectors]),
    ).fetchall()
    return [None if d is None or math.isnan(d) else float(d) for (d,) in rows]


# -- the health of the index ---------------------------------------------------------------------------------------


def consistency(read: PgConn) -> Consistency:
    """The same counts as SQLite's; the keyword rows are the chunks the BM25 statistics count."""
    mine = [list(read.projects)]
    return Consistency(
        chunks=chunk_count(read),
        keyword_rows=_scalar(read, "SELECT sum(chunks) FROM projects WHERE id = ANY(%s)"),
        chunks_without_memory=_scalar(
            read,
            "SELECT count(*) FROM memory_chunks c WHERE c.project_id = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM memory_index m WHERE m.id = c.memory_id)",
        ),
        keyword_rows_without_chunk=_scalar(
            read,
            "SELECT count(DISTINCT t.chunk_id) FROM chunk_terms t WHERE t.project_id = ANY(%s) AND NOT EXISTS "
            "(SELECT 1 FROM memory_chunks c WHERE c.id = t.chunk_id)",
            mine,
        ),
        vectors=_scalar(read, "SELECT count(*) FROM vec_memories WHERE project_id = ANY(%s)")
        if has_vectors(read)
        else None,
        embedded_chunks=embedded_count(read),
    )


def integrity(read: PgConn) -> list[str]:
    """What is wrong with the BM25 statistics of the projects (PostgreSQL checks its own pages): each project's
    chunk and token counts must equal its chunks'."""
    sql = (
        "SELECT p.name, p.chunks, p.tokens, count(c.id), coalesce(sum(c.length), 0) FROM projects p "
        "LEFT JOIN memory_chunks c ON c.project_id = p.id WHERE p.id = ANY(%s) GROUP BY p.id"
    )
    return [
        f"project {name}: the keyword statistics count {n} chunks and {t} tokens, the index holds {cn} and {ct}"
        for name, n, t, cn, ct in read.conn.execute(sql, (list(read.projects),))
        if (n, t) != (cn, ct)
    ]


def vector_version(read: PgConn) -> str:
    """pgvector's version."""
    found = extension_version(read.conn)
    return f"pgvector {found}" if found else "pgvector (not installed)"


def extension_version(conn: Any) -> str | None:
    """The version of pgvector created in the database (a bare psycopg connection), or None."""
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'vector'").fetchone()
    return None if row is None else str(row[0])


def hnsw_valid(conn: Any) -> bool | None:
    """Whether the vectors' HNSW index is valid (an interrupted build leaves it invalid); None: there is none."""
    row = conn.execute(
        "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid WHERE c.relname = %s",
        (f"{pg_db.VEC_TABLE}_hnsw",),
    ).fetchone()
    return None if row is None else bool(row[0])


def project_states(conn: Any) -> list[tuple[str, int, int | None]]:
    """(name, memories waiting for embeddings, last change in ms or None) of every project, by name."""
    rows = conn.execute(
        "SELECT p.name, count(m.id) FILTER (WHERE m.embedding_status = 'pending'), p.indexed_at FROM projects p "
        "LEFT JOIN memory_index m ON m.project_id = p.id GROUP BY p.id ORDER BY p.name"
    ).fetchall()
    return [(str(n), int(c), None if t is None else int(t)) for n, c, t in rows]


# -- what a server's in-memory copy of the vectors reads (vectors.py) -------------------------------------------


def last_chunk_id(read: PgConn) -> int:
    """The highest chunk id ever given (ids come from one sequence and are never reused); 0 for none."""
    row = read.conn.execute("SELECT pg_sequence_last_value('memory_chunks_id_seq')").fetchone()
    return int(row[0]) if row and row[0] is not None else 0


def chunk_blocks(read: PgConn, bits: int) -> dict[int, tuple[int, int]]:
    sql = f"SELECT id >> {int(bits)}, count(*), sum(id) FROM memory_chunks WHERE project_id = ANY(%s) GROUP BY 1"
    return {int(b): (int(n), int(s)) for b, n, s in read.conn.execute(sql, (list(read.projects),))}


def unembedded_chunks(read: PgConn) -> set[int]:
    return _set(
        read,
        "SELECT id FROM memory_chunks WHERE project_id = ANY(%s) AND NOT embedded",
        [list(read.projects)],
    )


def embedded_between(read: PgConn, low: int, high: int) -> set[int]:
    sql = "SELECT id FROM memory_chunks WHERE project_id = ANY(%s) AND id BETWEEN %s AND %s AND embedded"
    return _set(read, sql, [list(read.projects), low, high])


def chunk_vectors(
    read: PgConn, model: str, *, between: tuple[int, int] | None = None, ids: Sequence[int] = ()
) -> list[tuple[int, int, bytes]]:
    """(chunk id, memory id, vector) of the embedded chunks with ids `between` (low, high), or these `ids`."""
    if not has_vectors(read):
        return []
    which, args = ("c.id BETWEEN %s AND %s", list(between)) if between else ("c.id = ANY(%s)", [ids_of(ids)])
    sql = (
        "SELECT c.id, c.memory_id, v.embedding::real[] FROM memory_chunks c JOIN vec_memories v ON v.chunk_id = c.id "
        f"WHERE c.project_id = ANY(%s) AND {which} AND c.embedded"
    )
    return [(int(c), int(m), _blob(v)) for c, m, v in read.conn.execute(sql, [list(read.projects), *args])]


# -- the engine behind the seam ------------------------------------------------------------------------------------


@functools.cache
def plug() -> dict[str, list[str]]:
    """Put the PostgreSQL engine behind the whole storage seam for `PgConn` connections (once per process): the
    write side's (pg_store.plug) and reads' from here and server/pg_keyword.py. A seam function the engine
    lacks raises DatabaseError saying so. Returns the lacking functions by seam module."""
    from specmem.server import pg_keyword

    return {**pg_store.plug(), "reads": pg_store.plug_into(reads, [sys.modules[__name__], pg_keyword])}
