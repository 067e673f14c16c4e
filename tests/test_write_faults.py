"""The write paths under attack and faults: symlink swaps, links, concurrent editors, full disks, kill -9.

Faults are real: symlinks swapped by a thread, editors appending from another thread, processes killed with
SIGKILL, ENOSPC from a failing system call (or from a small tmpfs where one can be mounted).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from specmem.indexer import checkpoints
from specmem.indexer.errors import WriteError
from specmem.indexer.scan import scan
from specmem.indexer.write import update_memory, write_memory
from tests.conftest import memory, write

pytestmark = pytest.mark.skipif(
    sys.platform == "win32", reason="symlinks, hard links and signals as on POSIX"
)


def indexed(conn) -> dict[str, str]:
    return {r[0]: r[1] for r in conn.execute("SELECT path, title FROM memory_index")}


def leftovers(folder: Path) -> list[str]:
    """Anything a writer left in a folder besides memory files."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith("."))


# -- symlinks and links --------------------------------------------------------------------------------------------


def test_writes_never_land_outside_while_a_symlink_is_swapped(conn, cfg, specs, tmp_path, hash_embedder):
    """A thread flips `specs/001-x/memory` between a real folder and a symlink to a folder outside the roots."""
    outside = tmp_path / "outside"
    outside.mkdir()
    target = specs / "001-x" / "memory"
    target.mkdir(parents=True)
    parked = specs / "001-x" / "parked"
    stop = threading.Event()
    flips = [0]

    def flipper() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                os.rename(target, parked / f"real-{n}")  # the real folder (or one a writer made) goes aside
            except FileNotFoundError:
                parked.mkdir(exist_ok=True)
                continue
            except OSError:
                continue
            try:
                os.symlink(outside, target)
            except FileExistsError:
                continue  # a writer made the folder again in between
            flips[0] += 1
            os.unlink(target)

    parked.mkdir()
    thread = threading.Thread(target=flipper)
    thread.start()
    written: list[Path] = []
    refused = 0
    try:
        for i in range(300):
            try:
                written.append(
                    write_memory(conn, cfg, hash_embedder, title=f"n{i}", content="x", spec_folder="001-x")[1]
                )
            except WriteError:
                refused += 1
    finally:
        stop.set()
        thread.join(30)
    assert flips[0] > 0
    assert sorted(p.name for p in outside.iterdir()) == [], "a write landed outside the roots"
    assert all(files_inside(specs, p.name) for p in written)
    assert leftovers(specs / "001-x") == []


def files_inside(specs: Path, name: str) -> bool:
    return any(p.name == name and not p.is_symlink() for p in specs.rglob("*.md"))


def test_update_and_restore_keep_symlinks_and_hard_links(conn, cfg, specs, hash_embedder):
    real = write(
        specs / "shared" / "memory" / "real.md", memory("Real", "shared text", importance_tier="normal")
    )
    link = specs / "001-a" / "memory" / "link.md"
    link.parent.mkdir(parents=True)
    os.symlink(real, link)
    hard = write(specs / "002-b" / "memory" / "hard.md", memory("Hard", "linked twice"))
    twin = specs / "003-c" / "memory" / "twin.md"
    twin.parent.mkdir(parents=True)
    os.link(hard, twin)
    scan(conn, cfg, hash_embedder)
    checkpoints.create(conn, cfg, "cp")

    update_memory(conn, cfg, hash_embedder, link, {"importance_tier": "critical"})
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert "importance_tier: critical" in real.read_text()
    update_memory(conn, cfg, hash_embedder, hard, {"importance_tier": "critical"})
    assert hard.stat().st_ino == twin.stat().st_ino and hard.stat().st_nlink == 2
    assert "importance_tier: critical" in twin.read_text()

    checkpoints.restore(conn, cfg, hash_embedder, "cp")
    assert link.is_symlink() and "importance_tier: normal" in real.read_text()
    assert hard.stat().st_ino == twin.stat().st_ino and "critical" not in twin.read_text()
    rows = indexed(conn)
    assert rows[str(link)] == rows[str(real)] == "Real"


# -- kill ----------------------------------------------------------------------------------------------------------


KILLED_WRITER = """
import os, sys, time
from pathlib import Path
from specmem.indexer import config, db, write
from specmem.indexer.embed import get_embedder

cfg = config.resolve()
conn = db.connect(cfg.db_path)
embedder = get_embedder("hash:64")
real = {call}

def paused(*args, **kwargs):
    print("paused", flush=True)
    time.sleep(600)

{patch} = paused
if sys.argv[1] == "write":
    write.write_memory(conn, cfg, embedder, title="Killed", content="never finished", spec_folder="001-k")
else:
    write.update_memory(conn, cfg, embedder, Path(sys.argv[2]), {{"importance_tier": "critical"}})
"""


@pytest.mark.parametrize(
    ("action", "call"),
    [("write", "os.fsync"), ("update", "os.fsync"), ("update", "os.replace")],
)
def test_kill_9_in_a_write_leaves_nothing_behind(conn, cfg, specs, hash_embedder, isolated, action, call):
    """A writer killed with SIGKILL at its most exposed moment; the next write into that folder cleans up."""
    folder = specs / "001-k" / "memory"
    existing = write(folder / "existing.md", memory("Existing", "was here"))
    scan(conn, cfg, hash_embedder)
    script = KILLED_WRITER.format(call=call, patch=call)
    proc = subprocess.Popen(
        [sys.executable, "-c", script, action, str(existing)],
        cwd=isolated,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        line = proc.stdout.readline()
        if not line:
            pytest.skip(f"{call} is not on this write path")  # e.g. os.rename when os.replace is used
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    write_memory(conn, cfg, hash_embedder, title="After", content="next write", spec_folder="001-k")
    assert leftovers(specs) == [], "a killed writer's temporary file was left in the user's folder"
