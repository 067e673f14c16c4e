"""The PostgreSQL engine's base and write side against a real PostgreSQL with pgvector: migrations, the keyword
statistics kept exact through updates and deletes, the change signal (NOTIFY/LISTEN), the watcher lock (an
advisory lock taken over when its holder dies) and a clear error when the database is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import psycopg
import pytest

from specmem.indexer import pg, pg_store
from specmem.indexer.embed import get_embedder
from specmem.indexer.errors import DatabaseError
from specmem.indexer.scan import prepare
from specmem.indexer.store import FileStat
from tests.corpus import write_corpus
from tests.helpers import memory, wait_for, write


def store_files(conn: psycopg.Connection, project: int, root: Path, paths: list[Path]) -> dict[str, int]:
    embedder = get_embedder("hash:64")
    ids = {}
    with pg.write_tx(conn, project):
        for path in paths:
            prep = prepare(path, root, FileStat.of(path.stat()), path.read_bytes(), None, embedder)
            ids[str(path)] = pg_store.store_memory(pg.PgConn(conn, (project,)), prep, None, None)[0]
        pg.committed(conn, project)
    return ids


def statistics(conn: psycopg.Connection, project: int) -> tuple[tuple[int, int], dict[str, int]]:
    totals = conn.execute("SELECT chunks, tokens FROM projects WHERE id = %s", (project,)).fetchone()
    df = dict(
        conn.execute("SELECT term, chunks FROM term_stats WHERE project_id = %s AND chunks > 0", (project,))
    )
    assert totals is not None
    return (int(totals[0]), int(totals[1])), df


def test_migrations_run_once_and_record_the_version(pg_url: str) -> None:
    first = pg.connect(pg_url)
    second = pg.connect(pg_url)  # nothing left to apply
    assert pg.schema_version(second) == len(pg.MIGRATIONS)
    names = [r[0] for r in second.execute("SELECT name FROM _migrations ORDER BY name")]
    assert names == [fn.__name__ for fn in pg.MIGRATIONS]
    assert second.execute("SELECT extname FROM pg_extension WHERE extname = 'vector'").fetchone()
    first.close()
    second.close()


def test_statistics_stay_exact_through_changes_and_deletes(pg_url: str, specs: Path) -> None:
    write_corpus(specs, n=60, seed=5)
    paths = sorted(specs.rglob("*.md"))
    conn = pg.connect(pg_url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, "demo")
    assert project is not None
    ids = store_files(conn, project, specs, paths)
    # Change a third, delete a third, in the ways a scan does.
    for path in paths[:20]:
        write(path, memory("Changed", f"a new body for {path.stem} with unusual words zebra quokka"))
    embedder = get_embedder("hash:64")
    with pg.write_tx(conn, project):
        for path in paths[:20]:
            prep = prepare(path, specs, FileStat.of(path.stat()), path.read_bytes(), None, embedder)
            pg_store.store_memory(pg.PgConn(conn, (project,)), prep, ids[str(path)], None)
        pg_store.delete_memories(pg.PgConn(conn, (project,)), [ids[str(p)] for p in paths[20:40]])
    for path in paths[20:40]:
        path.unlink()
    changed = statistics(conn, project)

    with pg.write_tx(conn):
        fresh = pg.project_id(conn, "fresh")
    assert fresh is not None
    store_files(conn, fresh, specs, sorted(specs.rglob("*.md")))
    assert changed == statistics(conn, fresh)
    conn.close()


def test_notify_reaches_every_listener(pg_url: str, specs: Path) -> None:
    write(specs / "a.md", memory("A", "alpha"))
    conn = pg.connect(pg_url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, "demo")
    assert project is not None
    listeners = [pg.Listener(pg_url), pg.Listener(pg_url)]
    for listener in listeners:
        assert listener.connected.wait(30)
    before = [listener.stamp() for listener in listeners]
    store_files(conn, project, specs, [specs / "a.md"])
    for listener, seen in zip(listeners, before, strict=True):
        wait_for(lambda listener=listener, seen=seen: listener.stamp() != seen, timeout=30)
    # A rolled-back transaction announces nothing.
    before = [listener.stamp() for listener in listeners]
    with pytest.raises(RuntimeError), pg.write_tx(conn, project):
        pg.committed(conn, project)
        raise RuntimeError("rolled back")
    probe = pg.Listener(pg_url)
    assert probe.connected.wait(30)
    store_files(conn, project, specs, [specs / "a.md"])  # a later commit is heard after the rolled-back one
    wait_for(
        lambda: all(listener.stamp() == seen + 1 for listener, seen in zip(listeners, before, strict=True)),
        30,
    )
    for listener in [*listeners, probe]:
        listener.close()
    conn.close()


HOLDER = textwrap.dedent(
    """
    import sys, time
    from specmem.indexer import pg
    lock = pg.ProjectLock(sys.argv[1], int(sys.argv[2]))
    assert lock.try_acquire()
    print("held", flush=True)
    time.sleep(600)
    """
)


def test_watcher_lock_is_taken_over_when_its_holder_dies(pg_url: str) -> None:
    conn = pg.connect(pg_url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, "demo")
    assert project is not None
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, pg_url, str(project)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        mine = pg.ProjectLock(pg_url, project)
        assert not mine.try_acquire()
        assert mine.holder_pid() is not None
        other = pg.ProjectLock(pg_url, project + 1)  # another project's watcher is not blocked
        assert other.try_acquire()
        other.release()
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(30)
        wait_for(mine.try_acquire, timeout=30)
        assert mine.held
        mine.release()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
        if holder.stdout is not None:
            holder.stdout.close()
    conn.close()


def test_a_database_that_is_down_is_a_clear_error(tmp_path: Path) -> None:
    url = f"postgresql://postgres@/specmem?host={tmp_path}&port=1"  # no server listens there
    with pytest.raises(DatabaseError, match="cannot reach PostgreSQL .*Nothing is lost"):
        pg.connect(url)
    with pytest.raises(DatabaseError, match="cannot reach PostgreSQL"), pg.reading(url):
        pass
    pg.close_pools()


def test_urls_select_postgres_and_passwords_are_hidden() -> None:
    assert pg.is_url("postgresql://u:secret@db.example:5432/specmem")
    assert pg.is_url("postgres://db/specmem")
    assert not pg.is_url("/home/me/.specmem/index.db")
    assert not pg.is_url(None)
    assert "secret" not in pg.redacted("postgresql://u:secret@db.example:5432/specmem")
    assert pg.redacted("postgresql://db.example/specmem") == "postgresql://db.example/specmem"
