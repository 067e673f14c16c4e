"""The PostgreSQL engine's base: connections (pooled per URL), append-only migrations, the config table, write
transactions, projects, the change signal (NOTIFY/LISTEN) and the per-project locks (advisory locks).

Selected by a `postgresql://` URL in SPECMEM_DB (specs/001-indexer/memory/postgres-engine.md). The files stay the
source of truth: every row here is derived from them and a scan rebuilds it. psycopg is imported by the first
function that needs it, so SQLite users never pay for it.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from specmem.indexer.errors import DatabaseError

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

log = logging.getLogger("specmem.pg")
SCHEMES = ("postgresql://", "postgres://")
CHANNEL = "specmem"  # NOTIFY channel: the payload is "<project id>:<generation>"
POOL_MAX = 8
CONNECT_TIMEOUT = 10  # seconds: a database that does not answer is an error, not a hang
# Advisory lock keys (two int4 form): a class per purpose, the project id as the object.
MIGRATE_KEY = 0x5E3E0000
WATCHER_CLASS = 0x5E3E0001
WRITER_CLASS = 0x5E3E0002

Migration = Callable[["psycopg.Connection[Any]"], None]
MIGRATIONS: list[Migration] = []


def is_url(text: str | None) -> bool:
    """Whether a database setting names PostgreSQL (a URL) rather than an SQLite file."""
    return bool(text) and str(text).startswith(SCHEMES)


def redacted(url: str) -> str:
    """The URL without its password, for messages and `specmem paths`."""
    head, sep, tail = url.partition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, user = head.partition("//")
    return f"{scheme}//{user.split(':', 1)[0]}:***@{tail}"


def unreachable(url: str, exc: BaseException) -> DatabaseError:
    """The one error for a database that cannot be reached: what failed, and that nothing is lost."""
    reason = " ".join(str(exc).split()) or type(exc).__name__
    return DatabaseError(
        f"cannot reach PostgreSQL at {redacted(url)}: {reason}; check that it runs and accepts connections. "
        "Nothing is lost: the memory files are on disk and the next scan brings the index up to date"
    )


@dataclass(frozen=True)
class PgConn:
    """A PostgreSQL connection bound to projects: what the engine's functions take where SQLite's take an apsw
    connection (the storage seam dispatches on this type). Writes go to the first project; reads see them all."""

    conn: psycopg.Connection[Any]
    projects: tuple[int, ...]

    @property
    def project(self) -> int:
        return self.projects[0]

    def close(self) -> None:
        self.conn.close()


def migration(fn: Migration) -> Migration:
    MIGRATIONS.append(fn)
    return fn


@migration
def m001_initial(conn: psycopg.Connection[Any]) -> None:
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    conn.execute(
        """
        CREATE TABLE config (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE projects (
            id SERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            created_at BIGINT NOT NULL,
            indexed_at BIGINT,
            generation BIGINT NOT NULL DEFAULT 0,
            chunks BIGINT NOT NULL DEFAULT 0,   -- BM25: rows and tokens of this project's keyword index
            tokens BIGINT NOT NULL DEFAULT 0,
            config TEXT NOT NULL DEFAULT '{}'  -- per-project keys (index_format, unfinished writes, ...)
        );
        CREATE TABLE memory_index (
            id BIGSERIAL PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            path TEXT NOT NULL,
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
            size BIGINT NOT NULL,
            mtime_ns BIGINT NOT NULL,
            ctime_ns BIGINT NOT NULL DEFAULT -1,
            inode NUMERIC NOT NULL DEFAULT -1,
            content_hash TEXT NOT NULL,
            line_count INTEGER NOT NULL DEFAULT 0,
            warnings TEXT NOT NULL DEFAULT '[]',
            embedding_status TEXT NOT NULL DEFAULT 'pending',
            confidence DOUBLE PRECISION NOT NULL DEFAULT 0.5,
            access_count INTEGER NOT NULL DEFAULT 0,
            created_at BIGINT NOT NULL,
            updated_at BIGINT NOT NULL,
            indexed_at BIGINT NOT NULL,
            UNIQUE (project_id, path)
        );
        CREATE INDEX memory_index_path ON memory_index (path text_pattern_ops);
        CREATE INDEX memory_index_hash ON memory_index (project_id, content_hash);
        CREATE INDEX memory_index_folder ON memory_index (project_id, spec_folder);
        CREATE INDEX memory_index_tier ON memory_index (project_id, importance_tier);
        CREATE INDEX memory_index_pending ON memory_index (project_id) WHERE embedding_status = 'pending';
        CREATE TABLE memory_chunks (
            id BIGSERIAL PRIMARY KEY,
            memory_id BIGINT NOT NULL REFERENCES memory_index(id) ON DELETE CASCADE,
            project_id INTEGER NOT NULL,
            seq INTEGER NOT NULL,
            heading TEXT NOT NULL,
            anchor TEXT,
            start_line INTEGER NOT NULL,
            end_line INTEGER NOT NULL,
            text TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            length INTEGER NOT NULL DEFAULT 0,  -- tokens over every keyword column (BM25's |D|)
            embedded BOOLEAN NOT NULL DEFAULT false
        );
        CREATE INDEX memory_chunks_memory ON memory_chunks (memory_id);
        CREATE INDEX memory_chunks_pending ON memory_chunks (project_id, id) WHERE NOT embedded;
        CREATE INDEX memory_chunks_hash ON memory_chunks (text_hash);
        -- The keyword index: one row per (chunk, term) with the term's count in each keyword column
        -- (indexer/terms.py COLUMNS), and per project the number of chunks holding each term.
        CREATE TABLE chunk_terms (
            project_id INTEGER NOT NULL,
            term TEXT NOT NULL,
            chunk_id BIGINT NOT NULL,  -- removed with its chunk by indexer/pg_store.py
            counts SMALLINT[] NOT NULL,
            length INTEGER NOT NULL,
            PRIMARY KEY (project_id, term, chunk_id)
        );
        CREATE INDEX chunk_terms_chunk ON chunk_terms (chunk_id);
        CREATE TABLE term_stats (
            project_id INTEGER NOT NULL,
            term TEXT NOT NULL,
            chunks BIGINT NOT NULL,
            PRIMARY KEY (project_id, term)
        );
        CREATE TABLE embedding_cache (
            model TEXT NOT NULL,
            text_hash TEXT NOT NULL,
            vector vector NOT NULL,
            used_at BIGINT NOT NULL,
            PRIMARY KEY (model, text_hash)
        );
        CREATE TABLE checkpoints (
            id BIGSERIAL PRIMARY KEY,
            project_id INTEGER NOT NULL REFERENCES projects(id),
            name TEXT NOT NULL,
            created_at BIGINT NOT NULL,
            scope TEXT,
            git_branch TEXT,
            git_commit TEXT,
            file_count INTEGER NOT NULL,
            size_bytes BIGINT NOT NULL,
            automatic INTEGER NOT NULL DEFAULT 0,
            data BYTEA NOT NULL,
            UNIQUE (project_id, name)
        );
        """
    )


def _psycopg() -> Any:
    try:
        import psycopg
    except ImportError:
        raise DatabaseError(
            "SPECMEM_DB names PostgreSQL, but psycopg is not installed; pip install 'specmem-mcp[postgres]'"
        ) from None
    return psycopg


_POOLS: dict[str, ConnectionPool] = {}
_POOLS_LOCK = threading.Lock()


def connection_args() -> dict[str, Any]:
    """What every connection is opened with: autocommit (transactions are explicit), a connect timeout, and TCP
    keepalives, so that a dead peer (and the advisory locks its session held) is noticed within a minute."""
    return {
        "autocommit": True,
        "connect_timeout": CONNECT_TIMEOUT,
        "keepalives": 1,
        "keepalives_idle": 20,
        "keepalives_interval": 10,
        "keepalives_count": 3,
        "application_name": "specmem",
    }


def connect(url: str, *, migrate_schema: bool = True) -> psycopg.Connection[Any]:
    """A connection of its own (a writer's, a lock holder's, a listener's); writers apply pending migrations."""
    psycopg = _psycopg()
    try:
        conn = psycopg.connect(url, **connection_args())
    except psycopg.Error as exc:
        raise unreachable(url, exc) from exc
    if migrate_schema:
        try:
            migrate(conn)
        except BaseException:
            conn.close()
            raise
    return conn


def open_project(url: str, name: str, *, write: bool = True, also: list[str] | None = None) -> PgConn:
    """A connection to the index at `url` bound to the project `name` (a writer applies migrations and makes the
    project on first use; a reader of a project never scanned gets DatabaseError). `also`: more projects a read
    may see (their names; None: just this one, ["*"]: every project). Puts the engine behind the storage seam."""
    from specmem.indexer import pg_store

    pg_store.plug()
    conn = connect(url, migrate_schema=write)
    try:
        if write:
            with write_tx(conn):
                own = project_id(conn, name)
        else:
            if schema_version(conn) == 0:
                raise DatabaseError(f"the index at {redacted(url)} is empty; run `specmem scan` first")
            own = project_id(conn, name, create=False)
            if own is None and also is None:
                raise DatabaseError(
                    f"project {name!r} is not in the index at {redacted(url)}; run `specmem scan` in it first"
                )
        ids = [] if own is None else [own]
        if also is not None:
            ids += [i for i in project_ids(conn, None if "*" in also else also).values() if i not in ids]
        assert ids or not write
        return PgConn(conn, tuple(ids) or (-1,))
    except BaseException:
        conn.close()
        raise


def alive(conn: psycopg.Connection[Any]) -> bool:
    """Whether the connection answers a query now."""
    try:
        conn.execute("SELECT 1")
    except Exception:  # noqa: BLE001 - any failure of a connection means it is not usable
        return False
    return True


def pool(url: str, max_size: int = POOL_MAX) -> ConnectionPool:
    """This process's pool of reading connections to `url` (made on first use, checked before each lend)."""
    with _POOLS_LOCK:
        found = _POOLS.get(url)
        if found is None:
            _psycopg()
            from psycopg_pool import ConnectionPool

            found = ConnectionPool(
                url,
                min_size=1,
                max_size=max_size,
                kwargs=connection_args(),
                check=ConnectionPool.check_connection,
                open=True,
                timeout=CONNECT_TIMEOUT,
                name="specmem",
            )
            _POOLS[url] = found
    return found


@contextmanager
def reading(url: str) -> Iterator[psycopg.Connection[Any]]:
    """A pooled connection for one read; a database that cannot be reached raises DatabaseError."""
    psycopg = _psycopg()
    from psycopg_pool import PoolTimeout

    try:
        with pool(url).connection() as conn:
            yield conn
    except (psycopg.OperationalError, PoolTimeout) as exc:
        raise unreachable(url, exc) from exc


def close_pools() -> None:
    with _POOLS_LOCK:
        for found in _POOLS.values():
            found.close()
        _POOLS.clear()


@contextmanager
def write_tx(
    conn: psycopg.Connection[Any], project_id: int | None = None
) -> Iterator[psycopg.Connection[Any]]:
    """One write transaction; with `project_id`, writers of that project are serialised (an advisory lock held
    to the commit), as BEGIN IMMEDIATE does on SQLite. A lost connection raises DatabaseError."""
    psycopg = _psycopg()
    try:
        with conn.transaction():
            if project_id is not None:
                conn.execute("SELECT pg_advisory_xact_lock(%s, %s)", (WRITER_CLASS, project_id))
            yield conn
    except psycopg.OperationalError as exc:
        raise unreachable(_url_of(conn), exc) from exc


def _url_of(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return f"postgresql://{info.user}@{info.host}:{info.port}/{info.dbname}"


def migrate(conn: psycopg.Connection[Any]) -> None:
    """Apply pending migrations, each with its record in one transaction; concurrent writers take turns."""
    psycopg = _psycopg()
    try:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS _migrations (name TEXT PRIMARY KEY, applied_at BIGINT NOT NULL)"
        )
    except psycopg.errors.UniqueViolation:
        pass  # another process created it at the same moment
    except psycopg.errors.InsufficientPrivilege as exc:
        raise DatabaseError(f"cannot create specmem's tables: {exc}; grant CREATE on the database") from exc
    done = {row[0] for row in conn.execute("SELECT name FROM _migrations")}
    for fn in MIGRATIONS:
        if fn.__name__ in done:
            continue
        try:
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATE_KEY,))
                if conn.execute("SELECT 1 FROM _migrations WHERE name = %s", (fn.__name__,)).fetchone():
                    continue
                fn(conn)
                conn.execute(
                    "INSERT INTO _migrations (name, applied_at) VALUES (%s, %s)", (fn.__name__, now_ms())
                )
                set_config(conn, "schema_version", str(len(MIGRATIONS)))
        except psycopg.errors.FeatureNotSupported as exc:
            raise DatabaseError(f"cannot migrate the index: {exc}") from exc
        except psycopg.errors.UndefinedFile as exc:
            raise DatabaseError(
                f"the pgvector extension is not installed on this PostgreSQL server ({exc}); install it "
                "(https://github.com/pgvector/pgvector#installation) and run `specmem scan` again"
            ) from exc


def schema_version(conn: psycopg.Connection[Any]) -> int:
    return int(get_config(conn, "schema_version") or 0)


_MIGRATED: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()  # connections that saw the tables


def get_config(conn: psycopg.Connection[Any], key: str) -> str | None:
    if conn not in _MIGRATED:  # once per connection: the tables, once made, stay
        made = conn.execute("SELECT to_regclass('config') IS NOT NULL").fetchone()
        if not (made and made[0]):
            return None  # an empty database (a reader never creates the tables)
        _MIGRATED.add(conn)
    row = conn.execute("SELECT value FROM config WHERE key = %s", (key,)).fetchone()
    return None if row is None else str(row[0])


def set_config(conn: psycopg.Connection[Any], key: str, value: str) -> None:
    conn.execute(
        "INSERT INTO config (key, value) VALUES (%s, %s) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


def project_id(conn: psycopg.Connection[Any], name: str, *, create: bool = True) -> int | None:
    """The id of the named project, made on first use (by a writer)."""
    row = conn.execute("SELECT id FROM projects WHERE name = %s", (name,)).fetchone()
    if row is not None or not create:
        return None if row is None else int(row[0])
    row = conn.execute(
        "INSERT INTO projects (name, created_at) VALUES (%s, %s) ON CONFLICT (name) DO UPDATE SET name = excluded.name "
        "RETURNING id",
        (name, now_ms()),
    ).fetchone()
    assert row is not None
    return int(row[0])


def project_ids(conn: psycopg.Connection[Any], names: list[str] | None) -> dict[str, int]:
    """name → id of these projects (all of them when `names` is None); unknown names are left out."""
    if names is None:
        rows = conn.execute("SELECT name, id FROM projects ORDER BY name").fetchall()
    else:
        rows = conn.execute(
            "SELECT name, id FROM projects WHERE name = ANY(%s) ORDER BY name", (names,)
        ).fetchall()
    return {str(name): int(pid) for name, pid in rows}


# -- the change signal --------------------------------------------------------------------------------------------


def committed(conn: psycopg.Connection[Any], project: int) -> None:
    """Inside a write transaction: count one more change of the project and announce it at the commit (NOTIFY is
    delivered only if the transaction commits), as `.db-updated` is replaced after an SQLite commit."""
    conn.execute(
        "WITH g AS (UPDATE projects SET generation = generation + 1, indexed_at = %s WHERE id = %s "
        "RETURNING id, generation) SELECT pg_notify(%s, g.id || ':' || g.generation) FROM g",
        (now_ms(), project, CHANNEL),
    )


class Listener:
    """LISTENs on its own connection in a thread and counts what it hears. `stamp()` is the read side's
    `.db-updated`: it changes whenever any writer on any machine committed, and also when the listening connection
    was lost and made again (notices may have been missed meanwhile), so a reader then reloads."""

    def __init__(self, url: str, *, retry: float = 1.0) -> None:
        self.url = url
        self.retry = retry
        self.heard = 0
        self.connected = threading.Event()
        self._stop = threading.Event()
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="specmem-listen", daemon=True)
        self._thread.start()

    def stamp(self) -> int:
        return self.heard

    def _run(self) -> None:
        psycopg = _psycopg()
        while not self._stop.is_set():
            try:
                conn = psycopg.connect(self.url, **connection_args())
                self._conn = conn
                conn.execute(f"LISTEN {CHANNEL}")
                self.heard += 1  # anything may have changed while nobody listened
                self.connected.set()
                for _ in conn.notifies():
                    self.heard += 1
                    if self._stop.is_set():
                        break
            except psycopg.Error as exc:
                if not self._stop.is_set():
                    log.warning(
                        "listening for index changes failed (%s); retrying", " ".join(str(exc).split())
                    )
            finally:
                self.connected.clear()
                if self._conn is not None:
                    self._conn.close()
                    self._conn = None
            self._stop.wait(self.retry)

    def close(self) -> None:
        self._stop.set()
        conn = self._conn
        if conn is not None:
            try:  # wake notifies(): a NOTIFY on our own channel ends the wait
                with _psycopg().connect(self.url, **connection_args()) as other:
                    other.execute("SELECT pg_notify(%s, 'stop')", (CHANNEL,))
            except Exception:  # noqa: BLE001 - the thread is a daemon; it ends with the process anyway
                pass
        self._thread.join(timeout=5)


# -- the per-project locks ----------------------------------------------------------------------------------------


# The server ends a session whose peer stopped answering after about a minute (these are per-session settings):
# without them a lost machine's lock would be held until the server's TCP stack gives up, two hours by default.
SERVER_KEEPALIVES = (
    "SET tcp_keepalives_idle = 20; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3"
)


class ProjectLock:
    """The watcher lock of one project: a session advisory lock on a connection of its own. PostgreSQL releases it
    when the session ends, so a holder that dies (kill -9, a lost machine once keepalives give up) frees it and
    another server takes it over, as the lock file does on one machine. `label` names the holder to the others
    (the session's application_name, which every user may read)."""

    def __init__(
        self, url: str, project: int, lock_class: int = WATCHER_CLASS, label: str = "specmem"
    ) -> None:
        self.url = url
        self.key = (lock_class, project)
        self.label = label
        self._conn: psycopg.Connection[Any] | None = None

    @property
    def held(self) -> bool:
        return self._conn is not None and not self._conn.closed

    def try_acquire(self) -> bool:
        if self.held:
            return True
        conn = connect(self.url, migrate_schema=False)
        try:
            conn.execute(SERVER_KEEPALIVES)
            conn.execute("SELECT set_config('application_name', %s, false)", (self.label[:63],))
            row = conn.execute("SELECT pg_try_advisory_lock(%s, %s)", self.key).fetchone()
        except BaseException:
            conn.close()
            raise
        if row is not None and row[0]:
            self._conn = conn
            return True
        conn.close()
        return False

    def still_held(self) -> bool:
        """Whether the session holding the lock still answers (a restart of the database ends it, and the lock
        with it)."""
        return self._conn is not None and alive(self._conn)

    def holder(self) -> tuple[int, str] | None:
        """(backend pid, label) of the session holding the lock (any machine), or None when it is free."""
        with connect(self.url, migrate_schema=False) as conn:
            row = conn.execute(
                "SELECT l.pid, coalesce(a.application_name, '') FROM pg_locks l LEFT JOIN pg_stat_activity a "
                "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.classid = %s AND l.objid = %s "
                "AND l.objsubid = 2",
                (self.key[0] & 0xFFFFFFFF, self.key[1]),
            ).fetchone()
        return None if row is None else (int(row[0]), str(row[1]))

    def holder_pid(self) -> int | None:
        """The backend pid of the session holding the lock (any machine), or None when it is free."""
        found = self.holder()
        return None if found is None else found[0]

    def release(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()  # the session's locks go with it
            finally:
                self._conn = None


def lock_key(name: str) -> int:
    """A stable int4 for a name (for locks on things that have no id yet)."""
    return zlib.crc32(name.encode()) - 2**31


def now_ms() -> int:
    return time.time_ns() // 1_000_000
