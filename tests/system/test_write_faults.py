"""The write paths under attack and faults: symlink swaps, links, concurrent editors, full disks, kill -9.

Faults are real: symlinks swapped by a thread, editors appending from another thread, processes killed with
SIGKILL, ENOSPC from a failing system call (or from a small tmpfs where one can be mounted).
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import unicodedata
from pathlib import Path

import anyio
import apsw
import pytest

from specmem.indexer import checkpoints, db
from specmem.indexer.draft import Draft
from specmem.indexer.errors import CheckpointError, DatabaseError, WriteError
from specmem.indexer.lock import FileLock
from specmem.indexer.scan import scan
from specmem.indexer.write import update_memory, write_memory
from tests.helpers import memory, wait_for, write

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
                written.append(write_memory(conn, cfg, hash_embedder, Draft(f"n{i}", "x", "001-x"))[1])
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
from specmem.indexer.draft import Draft
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
    write.write_memory(conn, cfg, embedder, Draft("Killed", "never finished", "001-k"))
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
    write_memory(conn, cfg, hash_embedder, Draft("After", "next write", "001-k"))
    assert leftovers(specs) == [], "a killed writer's temporary file was left in the user's folder"


# -- a full disk ---------------------------------------------------------------------------------------------------


def fail_writes_to(monkeypatch: pytest.MonkeyPatch, target: Path) -> None:
    """os.write raises ENOSPC for the file `target` (as on a full disk); other writes go through."""
    real_write = os.write
    ident = (target.stat().st_dev, target.stat().st_ino)

    def write(fd: int, data: bytes) -> int:
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) == ident:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", write)


def test_a_full_disk_while_taking_the_write_lock_leaves_nothing_taken(
    conn, cfg, specs, hash_embedder, monkeypatch
):
    write(specs / "001-a" / "memory" / "old.md", memory("Old", "was here"))
    scan(conn, cfg, hash_embedder)
    fail_writes_to(monkeypatch, cfg.write_lock_path)
    with pytest.raises(WriteError, match="disk is full") as refused:
        write_memory(conn, cfg, hash_embedder, Draft("New", "x", "001-a"))
    assert "nothing was written" in str(refused.value)
    monkeypatch.undo()
    assert sorted(p.name for p in (specs / "001-a" / "memory").iterdir()) == ["old.md"]
    other = FileLock(cfg.write_lock_path, "test")
    assert other.try_acquire(), "the failed writer kept the write lock"
    other.release()
    _, path = write_memory(conn, cfg, hash_embedder, Draft("New", "x", "001-a"))
    assert not path.stem.endswith("-2"), "the failed write left its file behind"
    assert str(path) in indexed(conn)


FULL_DISK = r"""
import json, os, subprocess, sys
from pathlib import Path

disk, specs = Path(sys.argv[1]), Path(sys.argv[2])
env = {**os.environ, "SPECMEM_DB": str(disk / "index.db")}

def specmem(*args):
    done = subprocess.run([sys.executable, "-m", "specmem", *args], capture_output=True, text=True, env=env)
    return {"code": done.returncode, "err": done.stderr, "out": done.stdout}

def fill(leave=0):
    fd = os.open(disk / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        while os.write(fd, b"\1" * 4096):
            pass
    except OSError:
        pass
    os.close(fd)
    if leave:
        os.truncate(disk / "filler", max(0, (disk / "filler").stat().st_size - leave))

results = {"first_scan": specmem("scan", "--no-embed")}
fill()
for n in range(300):
    (specs / "002-b" / "memory").mkdir(parents=True, exist_ok=True)
    (specs / "002-b" / "memory" / f"m{n}.md").write_text(f"# Memory {n}\n\n" + f"word{n} " * 150)
results["scan_full"] = specmem("scan", "--no-embed")
results["write_full"] = specmem("write", "--title", "On a full disk", "--spec-folder", "003-c", "body")
fill(leave=64 * 1024)  # room for the lock and a little, not for the new rows
results["scan_almost_full"] = specmem("scan", "--no-embed")
results["write_almost_full"] = specmem("write", "--title", "On a full disk", "--spec-folder", "003-c", "body")
os.unlink(disk / "filler")
results["write_after"] = specmem("write", "--title", "On a full disk", "--spec-folder", "003-c", "body")
results["scan_after"] = specmem("scan", "--no-embed")
print(json.dumps(results))
"""


def test_a_full_disk_gets_one_clear_line_and_leaves_nothing_behind(specs, isolated, tmp_path):
    """The database on a real 8 MB tmpfs (in a private mount namespace), filled up."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a private tmpfs")
    disk = tmp_path / "disk"
    disk.mkdir()
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    mount = 'mount -t tmpfs -o size=8m tmpfs "$0" && exec "$@"'
    userns = [] if os.geteuid() == 0 else ["--map-root-user"]
    done = subprocess.run(
        [
            "unshare",
            "--mount",
            *userns,
            "sh",
            "-c",
            mount,
            str(disk),
            sys.executable,
            "-c",
            FULL_DISK,
            str(disk),
            str(specs),
        ],
        capture_output=True,
        text=True,
        cwd=isolated,
        timeout=600,
    )
    if done.returncode != 0 and "mount" in done.stderr:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    assert done.returncode == 0, done.stderr
    results = json.loads(done.stdout)
    assert results["first_scan"]["code"] == 0, results["first_scan"]
    for step in ("scan_full", "write_full", "scan_almost_full", "write_almost_full"):
        result = results[step]
        assert result["code"] == 1, (step, result)
        assert "Traceback" not in result["err"] and "the disk is full; free some space" in result["err"], (
            step,
            result,
        )
        assert len([line for line in result["err"].splitlines() if "error" in line]) == 1, (step, result)
    assert results["write_after"]["code"] == 0, results["write_after"]
    assert results["scan_after"]["code"] == 0, results["scan_after"]
    written = sorted(p.name for p in (specs / "003-c" / "memory").iterdir())
    assert len(written) == 1 and not written[0].endswith("-2.md"), written


# -- one clear line for every failure ------------------------------------------------------------------------------


def tools(cfg, scenario) -> None:
    """Run `scenario(call)` against an in-process server; call(tool, **args) returns (is_error, data or text)."""
    from mcp import Client

    from specmem.server.mcp.server import build_server

    async def main() -> None:
        async with Client(build_server(cfg, load_model=False)) as client:

            async def call(tool: str, **args):
                result = await client.call_tool(tool, args)
                if result.is_error:
                    return True, result.content[0].text
                data = result.structured_content
                return False, data["result"] if set(data) == {"result"} else data

            await scenario(call)

    anyio.run(main)


def test_tools_say_why_they_fail(cfg, conn, specs, hash_embedder, tmp_path):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    scan(conn, cfg, hash_embedder)

    async def scenario(call) -> None:
        failed, text = await call("memory_write", title="T", content="x", spec_folder="名" * 100)
        assert failed and "too long" in text, text
        for id_or_path in ("99999999999999999999999", "²", "-1"):
            failed, text = await call("memory_get", id_or_path=id_or_path)
            assert failed and "no memory" in text or "no indexed memory" in text, text
            failed, text = await call("memory_update", id_or_path=id_or_path, tier="critical")
            assert failed and "no memory" in text or "no indexed memory" in text, text
        failed, text = await call("memory_validate", id=10**20, useful=True)
        assert failed and "no memory with id" in text, text

    tools(cfg, scenario)
    assert not list(specs.glob("名*"))

    blocked = tmp_path / "not-a-folder"
    blocked.write_text("a file where the database folder should be\n")
    unusable = dataclasses.replace(cfg, db_path=blocked / "index.db")

    async def no_database(call) -> None:
        for tool, args in [
            ("memory_write", {"title": "T", "content": "x", "spec_folder": "001-a"}),
            ("checkpoint_create", {"name": "cp"}),
            ("checkpoint_list", {}),
            ("memory_index_scan", {}),
        ]:
            failed, text = await call(tool, **args)
            assert failed and text.strip() != f"Error executing tool {tool}", (tool, text)
            assert "cannot create" in text or "no index" in text, (tool, text)

    tools(unusable, no_database)


# -- restore -------------------------------------------------------------------------------------------------------


def titles_on_disk_and_indexed(conn, specs: Path) -> tuple[dict[str, str], dict[str, str]]:
    on_disk = {
        str(p): p.read_text().split("\n")[1].removeprefix("title: ")
        for p in specs.rglob("*.md")
        if p.is_file()
    }
    return on_disk, indexed(conn)


KILLED_RESTORE = """
import os, sys, time
from specmem.indexer import checkpoints, config, db
from specmem.indexer.embed import get_embedder

cfg = config.resolve()
conn = db.connect(cfg.db_path)
real, calls = os.replace, [0]

def counting(*args, **kwargs):
    calls[0] += 1
    if calls[0] > 10:
        print("paused", flush=True)
        time.sleep(600)
    return real(*args, **kwargs)

os.replace = counting
checkpoints.restore(conn, cfg, get_embedder("hash:64"), "cp")
"""


def test_kill_9_during_a_restore_the_next_write_brings_the_index_in_line(
    conn, cfg, specs, hash_embedder, isolated
):
    folder = specs / "001-a" / "memory"
    for n in range(40):
        write(folder / f"m{n:02}.md", memory(f"v1 {n}", "body"))
    scan(conn, cfg, hash_embedder)
    checkpoints.create(conn, cfg, "cp")
    for n in range(40):
        write(folder / f"m{n:02}.md", memory(f"v2 {n}", "body"))
    scan(conn, cfg, hash_embedder)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_RESTORE], cwd=isolated, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "paused"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    on_disk, _ = titles_on_disk_and_indexed(conn, specs)
    assert 0 < sum(t.startswith("v1") for t in on_disk.values()) < 40, "the restore was not stopped half-way"
    # Any later write (here one in another spec folder) brings the index in line with what the restore wrote.
    write_memory(conn, cfg, hash_embedder, Draft("Elsewhere", "x", "002-b"))
    on_disk, rows = titles_on_disk_and_indexed(conn, specs)
    assert rows == on_disk


def test_restore_checks_every_target_before_writing(conn, cfg, specs, hash_embedder):
    folder = specs / "001-a" / "memory"
    for n in range(6):
        write(folder / f"m{n}.md", memory(f"v1 {n}", "body"))
    notes = write(specs / "001-a" / "notes" / "n.md", memory("v1 notes", "body"))
    scan(conn, cfg, hash_embedder)
    checkpoints.create(conn, cfg, "cp")
    for n in range(6):
        write(folder / f"m{n}.md", memory(f"v2 {n}", "body"))
    (folder / "m3.md").unlink()
    (folder / "m3.md").mkdir()  # a path that became a folder
    notes.unlink()
    notes.parent.rmdir()
    write(notes.parent, "a file where a folder was\n")  # a folder that became a file
    scan(conn, cfg, hash_embedder)
    before = {p: p.read_bytes() for p in folder.glob("*.md") if p.is_file()}
    with pytest.raises(CheckpointError, match="m3.md is a folder now") as refused:
        checkpoints.restore(conn, cfg, hash_embedder, "cp")
    assert "Nothing was changed" in str(refused.value) and f"{notes.parent} is a file" in str(refused.value)
    assert {p: p.read_bytes() for p in folder.glob("*.md") if p.is_file()} == before
    on_disk, rows = titles_on_disk_and_indexed(conn, specs)
    assert on_disk == rows


def test_restore_refuses_a_folder_that_became_a_symlink_out_of_the_roots(
    conn, cfg, specs, tmp_path, hash_embedder
):
    a = write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    write(specs / "001-a" / "memory" / "b.md", memory("B", "bravo"))
    scan(conn, cfg, hash_embedder)
    checkpoints.create(conn, cfg, "cp")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "a.md").write_text("someone else's file\n")
    os.rename(a.parent, specs / "001-a" / "moved")
    os.symlink(outside, a.parent)
    with pytest.raises(CheckpointError, match="outside the roots"):
        checkpoints.restore(conn, cfg, hash_embedder, "cp")
    assert sorted(p.name for p in outside.iterdir()) == ["a.md"]
    assert (outside / "a.md").read_text() == "someone else's file\n"


# -- a concurrent editor -------------------------------------------------------------------------------------------


EDITOR = """
import os, sys, time
path, stop = sys.argv[1], sys.argv[2]
n = 0
while not os.path.exists(stop):
    with open(path, "a") as fh:
        fh.write(f"line {n}\\n")
    n += 1
    if n == 1:
        print("started", flush=True)
    time.sleep(0.002)
print(n, flush=True)
"""


def test_update_loses_nothing_an_editor_appends_meanwhile(conn, cfg, specs, tmp_path, hash_embedder):
    """An editor process appends a line every 2 ms while the tier is flipped 110 times."""
    path = write(
        specs / "001-a" / "memory" / "busy.md", memory("Busy", "lines follow", importance_tier="normal")
    )
    scan(conn, cfg, hash_embedder)
    stop = tmp_path / "stop"
    editor = subprocess.Popen(
        [sys.executable, "-c", EDITOR, str(path), str(stop)], stdout=subprocess.PIPE, text=True
    )
    refused = 0
    try:
        assert editor.stdout.readline().strip() == "started"
        for i in range(110):
            try:
                update_memory(
                    conn, cfg, hash_embedder, path, {"importance_tier": ("critical", "normal")[i % 2]}
                )
            except WriteError as exc:
                assert "kept changing" in str(exc)
                refused += 1
    finally:
        stop.touch()
        lines = int(editor.stdout.readline())
        editor.wait(30)
        editor.stdout.close()
    text = path.read_text()
    missing = [n for n in range(lines) if f"line {n}\n" not in text]
    assert missing == [], f"{len(missing)} of {lines} appended lines were lost"
    assert refused < 110


# -- deleting in any folder ----------------------------------------------------------------------------------------


ODD_FOLDERS = ["007 (draft)", "a+b,c&d@e's", unicodedata.normalize("NFD", "café-notes"), "x" * 150]


@pytest.mark.parametrize("folder", ODD_FOLDERS, ids=["parens", "punctuation", "nfd", "long"])
def test_delete_works_in_any_existing_folder(cfg, conn, specs, hash_embedder, folder):
    a = write(specs / folder / "memory" / "a.md", memory("A", "alpha"))
    b = write(specs / folder / "memory" / "b.md", memory("B", "bravo"))
    c = write(specs / folder / "memory" / "c.md", memory("C", "charlie"))
    scan(conn, cfg, hash_embedder)

    async def scenario(call) -> None:
        failed, one = await call("memory_delete", id_or_path=str(a))
        assert not failed, one
        assert one["deleted"] == [str(a)] and not a.exists() and b.exists()
        failed, rest = await call("memory_delete", spec_folder=folder, confirm=True)
        assert not failed, rest
        assert sorted(rest["deleted"]) == [str(b), str(c)]
        for undo in (rest["checkpoint"], one["checkpoint"]):
            failed, restored = await call("checkpoint_restore", name=undo)
            assert not failed, restored
        assert a.exists() and b.exists() and c.exists()

    tools(cfg, scenario)
    assert set(indexed(conn)) == {str(a), str(b), str(c)}


def test_the_undo_of_a_delete_restores_a_folder_that_is_gone(cfg, conn, specs, hash_embedder):
    a = write(specs / "001-gone" / "memory" / "a.md", memory("A", "alpha"))
    scan(conn, cfg, hash_embedder)

    async def scenario(call) -> None:
        failed, deleted = await call("memory_delete", id_or_path=str(a))
        assert not failed, deleted
        shutil.rmtree(specs / "001-gone")
        failed, restored = await call("checkpoint_restore", name=deleted["checkpoint"])
        assert not failed, restored
        assert restored["restored"] == [str(a)]

    tools(cfg, scenario)
    assert a.read_text() == memory("A", "alpha")
    assert set(indexed(conn)) == {str(a)}


# -- the database deleted under a running watcher ------------------------------------------------------------------


def titles_in_index(cfg) -> set[str]:
    try:
        reader = db.connect(cfg.db_path, readonly=True)
    except DatabaseError:
        return set()
    try:
        return {r[0] for r in reader.execute("SELECT title FROM memory_index")}
    except apsw.Error:
        return set()
    finally:
        reader.close()


@pytest.mark.parametrize("who_rebuilds", ["watcher", "a write"])
def test_a_watcher_follows_its_database_being_deleted(cfg, specs, hash_embedder, who_rebuilds):
    from specmem.indexer.watch import Watcher

    write(specs / "001-a" / "memory" / "a.md", memory("Alpha", "first"))
    watcher = Watcher(cfg, hash_embedder, debounce=0.05)
    watcher.start()
    try:
        wait_for(lambda: titles_in_index(cfg) == {"Alpha"}, what="the first reconcile")
        cfg.db_path.unlink()  # `rm index.db` (its -wal and -shm stay, held open by the watcher)
        if who_rebuilds == "a write":  # a server's write tool, with a connection of its own
            writer = db.connect(cfg.db_path)
            write_memory(writer, cfg, hash_embedder, Draft("Written", "by a tool", "002-b"))
            writer.close()
        wait_for(lambda: {"Alpha"} <= titles_in_index(cfg), what="the database to be rebuilt")
        write(specs / "001-a" / "memory" / "c.md", memory("Charlie", "edited after the delete"))
        wait_for(
            lambda: "Charlie" in titles_in_index(cfg), what="the watcher's next batch in the new database"
        )
        reader = db.connect(cfg.db_path, readonly=True)
        assert reader.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        reader.close()
    finally:
        watcher.stop()


def specmem(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "specmem", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        timeout=120,
    )


KILLED_CREATE = """
import sys, time
from specmem.indexer import config, db

real = db.migrate

def paused(conn):
    print("paused", flush=True)
    time.sleep(600)

db.migrate = paused
db.connect(config.resolve().db_path)
"""


def test_an_index_killed_while_being_created_is_never_seen_half_made(cfg, specs, isolated):
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CREATE], cwd=isolated, stdout=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout.readline().strip() == "paused"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(30)
        proc.stdout.close()
    assert not cfg.db_path.exists(), "a half-made index is in place"
    searched = specmem("search", "anything", cwd=isolated)
    assert searched.returncode == 1 and "Traceback" not in searched.stderr and "no index" in searched.stderr
    cfg.db_path.touch()  # an empty file where the index should be
    searched = specmem("search", "anything", cwd=isolated)
    assert searched.returncode == 1 and "Traceback" not in searched.stderr and "is empty" in searched.stderr
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    assert specmem("scan", cwd=isolated).returncode == 0
    assert specmem("search", "alpha", cwd=isolated).returncode == 0


# -- text that is not UTF-8 ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        [b"--title", b"T\xff"],
        [b"--title", b"T", b"--tag", b"x\xfe"],
        [b"--title", b"T", b"--context-type", b"d\xff"],
        [b"--title", b"T", b"--trigger", b"\xc3("],
        [b"--title", b"T", b"body \xff"],
    ],
    ids=["title", "tag", "context-type", "trigger", "content"],
)
def test_write_refuses_arguments_that_are_not_utf8(specs, isolated, args):
    done = subprocess.run(
        [sys.executable, "-m", "specmem", "write", b"--spec-folder", b"001-a", *args],
        capture_output=True,
        cwd=isolated,
        timeout=120,
    )
    assert done.returncode == 1, done.stdout
    err = done.stderr.decode(errors="replace")
    assert "Traceback" not in err and "not UTF-8" in err
    assert not (specs / "001-a").exists(), "a memory was written"


@pytest.mark.parametrize(
    "title",
    [
        "a\u2028b",
        "line\rbreak",
        "tab\there",
        "--- dashes",
        "- item",
        "key: value # not a comment",
        "\ufeffbom",
        "x\x85y",
    ],
)
def test_a_written_memory_reads_back_as_asked_or_is_refused(conn, cfg, specs, hash_embedder, title):
    try:
        _, path = write_memory(
            conn, cfg, hash_embedder, Draft(title, "body", "001-a", tier="critical", tags=["t"])
        )
    except WriteError as exc:
        assert "one line" in str(exc) or "read back" in str(exc)
        assert not (specs / "001-a").exists()
        return
    row = conn.execute(
        "SELECT title, importance_tier, tags FROM memory_index WHERE path = ?", (str(path),)
    ).fetchall()
    assert row == [(title, "critical", '["t"]')]


# -- settings ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value"),
    [
        ("SPECMEM_CHECKPOINT_MAX_DAYS", "inf"),
        ("SPECMEM_CHECKPOINT_MAX_DAYS", "1e400"),
        ("SPECMEM_CHECKPOINT_MAX_DAYS", "nan"),
        ("SPECMEM_CHECKPOINT_MAX", "1" + "0" * 25),
        ("SPECMEM_CHECKPOINT_MAX", "lots"),
    ],
)
def test_checkpoint_retention_out_of_range_is_one_line(specs, isolated, setting, value):
    """Read when a checkpoint is made; a value SQLite or the clock cannot hold is refused, not a traceback."""
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    assert specmem("--help", env={setting: value}).returncode == 0
    done = specmem("checkpoint", "create", "cp", env={setting: value}, cwd=isolated)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert setting in done.stderr
