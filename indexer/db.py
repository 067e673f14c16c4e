"""Connections (apsw + sqlite-vec), append-only migrations, the config table and write transactions.

With indexer/store.py (the write SQL) and server/reads.py (the read SQL) this is the storage seam: the functions
marked `@engine_specific` are where another engine plugs in (specs/001-indexer/memory/storage-seam.md).
"""

from __future__ import annotations

import errno
import functools
import importlib.util
import os
import stat
import time
import uuid
from collections import namedtuple
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar, cast

import apsw

from specmem.indexer import atomic
from specmem.indexer.config import SIDE_FILES, Config, side_file, write_lock_of
from specmem.indexer.errors import DatabaseError, SpecmemError, StateFileError
from specmem.indexer.lock import FileLock

BUSY_TIMEOUT_MS = 15_000
MAX_ROWID = 2**63 - 1  # the largest id SQLite stores; a bigger number names no memory
CREATE_LOCK_TIMEOUT = 120.0
LOG_SUFFIXES = ("-wal", "-shm", "-journal")
INDEX_ID = "index_id"
WAL_SIZE_LIMIT = 4 * 1024 * 1024  # the -wal file is cut back to this after a checkpoint (and to 0 on close)
IGNORE_MARKER = "# specmem's index is derived from the memory files: never commit it\n*\n"
# BEGIN IMMEDIATE is retried this many times (each waiting up to the busy timeout) before a write gives up loudly.
WRITE_ATTEMPTS = 4

F = TypeVar("F", bound=Callable[..., Any])
Migration = Callable[[apsw.Connection], None]
MIGRATIONS: list[Migration] = []
# module name → function name → the dispatching function, for every function of the storage seam
SEAM: dict[str, dict[str, Any]] = {}


def engine_specific(fn: F) -> F:
    """Mark a function of the storage seam: its body is SQLite's, chosen for an apsw connection (its first
    argument); another engine registers its own for its connection type with `plug`. Callers keep the
    function's signature."""
    generic = functools.singledispatch(fn)
    SEAM.setdefault(fn.__module__, {})[fn.__name__] = generic
    return cast(F, generic)


def plug(seam: ModuleType, engine: ModuleType, connection: type) -> list[str]:
    """Use `engine`'s functions for connections of type `connection`, in place of those of `seam` (this module,
    store or reads) of the same name. Returns the seam's functions the engine does not define."""
    missing = []
    for name, generic in SEAM.get(seam.__name__, {}).items():
        own = getattr(engine, name, None)
        if own is None:
            missing.append(name)
        else:
            generic.register(connection, own)
    return missing


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


@migration
def m003_stat_identity(conn: apsw.Connection) -> None:
    # Existing rows get -1, which matches no file: each is hashed once at its next look, and nothing is rewritten.
    conn.execute(
        """
        ALTER TABLE memory_index ADD COLUMN ctime_ns INTEGER NOT NULL DEFAULT -1;
        ALTER TABLE memory_index ADD COLUMN inode INTEGER NOT NULL DEFAULT -1;
        """
    )


@migration
def m004_citations(conn: apsw.Connection) -> None:
    # Owned by indexer/citations.py (writes) and server/citations.py (reads). `span` is the baseline (JSON: start,
    # end, digest, lines kept, lines around it), NULL when there was none, and then span_status/span_note say
    # what to report; status..note are the state now. cited_files: the stat and hash of each cited file at its
    # last look (size -1: there was no file), so a rescan reads only the cited files whose stat changed.
    conn.execute(
        """
        CREATE TABLE citations (
            id INTEGER PRIMARY KEY,
            memory_id INTEGER NOT NULL REFERENCES memory_index(id) ON DELETE CASCADE,
            seq INTEGER NOT NULL,
            line INTEGER NOT NULL,
            target TEXT NOT NULL,
            path TEXT NOT NULL,
            file TEXT NOT NULL,
            start_line INTEGER,
            end_line INTEGER,
            baseline TEXT NOT NULL,
            baseline_at INTEGER NOT NULL,
            span TEXT,
            span_status TEXT,
            span_note TEXT,
            status TEXT NOT NULL,
            now_start INTEGER,
            now_end INTEGER,
            diff TEXT,
            note TEXT,
            checked_at INTEGER NOT NULL
        );
        CREATE INDEX citations_memory ON citations(memory_id);
        CREATE INDEX citations_file ON citations(file);
        CREATE INDEX citations_worktree ON citations(memory_id) WHERE baseline = 'worktree';
        CREATE TABLE cited_files (
            file TEXT PRIMARY KEY,
            size INTEGER NOT NULL,
            mtime_ns INTEGER NOT NULL,
            ctime_ns INTEGER NOT NULL,
            inode INTEGER NOT NULL,
            content_hash TEXT
        ) WITHOUT ROWID;
        """
    )


@migration
def m005_index_identity(conn: apsw.Connection) -> None:
    # A random id per index file: a server holding derived data (the vectors in memory) tells an index deleted and
    # built again (same chunk ids, other texts) from the one it loaded; file inodes are reused at once.
    set_config(conn, INDEX_ID, uuid.uuid4().hex)


def index_identity(conn: apsw.Connection) -> str | None:
    """The index's random identity (None for an index no writer has opened since identities were added)."""
    return get_config(conn, INDEX_ID)


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


def probe() -> tuple[str, bool]:
    """(sqlite-vec's version, whether SQLite has FTS5), from a connection in memory; raises what loading fails with."""
    conn = apsw.Connection(":memory:")
    try:
        _load_vec(conn)
        version = str(conn.execute("SELECT vec_version()").fetchall()[0][0])
        fts = bool(conn.execute("SELECT sqlite_compileoption_used('ENABLE_FTS5')").fetchall()[0][0])
    finally:
        conn.close()
    return version, fts


def connect(path: Path, *, readonly: bool = False) -> apsw.Connection:
    """Open the index with sqlite-vec loaded. A writer creates it and runs migrations; a reader never runs DDL."""
    path = Path(path)
    if readonly:
        if not path.exists():
            raise DatabaseError(f"no index at {path}; run `specmem scan` first")
        try:
            _own_files(path, create=False)
        except OSError as exc:
            raise DatabaseError(f"cannot open the index at {path}: {exc.strerror}") from exc
        except StateFileError as exc:
            raise StateFileError(f"cannot open the index at {path}: {exc}") from None
        flags = apsw.SQLITE_OPEN_READONLY
    else:
        try:
            _own_files(path, create=True)
            _owner_only(path)
        except StateFileError as exc:
            raise StateFileError(f"cannot create or open the index at {path}: {exc}") from None
        except OSError as exc:
            raise DatabaseError(
                f"cannot create {path}: {exc.strerror}; make {path.parent} writable, or set SPECMEM_DB or --db "
                "(reading needs no write access)"
            ) from exc
        _ignore_folder(path.parent)
        flags = apsw.SQLITE_OPEN_READWRITE | apsw.SQLITE_OPEN_CREATE
    conn: apsw.Connection | None = None
    try:
        conn = _open(path, flags) if not readonly else _open_reader(path)
        _load_vec(conn)
        if not readonly and conn.execute("PRAGMA journal_mode").fetchall()[0][0] != "wal":
            conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA foreign_keys=ON")
        if not readonly:
            _keep_log_files(conn)
            migrate(conn)
        elif schema_version(conn) == 0:
            conn.close()
            raise DatabaseError(f"the index at {path} is empty (it was never filled); run `specmem scan`")
    except apsw.Error as exc:
        advice = _advice(conn, exc) or str(exc)
        if conn is not None:
            conn.close()
        raise DatabaseError(f"cannot open the index at {path}: {advice}") from exc
    return conn


def open_writer(config: Config) -> apsw.Connection:
    """A writing connection to the configured index: SQLite's file, or with SPECMEM_DB=postgresql://… a
    connection bound to this project (a `PgConn`, which the storage seam takes where SQLite takes apsw's)."""
    if config.db_url:
        from specmem.indexer import pg

        return cast(apsw.Connection, pg.open_project(config.db_url, config.index_project))
    return connect(config.db_path)


def _open(name: Path | str, flags: int) -> apsw.Connection:
    conn = apsw.Connection(str(name), flags=flags | apsw.SQLITE_OPEN_NOFOLLOW)
    conn.setbusytimeout(BUSY_TIMEOUT_MS)  # before the first statement: a reader may meet a writer at once
    return conn


def _open_reader(path: Path) -> apsw.Connection:
    """A read-only connection, even where this process may not write (an index folder made read-only, or owned by
    another user). In WAL mode SQLite must create the `-shm` file beside the index before it can read; where it
    cannot, and there is no `-shm` (no writer has the index open), the file is read as immutable."""
    conn = _open(path, apsw.SQLITE_OPEN_READONLY)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchall()
        return conn
    except (apsw.ReadOnlyError, apsw.CantOpenError):
        conn.close()
        if os.path.exists(f"{path}-shm"):
            raise
    return _open(
        Path(f"{path.absolute().as_uri()}?immutable=1"), apsw.SQLITE_OPEN_READONLY | apsw.SQLITE_OPEN_URI
    )


def _own_files(path: Path, *, create: bool) -> None:
    """The index's folder is a real folder and the index, its log files and its side files (locks, signal,
    status, progress) are regular files, none of them a symlink (a repository may commit `.specmem -> ~/data` or
    `.specmem/index.db-write.lock -> ~/.bashrc`): StateFileError says what to remove, before anything is written. A `.specmem/` folder holds every memory's text: readable by its owner only (permissions
    are only ever taken away from group and others, never added: a folder its user made read-only stays so)."""
    with atomic.open_own_folder(path.parent, create=create) as folder:
        names = (
            path.name,
            *(f"{path.name}{s}" for s in LOG_SUFFIXES),
            *(side_file(path, s).name for s in SIDE_FILES),
        )
        for name in names:
            st = folder.lstat(name)
            if st is not None and stat.S_ISLNK(st.st_mode):
                raise StateFileError(atomic.own_link(path.parent / name))
            if st is not None and not stat.S_ISREG(st.st_mode):
                raise StateFileError(atomic.own_not_regular(path.parent / name, st))
        if create and path.parent.name == ".specmem" and folder.fd is not None:
            try:
                current = stat.S_IMODE(os.fstat(folder.fd).st_mode)
                if current & 0o077:
                    os.fchmod(folder.fd, current & 0o700)
            except OSError:
                pass  # not ours to change (another user's folder)


def _owner_only(path: Path) -> None:
    """Create the index if it is missing or was cut short in place (its file is made readable by its owner
    only)."""
    if path.exists() and cut_short(path):
        discard_cut_short(path)
    if not path.exists():
        _create(path)


def _create(path: Path) -> None:
    """Create the index: migrated under a temporary name, then linked into place, so that no process ever opens
    a half-made index (a creation killed half-way leaves nothing). The -wal and -shm files of a deleted index
    are removed first: a new database must never take another's log for its own. Under the write lock."""
    with FileLock(write_lock_of(path), "create") as lock:
        lock.acquire(CREATE_LOCK_TIMEOUT)
        if path.exists():
            return
        for stale in (*path.parent.glob(f".{path.name}.*.new*"), *(Path(f"{path}{s}") for s in LOG_SUFFIXES)):
            stale.unlink(missing_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.new")
        conn: apsw.Connection | None = None
        try:
            os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
            conn = apsw.Connection(str(tmp))
            _load_vec(conn)  # as every connection: a migration may use it
            conn.execute("PRAGMA journal_mode=WAL")
            migrate(conn)
            conn.close()
            os.link(tmp, path)
        except (OSError, apsw.Error, DatabaseError) as exc:
            why = (
                atomic.describe(exc, path, "create the index")
                if isinstance(exc, OSError)
                else f"cannot create the index at {path}: {_advice(conn, exc) or exc}"
            )
            if conn is not None:
                conn.close()
            raise DatabaseError(why) from exc
        finally:
            for made in (tmp, *(Path(f"{tmp}{s}") for s in LOG_SUFFIXES)):
                made.unlink(missing_ok=True)


def _keep_log_files(conn: apsw.Connection) -> None:
    """Closing never deletes the -wal and -shm files by name (they are truncated instead): should the index be
    deleted and created anew while this connection is open, its close must not delete the new index's log."""
    import ctypes  # writers only: a reader never sets it

    flag = ctypes.c_int(1)
    conn.file_control("main", apsw.SQLITE_FCNTL_PERSIST_WAL, ctypes.addressof(flag))
    conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")


def file_id(path: Path) -> tuple[int, int] | None:
    """(device, inode) of the file at `path`, or None when there is none: a deleted or replaced index shows."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


SQLITE_HEADER = b"SQLite format 3\x00"


def cut_short(path: Path) -> bool:
    """Whether the index file is there but no longer starts with SQLite's header: cut in place (`: > index.db`,
    `truncate -s 0`). A connection still open on it would go on committing into its log, seen by no reader."""
    try:
        fd = atomic.open_own_file(path)
    except (OSError, SpecmemError):
        return False
    try:
        return os.pread(fd, len(SQLITE_HEADER), 0) != SQLITE_HEADER
    except OSError:
        return False
    finally:
        os.close(fd)


def discard_cut_short(path: Path) -> bool:
    """Remove an index cut short in place, so that the next connection creates it anew (with fresh -wal and -shm
    files: the old log must never be applied to an empty file). Under the write lock; True if it was removed."""
    with FileLock(write_lock_of(path), "create") as lock:
        lock.acquire(CREATE_LOCK_TIMEOUT)
        if not cut_short(path):
            return False
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise DatabaseError(atomic.describe(exc, path, "remove the damaged index")) from exc
        return True


def _ignore_folder(folder: Path) -> None:
    """A `.specmem/` folder inside a project carries its own `.gitignore` so the index is never committed."""
    marker = folder / ".gitignore"
    if folder.name == ".specmem" and not marker.exists():
        try:
            # Durable: an empty file left by a crash would let git commit the index.
            atomic.write_own_file(marker, IGNORE_MARKER.encode(), durable=True)
        except SpecmemError:
            pass


# Failures of the disk or of the file, not of specmem: each becomes one line saying what to do.
_STORAGE_ADVICE: dict[type[apsw.Error], str] = {
    apsw.FullError: atomic.DISK_FULL,
    apsw.ReadOnlyError: "it cannot be written here (read-only); check its permissions, or set SPECMEM_DB",
    apsw.PermissionsError: "permission denied; check the permissions of the file and its folder",
    apsw.IOError: "the disk reported an I/O error; check the disk",
    apsw.CantOpenError: "the file cannot be opened; check that its folder exists and is writable",
    apsw.CorruptError: "it is damaged; delete it (with its -wal and -shm files): `specmem scan` rebuilds it",
    apsw.NotADBError: "it is not a specmem index; delete it or set SPECMEM_DB to another file",
}


def _advice(conn: apsw.Connection | None, exc: BaseException) -> str | None:
    if isinstance(exc, apsw.Error) and conn is not None and conn.system_errno in (errno.ENOSPC, errno.EDQUOT):
        return _STORAGE_ADVICE[apsw.FullError]  # e.g. a disk I/O error growing the -shm file of a full disk
    return next((text for kind, text in _STORAGE_ADVICE.items() if isinstance(exc, kind)), None)


def storage_error(conn: apsw.Connection, exc: BaseException) -> DatabaseError | None:
    """The DatabaseError for an SQLite failure of the disk or the file; None for anything else (a bug)."""
    advice = _advice(conn, exc)
    return None if advice is None else DatabaseError(f"cannot write the index at {conn.filename}: {advice}")


@engine_specific
@contextmanager
def write_tx(conn: apsw.Connection) -> Iterator[apsw.Connection]:
    """One short write transaction (BEGIN IMMEDIATE), retried while another writer holds the lock. A full or
    failing disk raises DatabaseError (the transaction rolled back)."""
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
        except apsw.Error as exc:
            failure = storage_error(conn, exc)
            if failure is None:
                raise
            raise failure from exc
    try:
        yield conn
        conn.execute("COMMIT")
    except BaseException as exc:
        if conn.in_transaction:  # SQLite may already have rolled back (a full disk does)
            try:
                conn.execute("ROLLBACK")
            except apsw.Error:
                pass  # the original error says what went wrong
        failure = storage_error(conn, exc)
        if failure is None:
            raise
        raise failure from exc


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


@engine_specific
def schema_version(conn: apsw.Connection) -> int:
    return int(get_config(conn, "schema_version") or 0)


@engine_specific
def get_config(conn: apsw.Connection, key: str) -> str | None:
    try:
        rows = conn.execute("SELECT value FROM config WHERE key = ?", (key,)).fetchall()
    except apsw.SQLError:
        return None
    return str(rows[0][0]) if rows else None


@engine_specific
def set_config(conn: apsw.Connection, key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO config (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


@engine_specific
def delete_config(conn: apsw.Connection, key: str) -> None:
    conn.execute("DELETE FROM config WHERE key = ?", (key,))


@engine_specific
def config_items(conn: apsw.Connection, prefix: str) -> list[tuple[str, str]]:
    """(key, value) of the config entries whose key starts with `prefix`."""
    rows = conn.execute("SELECT key, value FROM config WHERE substr(key, 1, ?) = ?", (len(prefix), prefix))
    return cast(list[tuple[str, str]], rows.fetchall())


@engine_specific
def has_table(conn: apsw.Connection, name: str) -> bool:
    return bool(conn.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (name,)).fetchall())


@engine_specific
def pending_count(conn: apsw.Connection) -> int:
    """Memories whose embeddings are not all computed yet (the writer reports it, searches show it)."""
    return int(scalar(conn, "SELECT count(*) FROM memory_index WHERE embedding_status = 'pending'"))


@engine_specific
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


@engine_specific
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


def scalar(conn: apsw.Connection, sql: str, args: Sequence[Any] = ()) -> Any:
    """The first column of the first row (e.g. a count)."""
    return conn.execute(sql, args).fetchall()[0][0]


def under(column: str, folders: Iterable[Path]) -> str:
    """SQL that is true when `column` (a path) is one of `folders` (a root that is one file, such as CLAUDE.md)
    or lies below one: a range on the path's index. The folders are written into the SQL as quoted literals, so
    that the clause can also define a view."""
    ranges = []
    for folder in folders:
        prefix = str(folder) if str(folder).endswith(os.sep) else f"{folder}{os.sep}"
        low, high = _quoted(prefix), _quoted(prefix[:-1] + chr(ord(os.sep) + 1))
        ranges.append(f"({column} = {_quoted(str(folder))} OR ({column} > {low} AND {column} < {high}))")
    return "(" + (" OR ".join(ranges) or "0") + ")"


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@engine_specific
def serve_only(conn: apsw.Connection, roots: Iterable[Path]) -> None:
    """Make a reading connection see only the memories under `roots`: a temporary view named `memory_index`,
    which every unqualified query (and join) reads instead of the table. Rows left by a root that is no longer
    configured are then served by no tool; the next full scan removes them. Nothing is written to the file."""
    conn.execute(
        "DROP VIEW IF EXISTS temp.memory_index; CREATE TEMP VIEW memory_index AS "
        f"SELECT * FROM main.memory_index WHERE {under('path', roots)}"
    )


def now_ms() -> int:
    return time.time_ns() // 1_000_000
