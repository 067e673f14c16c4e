"""The watcher election on a shared PostgreSQL index (a real PostgreSQL with pgvector, started by the `pg_server`
fixture): one watcher per project across "machines" (clones in separate folders, each with its own lock files),
held as an advisory lock; another process waits and takes over when the holder dies."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from specmem.indexer import config, pg, pg_watch
from specmem.indexer.embed import get_embedder
from specmem.indexer.errors import WatcherBusy
from specmem.indexer.lock import watcher_holder
from specmem.indexer.watch import Watcher, WatchHost
from tests.helpers import memory, wait_for, write


def clone(tmp_path: Path, name: str, url: str) -> tuple[config.Config, dict[str, str]]:
    """A clone of the project `team` on its own "machine" (folder), with its settings and environment."""
    specs = tmp_path / name / "specs"
    write(specs / "001-x" / "memory" / "a.md", memory("Shared note", "kept in every clone"))
    env = {
        **os.environ,
        "SPECMEM_DB": url,
        "SPECMEM_PROJECT": "team",
        "SPECMEM_ROOTS": str(specs),
        "SPECMEM_MODEL": "hash:64",
    }
    return config.resolve(roots=[specs], cwd=tmp_path / name, env=env), env


def memories_of(url: str) -> set[str]:
    with pg.connect(url, migrate_schema=False) as conn:
        return {str(t) for (t,) in conn.execute("SELECT title FROM memory_index")}


def test_one_watcher_per_project_across_machines(tmp_path: Path, pg_url: str) -> None:
    first, env_a = clone(tmp_path, "a", pg_url)
    second, env_b = clone(tmp_path, "b", pg_url)
    watcher = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch", "--no-embed"],
        cwd=tmp_path / "a",
        env=env_a,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    host = WatchHost(second, get_embedder("hash:64"), retry=0.2)
    hosting = False
    try:
        wait_for(lambda: watcher_holder(second) is not None, timeout=60, what="the first watcher's lock")
        holder = watcher_holder(second)
        assert holder is not None and (holder.pid, holder.role) == (watcher.pid, "watcher")
        wait_for(lambda: "Shared note" in memories_of(pg_url), timeout=60, what="the first watcher's scan")

        # The other clone's own lock file is free, yet it may not watch the project too.
        busy = subprocess.run(
            [sys.executable, "-m", "specmem", "watch", "--no-embed"],
            cwd=tmp_path / "b",
            env=env_b,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert busy.returncode != 0
        assert f"already watched by watcher pid {watcher.pid}" in busy.stderr
        with pytest.raises(WatcherBusy):
            Watcher(second, get_embedder("hash:64"), embed=False).start()

        host.start()
        hosting = True
        wait_for(lambda: host._tried.is_set(), timeout=30, what="the server's first try")
        assert not host.watching

        os.kill(watcher.pid, signal.SIGKILL)
        watcher.wait(30)
        wait_for(lambda: host.watching, timeout=60, what="the takeover")
        holder = watcher_holder(second)
        assert holder is not None and (holder.pid, holder.role) == (os.getpid(), "server")

        write(second.roots[0] / "002-y" / "memory" / "b.md", memory("Written after", "the takeover"))
        wait_for(lambda: "Written after" in memories_of(pg_url), timeout=60, what="the new watcher's batch")
    finally:
        if hosting:
            host.stop()
        if watcher.poll() is None:
            watcher.kill()
            watcher.wait()
        assert watcher.stderr is not None
        watcher.stderr.close()
    assert watcher_holder(second) is None


def test_a_lost_lock_session_is_taken_again(tmp_path: Path, pg_url: str) -> None:
    cfg, _ = clone(tmp_path, "a", pg_url)
    lock = pg_watch.WatcherLock(cfg, "watcher")
    assert lock.try_acquire() and lock.still_ours()
    holder = lock.current()
    assert holder is not None and holder.pid == os.getpid()
    with pg.connect(pg_url, migrate_schema=False) as admin:  # the database ends the session (a restart does)
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (pg_watch.label(holder),),
        )
    wait_for(lambda: not lock.still_ours(), timeout=30, what="the lost session")
    assert lock.retake() and lock.still_ours()
    lock.release()
    assert lock.current() is None
