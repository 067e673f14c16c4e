"""The write SQL of the PostgreSQL engine: one memory's rows (memory_index, memory_chunks, its keyword terms and
their statistics, cached vectors) written and removed together, within one project. The same operations as
indexer/store.py, for the same `Prepared` values. Call everything here inside `pg.write_tx` unless it only reads.
"""

from __future__ import annotations

import functools
import os
import sys
from array import array
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from specmem.indexer import db, pg, pg_db, store, terms
from specmem.indexer.chunk import Chunk
from specmem.indexer.errors import DatabaseError
from specmem.indexer.pg import PgConn
from specmem.indexer.store import (
    CHECKPOINT_COLUMNS,
    CheckpointRow,
    FileStat,
    Indexed,
    PendingChunk,
    Prepared,
)

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[Any]

VEC_TABLE = pg_db.VEC_TABLE


def store_memory(c: PgConn, prep: Prepared, memory_id: int | None, vec_model: str | None) -> tuple[int, int]:
    """Insert or replace one memory with its chunks and keyword terms; reuse cached vectors.

    Returns (memory id, number of chunks whose vector came from the cache)."""
    return store_memories(c, [(prep, memory_id)], vec_model)[0]


# memory_index's columns as store.memory_row gives them, with their PostgreSQL types (for a batch sent as arrays).
ROW_TYPES = {
    "path": "text",
    "root": "text",
    "rel_path": "text",
    "spec_folder": "text",
    "title": "text",
    "importance_tier": "text",
    "context_type": "text",
    "trigger_phrases": "text",
    "tags": "text",
    "expires": "text",
    "anchors": "text",
    "size": "bigint",
    "mtime_ns": "bigint",
    "ctime_ns": "bigint",
    "inode": "numeric",
    "content_hash": "text",
    "line_count": "int",
    "warnings": "text",
    "updated_at": "bigint",
    "indexed_at": "bigint",
}


def store_memories(
    c: PgConn, items: Sequence[tuple[Prepared, int | None]], vec_model: str | None
) -> list[tuple[int, int]]:
    """Insert or replace a batch of memories (each with the id it had, or None) with their chunks and keyword
    terms, in a few statements for the whole batch; reuse cached vectors. In four steps: 1. the memory rows
    (inserted or updated, their old chunks dropped); 2. every chunk in one insert, its terms in one COPY;
    3. cached vectors given to the chunks whose text has one; 4. each memory's embedding status.

    Returns (memory id, chunks whose vector came from the cache) for each, in order."""
    if not items:
        return []
    now = pg.now_ms()
    ids = _memory_rows(c, items, now)
    chunks = [(mid, prep, ch) for mid, (prep, _) in zip(ids, items, strict=True) for ch in prep.chunks]
    _insert_chunks(c, chunks)
    reused = _reuse_vectors(c, ids, vec_model, now) if vec_model is not None and chunks else {}
    statuses = [
        "none" if not prep.chunks else ("done" if reused.get(mid, 0) == len(prep.chunks) else "pending")
        for mid, (prep, _) in zip(ids, items, strict=True)
    ]
    c.conn.execute(
        "UPDATE memory_index m SET embedding_status = u.s FROM unnest(%s::bigint[], %s::text[]) AS u(id, s) "
        "WHERE m.id = u.id",
        (ids, statuses),
    )
    return [(mid, int(reused.get(mid, 0))) for mid in ids]


def _memory_rows(c: PgConn, items: Sequence[tuple[Prepared, int | None]], now: int) -> list[int]:
    """Insert or update each memory's row (one statement for the new ones, one for the others); the chunks of
    those updated are dropped. Returns their ids, in order."""
    paths = [str(prep.path) for prep, _ in items]
    ids = _known_ids(c, items, paths)
    rows = [store.memory_row(prep, now) for prep, _ in items]
    assert rows[0].keys() == ROW_TYPES.keys(), "store.memory_row changed: give ROW_TYPES its columns"
    replaced = [(i, mid) for i, mid in enumerate(ids) if mid is not None]
    if replaced:
        _drop_chunks(c, "memory_id = ANY(%s)", ([mid for _, mid in replaced],))
        _update_rows(c, [mid for _, mid in replaced], [rows[i] for i, _ in replaced])
    new = [i for i, mid in enumerate(ids) if mid is None]
    if new:
        made = _insert_rows(c, [rows[i] for i in new])
        for i in new:
            ids[i] = made[paths[i]]
    return [int(mid) for mid in ids if mid is not None]


def _known_ids(c: PgConn, items: Sequence[tuple[Prepared, int | None]], paths: list[str]) -> list[int | None]:
    """Each memory's id (None: a new one). Defensive: a path may have been indexed since the caller looked (one
    row per path, always): that row is taken over, or dropped when the memory comes with another id."""
    holders = dict(
        c.conn.execute(
            "SELECT path, id FROM memory_index WHERE project_id = %s AND path = ANY(%s)", (c.project, paths)
        ).fetchall()
    )
    ids: list[int | None] = []
    stale: list[int] = []
    for path, (_, memory_id) in zip(paths, items, strict=True):
        holder = holders.get(path)
        if holder is not None and memory_id is None:
            memory_id = int(holder)
        elif holder is not None and holder != memory_id:
            stale.append(int(holder))
        ids.append(memory_id)
    if stale:
        delete_memories(c, stale)
    return ids


def _arrays(rows: list[dict[str, object]]) -> tuple[str, list[list[object]]]:
    """The rows as one typed array per column (unnest's placeholders, and their values)."""
    marks = ", ".join(f"%s::{kind}[]" for kind in ROW_TYPES.values())
    return marks, [[row[k] for row in rows] for k in ROW_TYPES]


def _update_rows(c: PgConn, ids: list[int], rows: list[dict[str, object]]) -> None:
    marks, values = _arrays(rows)
    cols = list(ROW_TYPES)
    c.conn.execute(
        f"UPDATE memory_index m SET {', '.join(f'{k} = u.{k}' for k in cols)} "
        f"FROM unnest(%s::bigint[], {marks}) AS u(id, {', '.join(cols)}) WHERE m.id = u.id",
        [ids, *values],
    )


def _insert_rows(c: PgConn, rows: list[dict[str, object]]) -> dict[str, int]:
    """Insert new memories' rows; their ids by path."""
    marks, values = _arrays(rows)
    cols = list(ROW_TYPES)
    made = c.conn.execute(
        f"INSERT INTO memory_index (project_id, {', '.join(cols)}, created_at) "
        f"SELECT %s, {', '.join(f'u.{k}' for k in cols)}, u.indexed_at "
        f"FROM unnest({marks}) AS u({', '.join(cols)}) RETURNING path, id",
        [c.project, *values],
    ).fetchall()
    return {str(path): int(mid) for path, mid in made}


def _insert_chunks(c: PgConn, chunks: list[tuple[int, Prepared, Chunk]]) -> None:
    """Every chunk (memory id, its file, the chunk) in one insert, with its keyword terms."""
    if not chunks:
        return
    rel_paths = {id(prep): str(prep.rel) for _, prep, _ in chunks}
    counted = [terms.columns(store.keyword_columns(prep, rel_paths[id(prep)], ch)) for _, prep, ch in chunks]
    rows = c.conn.execute(
        "INSERT INTO memory_chunks (memory_id, project_id, seq, heading, anchor, start_line, end_line, text, "
        "text_hash, length) SELECT m, %s, a, b, c, d, e, f, g, h FROM unnest(%s::bigint[], %s::int[], "
        "%s::text[], %s::text[], %s::int[], %s::int[], %s::text[], %s::text[], %s::int[]) "
        "WITH ORDINALITY AS u(m, a, b, c, d, e, f, g, h, n) ORDER BY n RETURNING id",
        (
            c.project,
            [mid for mid, _, _ in chunks],
            [ch.seq for _, _, ch in chunks],
            [ch.heading for _, _, ch in chunks],
            [ch.anchor for _, _, ch in chunks],
            [ch.start_line for _, _, ch in chunks],
            [ch.end_line for _, _, ch in chunks],
            [ch.text for _, _, ch in chunks],
            [ch.text_hash for _, _, ch in chunks],
            [length for _, length in counted],
        ),
    ).fetchall()
    chunk_ids = sorted(int(r[0]) for r in rows)  # ids are handed out in insertion order
    add_terms(c, zip(chunk_ids, counted, strict=True))


def _reuse_vectors(c: PgConn, ids: list[int], vec_model: str, now: int) -> dict[int, int]:
    """Give these memories' chunks the cached vectors of their texts; memory id → how many got one."""
    rows = c.conn.execute(
        f"WITH v AS (INSERT INTO {VEC_TABLE} (chunk_id, project_id, embedding) "
        "SELECT c.id, c.project_id, e.vector FROM memory_chunks c JOIN embedding_cache e "
        "ON e.model = %s AND e.text_hash = c.text_hash WHERE c.memory_id = ANY(%s) RETURNING chunk_id), "
        "u AS (UPDATE memory_chunks SET embedded = true WHERE id IN (SELECT chunk_id FROM v) "
        "RETURNING memory_id, text_hash), "
        "t AS (UPDATE embedding_cache SET used_at = %s WHERE model = %s AND text_hash IN "
        "(SELECT text_hash FROM u)) SELECT memory_id, count(*) FROM u GROUP BY 1",
        (vec_model, ids, now, vec_model),
    ).fetchall()
    return {int(m): int(n) for m, n in rows}


def add_terms(c: PgConn, chunks: Iterable[tuple[int, tuple[dict[str, list[int]], int]]]) -> None:
    """Record the terms of new chunks and count them in the project's statistics (BM25's document frequencies,
    row count and total length)."""
    conn = c.conn
    project = c.project
    df: Counter[str] = Counter()
    rows = tokens = 0
    lines: list[str] = []
    for chunk_id, (counts, length) in chunks:
        rows += 1
        tokens += length
        df.update(counts.keys())
        lines.extend(
            f"{project}\t{_copy_text(term)}\t{chunk_id}\t{{{','.join(map(str, per_column))}}}\t{length}\n"
            for term, per_column in counts.items()
        )
    # COPY's text format built here in one piece: a row at a time through psycopg cost more than the database.
    with conn.cursor().copy(
        "COPY chunk_terms (project_id, term, chunk_id, counts, length) FROM STDIN"
    ) as copy:
        copy.write("".join(lines))
    _count_terms(c, df, rows, tokens)


def _copy_text(value: str) -> str:
    """A value in COPY's text format (backslash, tab and line breaks escaped)."""
    if "\\" in value or "\t" in value or "\n" in value or "\r" in value:
        return value.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return value


def _count_terms(c: PgConn, df: Counter[str], rows: int, tokens: int) -> None:
    conn = c.conn
    project = c.project
    if df:
        words = sorted(df)  # one order for every writer: no deadlock between two of them
        conn.execute(
            "INSERT INTO term_stats (project_id, term, chunks) SELECT %s, * FROM unnest(%s::text[], %s::bigint[]) "
            "ON CONFLICT (project_id, term) DO UPDATE SET chunks = term_stats.chunks + excluded.chunks",
            (project, words, [df[w] for w in words]),
        )
    if rows:
        conn.execute(
            "UPDATE projects SET chunks = chunks + %s, tokens = tokens + %s WHERE id = %s",
            (rows, tokens, project),
        )


def delete_chunks(c: PgConn, memory_id: int, *, has_vec: bool | None = None) -> None:
    """Remove one memory's chunks with their terms (uncounted from the statistics) and vectors (`has_vec`: as
    store.delete_chunks takes it; vectors go with their chunks here)."""
    _drop_chunks(c, "memory_id = %s", (memory_id,))


def delete_memories(c: PgConn, memory_ids: Sequence[int]) -> None:
    """Remove memories with their chunks, terms and vectors."""
    conn = c.conn
    if not memory_ids:
        return
    _drop_chunks(c, "memory_id = ANY(%s)", (list(memory_ids),))
    conn.execute("DELETE FROM memory_index WHERE id = ANY(%s)", (list(memory_ids),))


def _drop_chunks(c: PgConn, where: str, args: tuple[Any, ...]) -> None:
    conn = c.conn
    gone = conn.execute(
        f"WITH c AS (DELETE FROM memory_chunks WHERE {where} RETURNING id, project_id, length), "
        "t AS (DELETE FROM chunk_terms WHERE chunk_id IN (SELECT id FROM c) RETURNING project_id, term), "
        "d AS (SELECT project_id, term, count(*) AS n FROM t GROUP BY 1, 2 ORDER BY 1, 2), "
        "s AS (UPDATE term_stats s SET chunks = s.chunks - d.n FROM d "
        "WHERE s.project_id = d.project_id AND s.term = d.term) "
        "SELECT project_id, count(*), coalesce(sum(length), 0) FROM c GROUP BY 1",
        args,
    ).fetchall()
    for project, rows, tokens in gone:
        conn.execute(
            "UPDATE projects SET chunks = chunks - %s, tokens = tokens - %s WHERE id = %s",
            (rows, tokens, project),
        )


def existing(c: PgConn, roots: Iterable[Path], scopes: tuple[Path, ...] | None) -> dict[str, Indexed]:
    """Indexed memories of the project under the roots, or under the scopes (files or folders), by path text."""
    conn = c.conn
    project = c.project
    cols = "SELECT id, path, size, mtime_ns, ctime_ns, inode, content_hash FROM memory_index WHERE project_id = %s"
    queries: list[tuple[str, tuple[Any, ...]]]
    if scopes is None:
        queries = [(f"{cols} AND root = ANY(%s)", (project, [str(r) for r in roots]))]
    else:
        queries = [
            (
                f"{cols} AND (path = %s OR (path > %s AND path < %s))",
                (project, str(s), f"{s}{os.sep}", f"{s}{chr(ord(os.sep) + 1)}"),
            )
            for s in scopes
        ]
    out: dict[str, Indexed] = {}
    for sql, args in queries:
        for mid, path, size, mtime_ns, ctime_ns, inode, digest in conn.execute(sql, args):
            out[path] = Indexed(int(mid), FileStat(size, mtime_ns, ctime_ns, int(inode)), digest)
    return out


def outside(c: PgConn, roots: tuple[Path, ...]) -> dict[str, Indexed]:
    """Memories of the project that no longer belong to it: under none of the roots, and not indexed under a
    folder above one of them either (that is a narrower scan, not a removed root)."""
    conn = c.conn
    project = c.project
    out: dict[str, Indexed] = {}
    rows = conn.execute(
        "SELECT id, path, root, size, mtime_ns, ctime_ns, inode, content_hash FROM memory_index WHERE project_id = %s",
        (project,),
    ).fetchall()
    for mid, path, root, size, mtime_ns, ctime_ns, inode, digest in rows:
        p = Path(path)
        if any(p == r or r in p.parents for r in roots):
            continue
        if not any(Path(root) == r or Path(root) in r.parents for r in roots):
            out[path] = Indexed(int(mid), FileStat(size, mtime_ns, ctime_ns, int(inode)), digest)
    return out


def update_stat(c: PgConn, memory_id: int, st: FileStat) -> None:
    """Record a file's new stat when its content did not change."""
    conn = c.conn
    conn.execute(
        "UPDATE memory_index SET size = %s, mtime_ns = %s, ctime_ns = %s, inode = %s WHERE id = %s",
        (st.size, st.mtime_ns, st.ctime_ns, st.inode, memory_id),
    )


# -- vectors ----------------------------------------------------------------------------------------------------


def has_vectors(c: PgConn) -> bool:
    return pg_db.has_table(c, VEC_TABLE)


def vector_text(vector: bytes) -> str:
    """A float32 vector's bytes (as SQLite stores them) as pgvector reads them ('[0.1,0.2,...]')."""
    return "[" + ",".join(map(repr, array("f", vector))) + "]"


def unembedded_count(c: PgConn) -> int:
    row = c.conn.execute(
        "SELECT count(*) FROM memory_chunks WHERE project_id = %s AND NOT embedded", (c.project,)
    ).fetchone()
    return int(row[0]) if row else 0


def unembedded(c: PgConn, after_id: int, limit: int) -> list[PendingChunk]:
    """Up to `limit` chunks of the project waiting for their vector, by id from `after_id` on."""
    rows = c.conn.execute(
        "SELECT id, heading, text, text_hash FROM memory_chunks WHERE project_id = %s AND NOT embedded AND id > %s "
        "ORDER BY id LIMIT %s",
        (c.project, after_id, limit),
    ).fetchall()
    return [PendingChunk(int(i), str(h), str(t), str(th)) for i, h, t, th in rows]


def cached_vectors(c: PgConn, model: str, hashes: Sequence[str]) -> dict[str, bytes]:
    """text hash → vector (float32 bytes) for those of these hashes the cache holds (shared by every project)."""
    rows = c.conn.execute(
        "SELECT text_hash, vector::real[] FROM embedding_cache WHERE model = %s AND text_hash = ANY(%s)",
        (model, list(hashes)),
    ).fetchall()
    return {str(h): array("f", v).tobytes() for h, v in rows}


def store_vectors(c: PgConn, model: str, fresh: dict[str, bytes], chunks: dict[int, bytes], now: int) -> None:
    """Cache the `fresh` vectors and give each chunk (id → vector) its vector, unless it was replaced meanwhile;
    a memory whose chunks all have theirs is done. Call inside write_tx."""
    conn = c.conn
    if fresh:
        hashes = sorted(fresh)
        conn.execute(
            "INSERT INTO embedding_cache (model, text_hash, vector, used_at) "
            "SELECT %s, h, v::vector, %s FROM unnest(%s::text[], %s::text[]) AS u(h, v) "
            "ON CONFLICT (model, text_hash) DO UPDATE SET vector = excluded.vector, used_at = excluded.used_at",
            (model, now, hashes, [vector_text(fresh[h]) for h in hashes]),
        )
    if not chunks:
        return
    ids = sorted(chunks)
    conn.execute(
        f"WITH v AS (INSERT INTO {VEC_TABLE} (chunk_id, project_id, embedding) "
        "SELECT c.id, c.project_id, u.v::vector FROM unnest(%s::bigint[], %s::text[]) AS u(id, v) "
        "JOIN memory_chunks c ON c.id = u.id AND NOT c.embedded ON CONFLICT (chunk_id) DO NOTHING RETURNING chunk_id) "
        "UPDATE memory_chunks SET embedded = true WHERE id IN (SELECT chunk_id FROM v)",
        (ids, [vector_text(chunks[i]) for i in ids]),
    )
    conn.execute(
        "UPDATE memory_index m SET embedding_status = 'done' WHERE m.id IN "
        "(SELECT DISTINCT memory_id FROM memory_chunks WHERE id = ANY(%s)) AND embedding_status = 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM memory_chunks c WHERE c.memory_id = m.id AND NOT c.embedded)",
        (ids,),
    )


def forget_vectors(c: PgConn, unused_since: int) -> None:
    """Drop cached vectors no chunk of any project has and none used since `unused_since` (ms)."""
    c.conn.execute(
        "DELETE FROM embedding_cache e WHERE used_at < %s AND NOT EXISTS "
        "(SELECT 1 FROM memory_chunks c WHERE c.text_hash = e.text_hash)",
        (unused_since,),
    )


# -- what change detection and moves read ---------------------------------------------------------------------


def memory_id_at(c: PgConn, path: str) -> int | None:
    row = c.conn.execute(
        "SELECT id FROM memory_index WHERE project_id = %s AND path = %s", (c.project, path)
    ).fetchone()
    return None if row is None else int(row[0])


def with_content(c: PgConn, digest: str) -> list[tuple[int, str]]:
    rows = c.conn.execute(
        "SELECT id, path FROM memory_index WHERE project_id = %s AND content_hash = %s", (c.project, digest)
    ).fetchall()
    return [(int(i), str(p)) for i, p in rows]


# -- feedback and checkpoints (per project) ---------------------------------------------------------------------


def confidence(c: PgConn, memory_id: int) -> tuple[str, float] | None:
    row = c.conn.execute("SELECT path, confidence FROM memory_index WHERE id = %s", (memory_id,)).fetchone()
    return None if row is None else (str(row[0]), float(row[1]))


def set_confidence(c: PgConn, memory_id: int, value: float) -> None:
    c.conn.execute("UPDATE memory_index SET confidence = %s WHERE id = %s", (value, memory_id))


def votes(c: PgConn, path: str) -> tuple[float, int] | None:
    row = c.conn.execute(
        "SELECT confidence, access_count FROM memory_index WHERE project_id = %s AND path = %s",
        (c.project, path),
    ).fetchone()
    return None if row is None else (float(row[0]), int(row[1]))


def set_votes(c: PgConn, path: str, confidence: float, access_count: int) -> None:
    c.conn.execute(
        "UPDATE memory_index SET confidence = %s, access_count = %s WHERE project_id = %s AND path = %s",
        (confidence, access_count, c.project, path),
    )


def has_checkpoint(c: PgConn, name: str) -> bool:
    sql = "SELECT 1 FROM checkpoints WHERE project_id = %s AND name = %s"
    return c.conn.execute(sql, (c.project, name)).fetchone() is not None


def add_checkpoint(c: PgConn, row: CheckpointRow, data: bytes) -> None:
    c.conn.execute(
        f"INSERT INTO checkpoints (project_id, {CHECKPOINT_COLUMNS}, data) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
        (c.project, *row[:-1], int(row.automatic), data),
    )


def retain_checkpoints(c: PgConn, older_than: int, most: int, keep: str, automatic: bool) -> None:
    c.conn.execute(
        "DELETE FROM checkpoints WHERE project_id = %s AND created_at < %s AND name != %s",
        (c.project, older_than, keep),
    )
    c.conn.execute(
        "DELETE FROM checkpoints WHERE project_id = %s AND name != %s AND automatic = %s AND id NOT IN "
        "(SELECT id FROM checkpoints WHERE project_id = %s AND automatic = %s ORDER BY created_at DESC, id DESC "
        "LIMIT %s)",
        (c.project, keep, int(automatic), c.project, int(automatic), most),
    )


def amend_checkpoint(c: PgConn, name: str, data: bytes, size_bytes: int, file_count: int) -> None:
    c.conn.execute(
        "UPDATE checkpoints SET data = %s, size_bytes = %s, file_count = %s WHERE project_id = %s AND name = %s",
        (data, size_bytes, file_count, c.project, name),
    )


def checkpoints(c: PgConn) -> list[CheckpointRow]:
    rows = c.conn.execute(
        f"SELECT {CHECKPOINT_COLUMNS} FROM checkpoints WHERE project_id = %s ORDER BY created_at DESC, id DESC",
        (c.project,),
    ).fetchall()
    return [CheckpointRow._make((*r[:-1], bool(r[-1]))) for r in rows]


def checkpoint_data(c: PgConn, name: str) -> bytes | None:
    sql = "SELECT data FROM checkpoints WHERE project_id = %s AND name = %s"
    row = c.conn.execute(sql, (c.project, name)).fetchone()
    return None if row is None else bytes(row[0])


def delete_checkpoint(c: PgConn, name: str) -> None:
    c.conn.execute("DELETE FROM checkpoints WHERE project_id = %s AND name = %s", (c.project, name))


# -- the engine behind the seam ----------------------------------------------------------------------------------


def _unsupported(seam: str, name: str) -> Callable[..., Any]:
    def fail(*args: Any, **kwargs: Any) -> Any:
        raise DatabaseError(f"{seam}.{name} is not supported on PostgreSQL yet; use an SQLite index for it")

    return fail


def plug_into(seam: ModuleType, engines: Sequence[ModuleType]) -> list[str]:
    """Register the engines' functions for `PgConn` in place of the seam module's of the same names; a function
    none of them has raises DatabaseError saying so. Returns those lacking."""
    lacking: set[str] | None = None
    for engine in engines:
        missing = set(db.plug(seam, engine, PgConn))
        lacking = missing if lacking is None else lacking & missing
    for name in sorted(lacking or ()):
        db.SEAM[seam.__name__][name].register(PgConn, _unsupported(seam.__name__.rsplit(".", 1)[-1], name))
    return sorted(lacking or ())


@functools.cache
def plug() -> dict[str, list[str]]:
    """Put the engine's write side behind the storage seam (once per process): db.py's functions from
    indexer/pg_db.py, store.py's from here. Returns the lacking functions by seam module."""
    return {"db": plug_into(db, [pg_db]), "store": plug_into(store, [sys.modules[__name__]])}
