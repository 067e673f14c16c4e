"""The write SQL of the PostgreSQL engine: one memory's rows (memory_index, memory_chunks, its keyword terms and
their statistics, cached vectors) written and removed together, within one project. The same operations as
indexer/store.py, for the same `Prepared` values. Call everything here inside `pg.write_tx` unless it only reads.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from specmem.indexer import pg, terms
from specmem.indexer.parse import spec_folder
from specmem.indexer.pg import PgConn
from specmem.indexer.store import FileStat, Indexed, Prepared

if TYPE_CHECKING:
    import psycopg

    Conn = psycopg.Connection[Any]

VEC_TABLE = "vec_memories"


def store_memory(c: PgConn, prep: Prepared, memory_id: int | None, vec_model: str | None) -> tuple[int, int]:
    """Insert or replace one memory with its chunks and keyword terms; reuse cached vectors.

    Returns (memory id, number of chunks whose vector came from the cache)."""
    return store_memories(c, [(prep, memory_id)], vec_model)[0]


def _values(prep: Prepared, project: int, now: int) -> dict[str, Any]:
    p = prep.parsed
    return {
        "project_id": project,
        "path": str(prep.path),
        "root": str(prep.root),
        "rel_path": str(prep.rel),
        "spec_folder": spec_folder(prep.rel),
        "title": p.title,
        "importance_tier": p.tier,
        "context_type": p.context_type,
        "trigger_phrases": json.dumps(p.trigger_phrases, ensure_ascii=False),
        "tags": json.dumps(p.tags, ensure_ascii=False),
        "expires": p.expires,
        "anchors": json.dumps(
            list(dict.fromkeys(c.anchor for c in prep.chunks if c.anchor)), ensure_ascii=False
        ),
        "size": prep.stat.size,
        "mtime_ns": prep.stat.mtime_ns,
        "ctime_ns": prep.stat.ctime_ns,
        "inode": prep.stat.inode,
        "content_hash": prep.digest,
        "line_count": len(p.lines),
        "warnings": json.dumps(prep.warnings, ensure_ascii=False),
        # An mtime in the future would never decay and pass every `since`: it counts as now (scan warns).
        "updated_at": min(max(prep.stat.mtime_ns, 0) // 1_000_000, now) or now,
        "indexed_at": now,
    }


def store_memories(
    c: PgConn, items: Sequence[tuple[Prepared, int | None]], vec_model: str | None
) -> list[tuple[int, int]]:
    """Insert or replace a batch of memories (each with the id it had, or None) with their chunks and keyword
    terms, in a few statements for the whole batch; reuse cached vectors.

    Returns (memory id, chunks whose vector came from the cache) for each, in order."""
    if not items:
        return []
    now = pg.now_ms()
    ids = _memory_rows(c, items, now)
    chunks = [(mid, prep, ch) for mid, (prep, _) in zip(ids, items, strict=True) for ch in prep.chunks]
    if chunks:
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
    """Insert or update each memory's row; the chunks of those replaced are dropped. Returns their ids."""
    conn = c.conn
    project = c.project
    # Defensive: a path may have been indexed since the caller looked (one row per path, always).
    holders = dict(
        conn.execute(
            "SELECT path, id FROM memory_index WHERE project_id = %s AND path = ANY(%s)",
            (project, [str(prep.path) for prep, _ in items]),
        ).fetchall()
    )
    ids: list[int] = []
    replaced: list[int] = []
    for prep, memory_id in items:
        holder = holders.get(str(prep.path))
        if holder is not None and memory_id is None:
            memory_id = int(holder)
        elif holder is not None and holder != memory_id:
            delete_memories(c, [int(holder)])
        values = _values(prep, project, now)
        if memory_id is None:
            cols = ", ".join(values) + ", created_at"
            marks = ", ".join(f"%({k})s" for k in values) + ", %(indexed_at)s"
            row = conn.execute(
                f"INSERT INTO memory_index ({cols}) VALUES ({marks}) RETURNING id", values
            ).fetchone()
            assert row is not None
            memory_id = int(row[0])
        else:
            sets = ", ".join(f"{k} = %({k})s" for k in values)
            conn.execute(f"UPDATE memory_index SET {sets} WHERE id = %(id)s", {**values, "id": memory_id})
            replaced.append(memory_id)
        ids.append(memory_id)
    if replaced:
        _drop_chunks(c, "memory_id = ANY(%s)", (replaced,))
    return ids


def _insert_chunks(c: PgConn, chunks: list[tuple[int, Prepared, Any]]) -> None:
    """Insert every chunk of the batch in one statement, and their keyword terms."""
    counted = [
        terms.columns(
            (
                ch.text,
                ch.heading,
                " ; ".join(prep.parsed.trigger_phrases),
                " ".join(prep.parsed.tags),
                str(prep.rel),
            )
        )
        for _, prep, ch in chunks
    ]
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
    """Give these memories' chunks the cached vectors of their text; returns chunks reused by memory id."""
    return dict(
        c.conn.execute(
            f"WITH v AS (INSERT INTO {VEC_TABLE} (chunk_id, project_id, embedding) "
            "SELECT c.id, c.project_id, e.vector FROM memory_chunks c JOIN embedding_cache e "
            "ON e.model = %s AND e.text_hash = c.text_hash WHERE c.memory_id = ANY(%s) RETURNING chunk_id), "
            "u AS (UPDATE memory_chunks SET embedded = true WHERE id IN (SELECT chunk_id FROM v) "
            "RETURNING memory_id, text_hash), "
            "t AS (UPDATE embedding_cache SET used_at = %s WHERE model = %s AND text_hash IN "
            "(SELECT text_hash FROM u)) SELECT memory_id, count(*) FROM u GROUP BY 1",
            (vec_model, ids, now, vec_model),
        ).fetchall()
    )


def add_terms(c: PgConn, chunks: Iterable[tuple[int, tuple[dict[str, list[int]], int]]]) -> None:
    """Record the terms of new chunks and count them in the project's statistics (BM25's document frequencies,
    row count and total length)."""
    conn = c.conn
    project = c.project
    df: Counter[str] = Counter()
    rows = tokens = 0
    with conn.cursor().copy(
        "COPY chunk_terms (project_id, term, chunk_id, counts, length) FROM STDIN"
    ) as copy:
        for chunk_id, (counts, length) in chunks:
            rows += 1
            tokens += length
            for term, per_column in counts.items():
                copy.write_row((project, term, chunk_id, per_column, length))
                df[term] += 1
    _count_terms(c, df, rows, tokens)


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


def pending_count(c: PgConn) -> int:
    """Memories of the project whose embeddings are not all computed yet."""
    conn = c.conn
    project = c.project
    row = conn.execute(
        "SELECT count(*) FROM memory_index WHERE project_id = %s AND embedding_status = 'pending'", (project,)
    ).fetchone()
    return int(row[0]) if row else 0


# -- vectors ----------------------------------------------------------------------------------------------------


def has_vectors(c: PgConn) -> bool:
    conn = c.conn
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (VEC_TABLE,)).fetchone()
    return bool(row and row[0])


def ensure_vec_table(c: PgConn, model: str, dim: int) -> bool:
    """Make the vector table match the model (one model per database); on a change of model or dimension drop every
    vector. Returns True when the vectors were reset. Call inside write_tx."""
    conn = c.conn
    same = pg.get_config(conn, "model") == model and pg.get_config(conn, "dim") == str(dim)
    if same and has_vectors(c):
        return False
    conn.execute("SELECT pg_advisory_xact_lock(%s)", (pg.MIGRATE_KEY,))
    reset_vectors(c)
    conn.execute(
        f"CREATE TABLE {VEC_TABLE} (chunk_id BIGINT PRIMARY KEY REFERENCES memory_chunks(id) ON DELETE CASCADE, "
        f"project_id INTEGER NOT NULL, embedding vector({int(dim)}) NOT NULL)"
    )
    conn.execute(f"CREATE INDEX {VEC_TABLE}_project ON {VEC_TABLE} (project_id)")
    conn.execute(f"CREATE INDEX {VEC_TABLE}_hnsw ON {VEC_TABLE} USING hnsw (embedding vector_cosine_ops)")
    pg.set_config(conn, "model", model)
    pg.set_config(conn, "dim", str(dim))
    return True


def reset_vectors(c: PgConn) -> None:
    """Drop every vector and mark every memory for embedding again. Call inside write_tx."""
    conn = c.conn
    conn.execute(f"DROP TABLE IF EXISTS {VEC_TABLE}")
    conn.execute("DELETE FROM config WHERE key IN ('model', 'dim')")
    conn.execute("UPDATE memory_chunks SET embedded = false WHERE embedded")
    conn.execute("UPDATE memory_index SET embedding_status = 'pending' WHERE embedding_status = 'done'")


def vector_text(vector: Sequence[float]) -> str:
    """A vector as pgvector reads it ('[0.1,0.2,...]')."""
    return "[" + ",".join(map(repr, vector)) + "]"


def pending_chunks(c: PgConn, after: int, limit: int) -> list[tuple[int, str, str, str]]:
    """(chunk id, text hash, heading, text) of chunks of the project still waiting for a vector, by id after
    `after`."""
    conn = c.conn
    project = c.project
    rows = conn.execute(
        "SELECT id, text_hash, heading, text FROM memory_chunks WHERE project_id = %s AND NOT embedded AND id > %s "
        "ORDER BY id LIMIT %s",
        (project, after, limit),
    ).fetchall()
    return [(int(i), str(h), str(hd), str(t)) for i, h, hd, t in rows]


def store_vectors(c: PgConn, model: str, found: Sequence[tuple[int, str, Sequence[float]]]) -> None:
    """Store computed vectors (chunk id, text hash, vector) in the cache and for their chunks (those still there),
    and mark memories whose chunks all have one as done. Call inside write_tx."""
    conn = c.conn
    if not found:
        return
    now = pg.now_ms()
    ids = [cid for cid, _, _ in found]
    hashes = [h for _, h, _ in found]
    texts = [vector_text(v) for _, _, v in found]
    conn.execute(
        "INSERT INTO embedding_cache (model, text_hash, vector, used_at) "
        "SELECT DISTINCT ON (h) %s, h, v::vector, %s FROM unnest(%s::text[], %s::text[]) AS u(h, v) "
        "ON CONFLICT (model, text_hash) DO UPDATE SET used_at = excluded.used_at",
        (model, now, hashes, texts),
    )
    conn.execute(
        f"WITH v AS (INSERT INTO {VEC_TABLE} (chunk_id, project_id, embedding) "
        "SELECT c.id, c.project_id, u.v::vector FROM unnest(%s::bigint[], %s::text[]) AS u(id, v) "
        "JOIN memory_chunks c ON c.id = u.id AND NOT c.embedded ON CONFLICT (chunk_id) DO NOTHING RETURNING chunk_id) "
        "UPDATE memory_chunks SET embedded = true WHERE id IN (SELECT chunk_id FROM v)",
        (ids, texts),
    )
    conn.execute(
        "UPDATE memory_index m SET embedding_status = 'done' WHERE m.id IN "
        "(SELECT DISTINCT memory_id FROM memory_chunks WHERE id = ANY(%s)) AND embedding_status = 'pending' "
        "AND NOT EXISTS (SELECT 1 FROM memory_chunks c WHERE c.memory_id = m.id AND NOT c.embedded)",
        (ids,),
    )


def cached_vectors(c: PgConn, model: str, hashes: Sequence[str]) -> dict[str, str]:
    """text hash → cached vector (pgvector text) for those of these hashes the cache holds."""
    conn = c.conn
    rows = conn.execute(
        "SELECT text_hash, vector::text FROM embedding_cache WHERE model = %s AND text_hash = ANY(%s)",
        (model, list(hashes)),
    ).fetchall()
    return {str(h): str(v) for h, v in rows}
