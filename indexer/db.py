"""Connections (apsw + sqlite-vec), append-only migrations, the config table and write transactions."""

from __future__ import annotations

import importlib.util
import os
import time
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import apsw

from specmem.indexer.errors import DatabaseError

BUSY_TIMEOUT_MS = 15_000
IGNORE_MARKER = "# specmem's index is derived from the memory files: never commit it\n*\n"
# BEGIN IMMEDIATE is retried this many times (each waiting up to the busy timeout) before a write gives up loudly.
WRITE_ATTEMPTS = 4

Migration = Callable[[apsw.Connection], None]
MIGRATIONS: list[Migration] = []


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE memory_index (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            path TEXT NOT NULL UNIQUE,
            root TEXT NOT NULL,
            rel_path TEXT NOT NULL,
            spec_folder TEXT NOT NULL,
            title TEXT NOT NULL,
            importance_tier TEXT NOT NULL DEFAULT 'normal',
            context_type TEXT,
            trigger_phrases TEXT NOT NULL DEFAULT '[]',
            tags TEXT NOT NULL DEFAULT '[]',
            expires TEXT,
            anchors TEXT NOT NULL DEFAULT '[]',
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            content_hash TEXT NOT NULL,
            line_count INTEGER NOT NULL DEFAULT 0,
            warnings TEXT NOT NULL DEFAULT '[]',
            embedding_status TEXT NOT NULL DEFAULT 'pending',
            confidence REAL NOT NULL DEFAULT 0.5,
            access_count INTEGER NOT NULL DEFAULT 0,
            created_at INTEGER NOT NULL,
            updated_at INTEGER NOT NULL,
            indexed_at INTEGER NOT NULL
        );
        CREATE INDEX memory_index_hash ON memory_index(content_hash);
        CREATE INDEX memory_index_folder ON memory_index(spec_folder);
        CREATE INDEX memory_index_tier ON memory_index(importance_tier);
        CREATE INDEX memory_index_embedding ON memory_index(embedding_status);
        CREATE TABLE memory_chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            memory_id INTEGER NOT NULL REFERENCES memory_index(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            heading TEXT NOT NULL,
            anchor TEXT,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            embedded INTEGER NOT NULL DEFAULT 0
        );
        CREATE INDEX memory_chunks_memory ON memory_chunks(memory_id);
        CREATE INDEX memory_chunks_pending ON memory_chunks(id) WHERE embedded = 0;
        CREATE INDEX memory_chunks_hash ON memory_chunks(text_hash);
        CREATE VIRTUAL TABLE memory_fts USING fts5(
            text, title, triggers, tags, path,
            tokenize = 'porter unicode61 remove_diacritics 2'
        );
        CREATE TABLE embedding_cache (
            model TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            vector BLOB NOT NULL,
            used_at INTEGER NOT NULL,
            PRIMARY KEY (model, text_hash)
        ) WITHOUT ROWID;
        """
    )


@migration
def m002_checkpoints(conn: apsw.Connection) -> None:
    conn.execute(
        """
        CREATE TABLE checkpoints (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            created_at INTEGER NOT NULL,
            scope TEXT,
            git_branch TEXT,
            git_commit TEXT,
            file_count INTEGER NOT NULL,
            size_bytes INTEGER NOT NULL,
            automatic INTEGER NOT NULL DEFAULT 0,
            data BLOB NOT NULL
        );
        """
    )


def vec_extension_path() -> str:
    """The sqlite-vec extension bundled with the sqlite-vec package, found without importing the package (its
    import pulls in numpy and sqlite3, a third of a second on every CLI command)."""
    spec = importlib.util.find_spec("sqlite_vec")
    if spec is None or not spec.submodule_search_locations:
        raise DatabaseError("the sqlite-vec package is not installed; pip install sqlite-vec")
    return os.path.join(next(iter(spec.submodule_search_locations)), "vec0")


def _load_vec(conn: apsw.Connection) -> None:
    conn.enable_load_extension(True)
    conn.load_extension(vec_extension_path())
    conn.enable_load_extension(False)


def connect(path: Path, *, readonly: bool = False) -> apsw.Connection:
    """Open the index with sqlite-vec loaded. A writer creates it and runs migrations; a reader never runs DDL."""
    path = Path(path)
    if readonly:
        if not path.exists():
            raise DatabaseError(f"no index at {path}; run `specmem scan` first")
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseError(
                f"cannot create {path.parent}: {exc.strerror}; set SPECMEM_DB or --db"
            ) from exc
        _ignore_folder(path.parent)
        _owner_only(path)
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    try:
        conn = apsw.Connection(str(path), flags=flags)
        conn.setbusytimeout(BUSY_TIMEOUT_MS)
        _load_vec(conn)
        if not readonly and conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            migrate(conn)
    except apsw.Error as exc:
        raise DatabaseError(f"cannot open the index at {path}: {exc}") from exc
    return conn


def _owner_only(path: Path) -> None:
    """The index holds every memory's text (and the checkpoints): readable by its owner only."""
    if not path.exists():
        fd = os.open(path, os.O_CREAT | os.O_WRONLY, 0o600)
        os.close(fd)
    if path.parent.name == ".specmem":
        try:
            os.chmod(path.parent, 0o700)
        except OSError:
            pass


def _ignore_folder(folder: Path) -> None:
    """A `.specmem/` folder inside a project carries its own `.gitignore` so the index is never committed."""
    marker = folder / ".gitignore"
    if folder.name == ".specmem" and not marker.exists():
        try:
            marker.write_text(IGNORE_MARKER)
        except OSError:
            pass


@contextmanager
def write_tx(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """One short write transaction (BEGIN IMMEDIATE), retried while another writer holds the lock."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            conn.execute("BEGIN IMMEDIATE")
            break
        except apsw.BusyError:
            if attempt == WRITE_ATTEMPTS - 1:
                raise DatabaseError(
                    f"the index stayed locked by another writer for {WRITE_ATTEMPTS * BUSY_TIMEOUT_MS // 1000} s; "
                    "check for a stuck specmem process (`specmem stats` shows the watcher)"
                ) from None
            time.sleep(0.05)
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    else:
        conn.execute("COMMIT")


def migrate(conn: apsw.Connection) -> None:
    """Apply pending migrations, each with its record in one transaction."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at INTEGER NOT NULL)"
    )
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        with write_tx(conn):
            # Another process may have applied it while we waited for the lock.
            if conn.execute("SELECT 1 FROM _migrations WHERE name = ?", (fn.__name__,)).fetchall():
                continue
            fn(conn)
            conn.execute("INSERT INTO _migrations (name, applied_at) VALUES (?, ?)", (fn.__name__, now_ms()))
            set_config(conn, "schema_version", str(len(MIGRATIONS)))


def schema_version(conn: apsw.Connection) -> int:
    return int(get_config(conn, "schema_version") or 0)


def get_config(conn: apsw.Connection, key: str) -> str | None:
    try:
        rows = conn.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchall()
    except apsw.SQLError:
        return None
    return str(rows[0][0]) if rows else None


def set_config(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def has_table(conn: apsw.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchall())


def ensure_vec_table(conn: apsw.Connection, model: str, dim: int) -> bool:
    """Make `vec_memories` match the model; on a change of model or dimension drop every vector.

    Returns True when the vectors were reset (every memory needs embedding again). Call inside write_tx.
    """
    same = get_config(conn, "model") == model and get_config(conn, "dim") == str(dim)
    if same and has_table(conn, "vec_memories"):
        return False
    reset_vectors(conn)
    conn.execute(
        f"CREATE VIRTUAL TABLE vec_memories USING vec0("
        f"chunk_id INTEGER PRIMARY KEY, embedding float[{int(dim)}] distance_metric=cosine)"
    )
    set_config(conn, "model", model)
    set_config(conn, "dim", str(dim))
    return True


def reset_vectors(conn: apsw.Connection) -> None:
    """Drop every vector and mark every memory for embedding again. Call inside write_tx."""
    conn.execute("DROP TABLE IF EXISTS vec_memories")
    conn.execute("DELETE FROM config WHERE key IN ('model', 'dim')")
    conn.execute("UPDATE memory_chunks SET embedded = 0")
    conn.execute("UPDATE memory_index SET embedding_status = 'pending' WHERE embedding_status != 'none'")


_ROW_TYPES: dict[tuple[str, ...], Any] = {}


def _named(cursor: apsw.Cursor, values: apsw.SQLiteValues) -> Any:
    names = tuple(d[0] for d in cursor.get_description())
    row_type = _ROW_TYPES.get(names)
    if row_type is None:
        row_type = _ROW_TYPES.setdefault(names, namedtuple("Row", names, rename=True))
    return row_type._make(values)


def rows(conn: apsw.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[Any]:
    """The result rows as named tuples (`row.title`, never `row[3]`)."""
    cursor = conn.cursor()
    cursor.row_trace = _named
    return cursor.execute(sql, args).fetchall()


def one(conn: apsw.Connection, sql: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> Any | None:
    """The first result row as a named tuple, or None."""
    found = rows(conn, sql, args)
    return found[0] if found else None


def scalar(conn: apsw.Connection, sql: str, args: Sequence[Any] = ()) -> Any:
    """The first column of the first row (e.g. a count)."""
    return conn.execute(sql, args).fetchall()[0][0]


def now_ms() -> int:
    return time.time_ns() // 1_000_000
