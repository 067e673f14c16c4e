"""db.py's part of the storage seam for the PostgreSQL engine: write transactions, settings and the vector table,
for a `pg.PgConn`. Connections, migrations and projects are in indexer/pg.py, the write SQL in indexer/pg_store.py.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from specmem.indexer import pg
from specmem.indexer.pg import PgConn

VEC_TABLE = "vec_memories"

# Settings of the whole database (one schema, one embedding model); every other key belongs to a project.
SHARED_KEYS = ("schema_version", "model", "dim")


@contextmanager
def write_tx(c: PgConn) -> Iterator[PgConn]:
    """One write transaction of the project, serialised with its other writers (an advisory lock); its commit
    is announced to every reader with NOTIFY, as SQLite's writers replace `.db-updated`."""
    with pg.write_tx(c.conn, c.project):
        yield c
        pg.committed(c.conn, c.project)


def pending_count(c: PgConn) -> int:
    """Memories of the project whose embeddings are not all computed yet."""
    conn = c.conn
    project = c.project
    row = conn.execute(
        "SELECT count(*) FROM memory_index WHERE project_id = %s AND embedding_status = 'pending'", (project,)
    ).fetchone()
    return int(row[0]) if row else 0


def schema_version(c: PgConn) -> int:
    return pg.schema_version(c.conn)


def get_config(c: PgConn, key: str) -> str | None:
    if key in SHARED_KEYS:
        return pg.get_config(c.conn, key)
    row = c.conn.execute(
        "SELECT config::jsonb ->> %s FROM projects WHERE id = %s", (key, c.project)
    ).fetchone()
    return None if row is None or row[0] is None else str(row[0])


def set_config(c: PgConn, key: str, value: str) -> None:
    if key in SHARED_KEYS:
        pg.set_config(c.conn, key, value)
        return
    c.conn.execute(
        "UPDATE projects SET config = (config::jsonb || jsonb_build_object(%s::text, %s::text))::text WHERE id = %s",
        (key, value, c.project),
    )


def delete_config(c: PgConn, key: str) -> None:
    if key in SHARED_KEYS:
        c.conn.execute("DELETE FROM config WHERE key = %s", (key,))
        return
    c.conn.execute(
        "UPDATE projects SET config = (config::jsonb - %s::text)::text WHERE id = %s", (key, c.project)
    )


def config_items(c: PgConn, prefix: str) -> list[tuple[str, str]]:
    rows = c.conn.execute(
        "SELECT e.key, e.value FROM projects p, jsonb_each_text(p.config::jsonb) e "
        "WHERE p.id = %s AND starts_with(e.key, %s) ORDER BY e.key",
        (c.project, prefix),
    ).fetchall()
    return [(str(k), str(v)) for k, v in rows]


def has_table(c: PgConn, name: str) -> bool:
    row = c.conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def serve_only(c: PgConn, roots: Iterable[Path]) -> None:
    """Nothing to do: a PostgreSQL read sees its projects' rows only, and a scan of a project removes the rows
    of a root it no longer has."""


def ensure_vec_table(c: PgConn, model: str, dim: int) -> bool:
    """Make the vector table match the model (one model per database); on a change of model or dimension drop every
    vector. Returns True when the vectors were reset. Call inside write_tx."""
    conn = c.conn
    same = pg.get_config(conn, "model") == model and pg.get_config(conn, "dim") == str(dim)
    if same and has_table(c, VEC_TABLE):
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
