"""The live watcher, driven through real files and a real watchdog observer. Waits are on conditions, with
timeouts; nothing here asserts a duration."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal as signals
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import frontmatter
import pytest

from specmem.indexer import config, db, scan
from specmem.indexer import watch as watch_mod
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import WatcherBusy
from specmem.indexer.lock import current_holder
from specmem.indexer.watch import Watcher
from tests.helpers import hits, memory, wait_for, write

TIMEOUT = 15.0


def rows(conn) -> dict[str, tuple[int, str, str]]:
    """rel_path → (id, title, content hash)."""
    return {
        rel: (mid, title, digest)
        for mid, rel, title, digest in conn.execute(
            "SELECT id, rel_path, title, content_hash FROM memory_index"
        )
    }


def snapshot(conn) -> tuple[list[tuple], int, int]:
    """What a fresh scan must reproduce: every memory's metadata, and the chunk and FTS row counts."""
    mems = sorted(
        conn.execute(
            "SELECT rel_path, title, importance_tier, content_hash, line_count, size FROM memory_index"
        ).fetchall()
    )
    chunks = conn.execute("SELECT count(*) FROM memory_chunks").fetchall()[0][0]
    fts = conn.execute("SELECT count(*) FROM memory_fts").fetchall()[0][0]
    return mems, chunks, fts


def fresh_snapshot(cfg: config.Config, embedder: Embedder, tmp_path: Path) -> tuple[list[tuple], int, int]:
    other = config.resolve(db=str(tmp_path / "fresh" / "index.db"), roots=[str(r) for r in cfg.roots])
    conn = db.connect(other.db_path)
    try:
        scan.scan(conn, other, embedder, embed=False)
        return snapshot(conn)
    finally:
        conn.close()


@pytest.fixture
def watch(cfg, hash_embedder) -> Iterator[Callable[..., Watcher]]:
    started: list[Watcher] = []

    def start(**kwargs) -> Watcher:
        kwargs.setdefault("debounce", 0.05)
        # The safety net off: these tests are about events; a periodic reconcile would hide a missed one.
        kwargs.setdefault("reconcile_every", math.inf)
        watcher = Watcher(kwargs.pop("cfg", cfg), hash_embedder, **kwargs)
        watcher.start()
        started.append(watcher)
        wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def test_startup_reconcile_then_live(conn, cfg, specs, watch, hash_embedder):
    write(specs / "001-a" / "memory" / "kept.md", memory("Kept", "present before start"))
    write(specs / "001-a" / "memory" / "gone.md", memory("Gone", "deleted while nobody watched"))
    scan.scan(conn, cfg, hash_embedder, embed=False)
    (specs / "001-a" / "memory" / "gone.md").unlink()
    write(specs / "001-a" / "memory" / "new.md", memory("New", "created while nobody watched"))
    watch()
    assert set(rows(conn)) == {"001-a/memory/kept.md", "001-a/memory/new.md"}
    write(specs / "001-a" / "memory" / "live.md", memory("Live", "zebrafish appear"))
    wait_for(
        lambda: hits(conn, "zebrafish") == {"001-a/memory/live.md"}, what="the new file to be searchable"
    )


# -- editors' save patterns --------------------------------------------------------------------------------------


@pytest.fixture
def edited(conn, specs, watch) -> tuple[Path, int]:
    """One indexed memory file under a running watcher: (path, id)."""
    path = write(specs / "001-a" / "memory" / "note.md", memory("Note", "original wording"))
    watch()
    wait_for(lambda: "001-a/memory/note.md" in rows(conn))
    return path, rows(conn)["001-a/memory/note.md"][0]


def settled_on(conn, word: str, mid: int) -> None:
    wait_for(lambda: hits(conn, word) == {"001-a/memory/note.md"}, what=f"{word!r} to be searchable")
    current = rows(conn)
    assert set(current) == {"001-a/memory/note.md"}, "a temporary or backup file was indexed"
    assert current["001-a/memory/note.md"][0] == mid, "the memory lost its id"
    assert hits(conn, "original") == set()


def test_in_place_write_vscode(conn, edited):
    path, mid = edited
    with open(path, "r+", encoding="utf-8") as fh:
        fh.truncate(0)
        fh.write(memory("Note", "inplace wording"))
    settled_on(conn, "inplace", mid)


def test_temp_file_renamed_over_vim_backupcopy_no(conn, edited):
    path, mid = edited
    tmp = path.with_name("4913")  # vim's probe file, created and deleted first
    tmp.write_text("")
    tmp.unlink()
    tmp = path.with_name(".note.md.swx")
    tmp.write_text(memory("Note", "vimrename wording"))
    os.replace(tmp, path)
    settled_on(conn, "vimrename", mid)


def test_jetbrains_safe_write(conn, edited):
    path, mid = edited
    tmp = path.with_name("note.md___jb_tmp___")
    old = path.with_name("note.md___jb_old___")
    tmp.write_text(memory("Note", "jetbrains wording"))
    os.rename(path, old)
    os.rename(tmp, path)
    old.unlink()
    settled_on(conn, "jetbrains", mid)


def test_sed_in_place(conn, edited):
    path, mid = edited
    subprocess.run(["sed", "-i", "s/original/sedited/", str(path)], check=True)
    settled_on(conn, "sedited", mid)


def test_python_frontmatter_writer(conn, edited):
    path, mid = edited
    post = frontmatter.load(path)
    post.content = "# Note\n\nfrontmatterlib wording\n"
    frontmatter.dump(post, path)
    settled_on(conn, "frontmatterlib", mid)


def test_vim_backup_then_write(conn, edited):
    path, mid = edited
    backup = path.with_name("note.md~")
    os.rename(path, backup)
    path.write_text(memory("Note", "vimbackup wording"))
    backup.unlink()
    settled_on(conn, "vimbackup", mid)


def test_emacs_lock_autosave_and_backup(conn, edited):
    path, mid = edited
    lock = path.with_name(".#note.md")
    os.symlink("user@host.1234:1700000000", lock)
    autosave = path.with_name("#note.md#")
    autosave.write_text(memory("Note", "autosaved wording"))
    shutil.copy2(path, path.with_name("note.md~"))
    path.write_text(memory("Note", "emacs wording"))
    autosave.unlink()
    lock.unlink()
    settled_on(conn, "emacs", mid)
    assert hits(conn, "autosaved") == set()


def test_delete_then_create(conn, edited):
    path, mid = edited
    path.unlink()
    path.write_text(memory("Note", "recreated wording"))
    settled_on(conn, "recreated", mid)


def test_touch_rewrites_nothing(conn, edited):
    path, mid = edited
    wait_for(lambda: conn.execute("SELECT embedding_status FROM memory_index").fetchall()[0][0] == "done")
    chunks = conn.execute("SELECT id, embedded FROM memory_chunks").fetchall()
    vectors = conn.execute("SELECT count(*) FROM vec_memories").fetchall()[0][0]
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 7_000_000_000))
    wait_for(
        lambda: conn.execute("SELECT mtime_ns FROM memory_index").fetchall()[0][0] == path.stat().st_mtime_ns
    )
    assert conn.execute("SELECT id, embedded FROM memory_chunks").fetchall() == chunks
    assert conn.execute("SELECT count(*) FROM vec_memories").fetchall()[0][0] == vectors
    assert rows(conn)["001-a/memory/note.md"][0] == mid


# -- moves and deletes -------------------------------------------------------------------------------------------


def ids_by_title(conn) -> dict[str, tuple[int, str]]:
    return {title: (mid, rel) for rel, (mid, title, _) in rows(conn).items()}


@pytest.fixture
def tree(conn, specs, watch) -> tuple[Watcher, dict[str, tuple[int, str]]]:
    """Three memories in two spec folders under a running watcher, embedded."""
    write(specs / "001-a" / "memory" / "one.md", memory("One", "first memory\n\n## Details\n\nmore words"))
    write(specs / "001-a" / "memory" / "two.md", memory("Two", "second memory"))
    write(specs / "002-b" / "memory" / "three.md", memory("Three", "third memory"))
    watcher = watch()
    wait_for(lambda: len(rows(conn)) == 3)
    wait_for(lambda: watcher.idle(), what="embeddings")
    assert {r[0] for r in conn.execute("SELECT embedding_status FROM memory_index")} == {"done"}
    return watcher, ids_by_title(conn)


def test_file_rename_and_move_keep_id_without_embedding(conn, specs, tree):
    watcher, before = tree
    embedded = watcher.status.embedded_chunks
    (specs / "001-a" / "memory" / "one.md").rename(specs / "001-a" / "memory" / "uno.md")
    (specs / "001-a" / "memory" / "two.md").rename(specs / "002-b" / "memory" / "two.md")
    wait_for(
        lambda: (
            {rel for _, rel in ids_by_title(conn).values()} >= {"001-a/memory/uno.md", "002-b/memory/two.md"}
        )
    )
    wait_for(watcher.idle)
    after = ids_by_title(conn)
    assert {t: v[0] for t, v in after.items()} == {t: v[0] for t, v in before.items()}
    assert watcher.status.embedded_chunks == embedded, "a moved file was embedded again"
    assert {r[0] for r in conn.execute("SELECT embedding_status FROM memory_index")} == {"done"}
    assert (
        conn.execute("SELECT spec_folder FROM memory_index WHERE title = 'Two'").fetchall()[0][0] == "002-b"
    )


def test_folder_rename_and_move(conn, specs, tree):
    watcher, before = tree
    (specs / "001-a").rename(specs / "001-renamed")
    wait_for(
        lambda: all(rel.startswith(("001-renamed/", "002-b/")) for _, rel in ids_by_title(conn).values())
    )
    (specs / "archive").mkdir()
    (specs / "002-b").rename(specs / "archive" / "002-b")
    wait_for(lambda: ids_by_title(conn)["Three"][1] == "archive/002-b/memory/three.md")
    wait_for(lambda: "002-b/memory/three.md" not in rows(conn))
    assert {t: v[0] for t, v in ids_by_title(conn).items()} == {t: v[0] for t, v in before.items()}
    # The moved folders are still watched.
    write(specs / "archive" / "002-b" / "memory" / "three.md", memory("Three", "edited after the move"))
    write(specs / "001-renamed" / "memory" / "five.md", memory("Five", "created after the rename"))
    wait_for(lambda: hits(conn, "edited") == {"archive/002-b/memory/three.md"})
    wait_for(lambda: "Five" in ids_by_title(conn))


# Every way a folder appears, looped: a folder must be watched before its contents can change (issue 23). Each
# round ends with an edit inside the new folder that only its event can index (the safety net is off).
ROUNDS = 20


def edited_after(conn, path: Path, rel: str, word: str) -> None:
    """Wait for `rel` to be indexed, edit it to hold `word`, and wait for the edit to be searchable."""
    wait_for(lambda: rel in rows(conn), what=f"{rel} to be indexed")
    write(path, memory(path.parent.parent.name, f"{word} after it appeared"))
    wait_for(lambda: hits(conn, word) == {rel}, what=f"the edit of {rel} ({word}) to be indexed")


def test_folders_moved_into_a_folder_made_a_moment_before_stay_watched(conn, specs, watch):
    """`mkdir archive && mv 007-x archive/`, then edits inside (watchdog turned the unpaired move into a delete
    of the moved folder's watches)."""
    for i in range(ROUNDS):
        write(specs / f"{i:03d}-x" / "memory" / "m.md", memory(f"M{i}", "before the move"))
    watch()
    wait_for(lambda: len(rows(conn)) == ROUNDS, what="the start-up reconcile")
    for i in range(ROUNDS):
        archive = specs / f"archive{i}"
        archive.mkdir()
        (specs / f"{i:03d}-x").rename(archive / f"{i:03d}-x")
        path = archive / f"{i:03d}-x" / "memory" / "m.md"
        rel = f"archive{i}/{i:03d}-x/memory/m.md"
        write(path, memory(f"M{i}", f"moved{i} and edited at once"))
        wait_for(
            lambda i=i, rel=rel: hits(conn, f"moved{i}") == {rel},
            what=f"round {i}: the edit right after the move",
        )
        edited_after(conn, path, rel, f"later{i}")
    assert len(rows(conn)) == ROUNDS


def test_folders_created_and_filled_at_once_are_watched(conn, specs, watch):
    watch()
    for i in range(ROUNDS):
        folder = specs / f"{i:03d}-new" / "deep" / "memory"
        os.makedirs(folder)
        path = write(folder / "m.md", memory(f"N{i}", "written in the same instant"))
        edited_after(conn, path, f"{i:03d}-new/deep/memory/m.md", f"filled{i}")


def test_folders_moved_in_from_outside_the_roots_are_watched(conn, specs, watch, tmp_path):
    watch()
    outside = tmp_path / "outside"
    for i in range(ROUNDS):
        path = write(outside / f"{i:03d}-in" / "memory" / "m.md", memory(f"I{i}", "made outside the roots"))
        (outside / f"{i:03d}-in").rename(specs / f"{i:03d}-in")
        edited_after(conn, specs / f"{i:03d}-in" / "memory" / "m.md", f"{i:03d}-in/memory/m.md", f"came{i}")
        assert not path.exists()


def git(folder: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=folder,
        check=True,
        capture_output=True,
    )


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_folders_restored_by_git_are_watched(conn, isolated, specs, watch):
    for i in range(ROUNDS):
        write(specs / f"{i:03d}-g" / "memory" / "m.md", memory(f"G{i}", "committed"))
    git(isolated, "init", "-q")
    git(isolated, "add", "specs")
    git(isolated, "commit", "-qm", "memories")
    watch()
    wait_for(lambda: len(rows(conn)) == ROUNDS, what="the start-up reconcile")
    for i in range(ROUNDS):
        rel = f"{i:03d}-g/memory/m.md"
        shutil.rmtree(specs / f"{i:03d}-g")
        wait_for(lambda rel=rel: rel not in rows(conn), what=f"round {i}: the deletion")
        git(isolated, "checkout", "--", f"specs/{i:03d}-g")
        edited_after(conn, specs / f"{i:03d}-g" / "memory" / "m.md", rel, f"restored{i}")


# -- the safety net ------------------------------------------------------------------------------------------------


def test_a_change_whose_event_was_lost_is_indexed_by_the_periodic_check(conn, specs, watch, monkeypatch):
    path = write(specs / "001-a" / "memory" / "m.md", memory("M", "before"))
    watcher = watch(reconcile_every=0.5)
    wait_for(lambda: "001-a/memory/m.md" in rows(conn))
    with monkeypatch.context() as lost:
        lost.setattr(watcher, "notice", lambda *a, **k: None)  # every event lost, as when a watch was dropped
        write(path, memory("M", "unreported edit"))
        write(specs / "002-b" / "memory" / "n.md", memory("N", "unreported file"))
        wait_for(lambda: hits(conn, "unreported") == {"001-a/memory/m.md", "002-b/memory/n.md"})
        wait_for(lambda: watcher.status.missed >= 2, what="the check to count what it found")
    assert watcher.status.errors == []


def test_the_periodic_check_comes_sooner_on_small_roots_and_is_bounded(cfg, hash_embedder):
    watcher = Watcher(cfg, hash_embedder)
    small, large = watcher.reconcile_interval(0.01), watcher.reconcile_interval(60.0)
    assert small <= watcher.reconcile_interval(1.0) <= large
    assert large == watch_mod.RECONCILE_MAX and small == watch_mod.RECONCILE_MIN


def test_deleted_file_and_folder_leave_the_index(conn, specs, tree):
    (specs / "001-a" / "memory" / "two.md").unlink()
    wait_for(lambda: "Two" not in ids_by_title(conn))
    shutil.rmtree(specs / "001-a")
    wait_for(lambda: set(ids_by_title(conn)) == {"Three"})
    orphans = conn.execute(
        "SELECT count(*) FROM memory_chunks WHERE memory_id NOT IN (SELECT id FROM memory_index)"
    )
    assert orphans.fetchall()[0][0] == 0
    assert (
        conn.execute("SELECT count(*) FROM memory_fts").fetchall()[0][0]
        == conn.execute("SELECT count(*) FROM memory_chunks").fetchall()[0][0]
    )


def test_moves_out_of_roots_into_ignored_and_back_in(conn, specs, tree, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (specs / "001-a" / "memory" / "one.md").rename(outside / "one.md")
    wait_for(lambda: "One" not in ids_by_title(conn))
    (specs / ".trash").mkdir()
    (specs / "001-a" / "memory" / "two.md").rename(specs / ".trash" / "two.md")
    wait_for(lambda: "Two" not in ids_by_title(conn))
    (outside / "one.md").rename(specs / "002-b" / "memory" / "one.md")
    wait_for(lambda: "One" in ids_by_title(conn))
    (specs / ".trash" / "two.md").rename(specs / "002-b" / "memory" / "two.md")
    wait_for(lambda: "Two" in ids_by_title(conn))
    folder = outside / "004-d" / "memory"
    write(folder / "four.md", memory("Four", "a whole folder moved in"))
    (outside / "004-d").rename(specs / "004-d")
    wait_for(lambda: ids_by_title(conn).get("Four", (0, ""))[1] == "004-d/memory/four.md")


@pytest.fixture
def git_dir(isolated: Path) -> Path:
    (isolated / ".git").mkdir()
    return isolated


def test_new_gitignore_rule_applies_to_indexed_files(conn, specs, git_dir, tree):
    gitignore = git_dir / ".gitignore"
    gitignore.write_text("specs/002-b/\n")
    wait_for(lambda: set(ids_by_title(conn)) == {"One", "Two"}, what="the ignore rule to remove Three")
    gitignore.write_text("")
    wait_for(lambda: set(ids_by_title(conn)) == {"One", "Two", "Three"}, what="Three to come back")
    write(specs / "001-a" / ".specmemignore", "two.md\nmemory/two.md\n")
    wait_for(lambda: set(ids_by_title(conn)) == {"One", "Three"}, what="the .specmemignore rule")


# -- bursts ------------------------------------------------------------------------------------------------------


def test_burst_is_few_batches_and_equals_a_fresh_scan(conn, cfg, specs, watch, hash_embedder, tmp_path):
    for i in range(150):
        write(specs / f"{i % 5:03d}-f" / "memory" / f"m{i}.md", memory(f"M{i}", f"version one of {i}"))
    watcher = watch(debounce=0.2)
    batches = watcher.status.batches
    # What a branch switch does: many files rewritten, some deleted, some added, within milliseconds.
    for i in range(150):
        path = specs / f"{i % 5:03d}-f" / "memory" / f"m{i}.md"
        if i % 10 == 0:
            path.unlink()
        else:
            path.write_text(memory(f"M{i}", f"version two of {i}"))
    for i in range(150, 200):
        write(specs / "009-new" / "memory" / f"m{i}.md", memory(f"M{i}", f"brand new {i}"))
    expected = fresh_snapshot(cfg, hash_embedder, tmp_path)
    wait_for(lambda: snapshot(conn) == expected, what="the index to equal a fresh scan")
    assert watcher.status.batches - batches <= 10, f"{watcher.status.batches - batches} batches for one burst"


# -- one watcher per database, serialised writers -------------------------------------------------------------


def test_second_watcher_is_refused_naming_the_first(cfg, watch, hash_embedder):
    watch()
    with pytest.raises(WatcherBusy, match=f"pid {os.getpid()}"):
        Watcher(cfg, hash_embedder).start()
    holder = current_holder(cfg.watcher_lock_path)
    assert holder is not None and holder.pid == os.getpid() and holder.role == "watcher"


def test_cli_watch_refused_and_sigterm_stops_cleanly(specs, isolated, cfg):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    env = {**os.environ, "SPECMEM_MODEL": "hash:64"}
    first = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch"],
        cwd=isolated,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        wait_for(
            lambda: current_holder(cfg.watcher_lock_path) is not None, what="the watcher to take its lock"
        )
        second = subprocess.run(
            [sys.executable, "-m", "specmem", "watch"],
            cwd=isolated,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert second.returncode == 1
        assert f"already watched by watcher pid {first.pid}" in second.stderr

        def stats() -> dict:
            done = subprocess.run(
                [sys.executable, "-m", "specmem", "stats", "--json"],
                cwd=isolated,
                env=env,
                capture_output=True,
                text=True,
                timeout=60,
            )
            return json.loads(done.stdout)

        wait_for(lambda: (stats()["watcher"] or {}).get("batches", 0) >= 1, what="the watcher's status")
        watcher = stats()["watcher"]
        assert watcher["pid"] == first.pid and "1 added" in watcher["last_batch"]
        first.send_signal(signals.SIGTERM)
        _, stderr = first.communicate(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, stderr
    assert "ready: 1 memory files" in stderr and "stopped after" in stderr
    assert current_holder(cfg.watcher_lock_path) is None


def test_scans_from_elsewhere_are_serialised_with_the_watcher(
    conn, cfg, specs, watch, hash_embedder, tmp_path
):
    watcher = watch()
    errors: list[BaseException] = []

    def scanner() -> None:
        other = db.connect(cfg.db_path)
        try:
            for _ in range(15):
                scan.scan(other, cfg, hash_embedder)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            other.close()

    threads = [threading.Thread(target=scanner) for _ in range(2)]
    for t in threads:
        t.start()
    for i in range(120):
        write(specs / f"{i % 4:03d}-x" / "memory" / f"n{i}.md", memory(f"N{i}", f"text {i}"))
        if i % 7 == 0 and i:
            (specs / f"{(i - 7) % 4:03d}-x" / "memory" / f"n{i - 7}.md").unlink()
    for t in threads:
        t.join(120)
    assert errors == []
    expected = fresh_snapshot(cfg, hash_embedder, tmp_path)
    wait_for(lambda: snapshot(conn) == expected, what="the index to equal a fresh scan")
    assert watcher.status.errors == []


# -- resilience --------------------------------------------------------------------------------------------------


def test_unreadable_file_is_kept_and_retried_on_the_next_change(conn, edited, watch, monkeypatch):
    path, mid = edited
    real = scan.read_head

    def deny(p, limit):
        if p == path:
            raise PermissionError(13, "Permission denied")
        return real(p, limit)

    monkeypatch.setattr(scan, "read_head", deny)
    path.write_text(memory("Note", "denied wording"))
    sibling = write(path.with_name("sibling.md"), memory("Sibling", "sibling wording"))
    wait_for(lambda: "001-a/memory/sibling.md" in rows(conn))
    assert hits(conn, "original") == {"001-a/memory/note.md"}, "an unreadable file lost its row"
    monkeypatch.setattr(scan, "read_head", real)
    path.write_text(memory("Note", "readable wording"))
    wait_for(lambda: hits(conn, "readable") == {"001-a/memory/note.md"})
    assert rows(conn)["001-a/memory/note.md"][0] == mid
    del sibling


def test_file_written_while_watched_ends_with_its_final_content(conn, specs, watch):
    watch()
    path = specs / "001-a" / "memory" / "log.md"
    path.parent.mkdir(parents=True)
    with open(path, "w") as fh:
        fh.write("# Log\n\n")
        for i in range(200):
            fh.write(f"line {i} of a slow writer\n")
            fh.flush()
            if i % 20 == 0:
                time.sleep(0.01)  # a slow writer, not a wait for the watcher
        fh.write("finalword\n")
    final = scan.digest_of(path.read_bytes(), None)
    wait_for(lambda: rows(conn).get("001-a/memory/log.md", (0, "", ""))[2] == final, what="the final content")
    assert hits(conn, "finalword") == {"001-a/memory/log.md"}


def test_root_deleted_and_recreated(conn, cfg, specs, watch, hash_embedder, tmp_path):
    write(specs / "001-a" / "memory" / "a.md", memory("A", "before the deletion"))
    watcher = watch()
    shutil.rmtree(specs)
    specs.mkdir()
    write(specs / "002-b" / "memory" / "b.md", memory("B", "after the recreation"))
    expected = fresh_snapshot(cfg, hash_embedder, tmp_path)
    wait_for(lambda: snapshot(conn) == expected, what="the recreated root to be reconciled")
    write(specs / "002-b" / "memory" / "c.md", memory("C", "still watched"))
    wait_for(lambda: hits(conn, "watched") == {"002-b/memory/c.md"}, what="events from the recreated root")
    assert watcher.status.errors == []


def test_database_folder_inside_a_root_causes_no_feedback_loop(isolated, hash_embedder, monkeypatch, watch):
    root = isolated / "notes"
    monkeypatch.setenv("SPECMEM_DB", str(root / "index-data" / "index.db"))
    monkeypatch.setenv("SPECMEM_ROOTS", str(root))
    cfg = config.resolve()
    write(root / "a.md", memory("A", "first"))
    watcher = watch(cfg=cfg)
    reader = db.connect(cfg.db_path)
    try:
        wait_for(watcher.idle)
        settled = watcher.status.batches
        write(root / "b.md", memory("B", "sentinel"))
        wait_for(lambda: hits(reader, "sentinel") == {"b.md"})
        wait_for(watcher.idle, what="the watcher to go idle (it would not, if its own writes fed it events)")
        assert watcher.status.batches - settled <= 2
        assert set(rows(reader)) == {"a.md", "b.md"}
    finally:
        reader.close()


def test_polling_observer(conn, specs, watch):
    watch(polling=True, polling_interval=0.1)
    path = write(specs / "001-a" / "memory" / "p.md", memory("P", "polled wording"))
    wait_for(lambda: hits(conn, "polled") == {"001-a/memory/p.md"})
    path.unlink()
    wait_for(lambda: rows(conn) == {})


def test_keyword_rows_first_then_embeddings_with_their_own_signal(conn, cfg, specs, watch):
    from specmem.indexer import signal

    write(specs / "001-a" / "memory" / "first.md", memory("First", "indexed at start-up"))
    watcher = watch()
    wait_for(watcher.idle)
    before = signal.read(cfg.signal_path)
    write(specs / "001-a" / "memory" / "e.md", memory("E", "embedded later"))
    wait_for(
        lambda: (
            conn.execute("SELECT embedding_status FROM memory_index WHERE title = 'E'").fetchall()
            == [("done",)]
        )
    )
    assert before is not None
    # The signal is replaced just after the embedding batch commits: wait for it, do not race it.
    wait_for(
        lambda: (
            (after := signal.read(cfg.signal_path)) is not None and after.generation >= before.generation + 2
        ),
        what="the keyword batch and the embedding batch each to touch the signal",
    )


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread scheduling is Linux's")
def test_embedding_thread_yields_the_cpu_to_searches(cfg, specs, watch):
    """Embeddings are background work: the embedding thread runs at nice 19, a standalone watcher's as a server's
    (not SCHED_IDLE: on a busy machine an idle-class thread descheduled while holding the GIL stalled the batches
    for seconds); the thread that applies batches, and so keyword visibility, keeps its priority."""
    for role in ("watcher", "server"):
        watcher = watch(role=role)
        embed = next(t for t in watcher._threads if t.name == "specmem-embed")
        apply = next(t for t in watcher._threads if t.name == "specmem-apply")
        wait_for(lambda e=embed: os.getpriority(os.PRIO_PROCESS, e.native_id) == 19, what="nice 19")
        assert os.sched_getscheduler(embed.native_id) == os.SCHED_OTHER
        assert os.sched_getscheduler(apply.native_id) == os.SCHED_OTHER
        assert os.getpriority(os.PRIO_PROCESS, apply.native_id) < 19
        watcher.stop()


def test_a_deleted_watcher_lock_is_taken_again_so_a_second_watcher_is_refused(cfg, hash_embedder, watch):
    from specmem.indexer.lock import FileLock

    watcher = watch()
    cfg.watcher_lock_path.unlink()  # a cleanup of .specmem/ while the watcher runs
    wait_for(lambda: cfg.watcher_lock_path.exists(), what="the watcher to re-create its lock file")
    assert watcher.lock.still_ours()
    assert current_holder(cfg.watcher_lock_path).pid == os.getpid()
    with pytest.raises(WatcherBusy):
        Watcher(cfg, hash_embedder).start()
    assert not FileLock(cfg.watcher_lock_path, "other").try_acquire()


def test_a_lock_file_replaced_between_open_and_lock_is_not_taken(tmp_path, monkeypatch):
    """The classic flock race: the file we opened is unlinked and re-created before our lock lands on it."""
    from specmem.indexer import lock as lock_module

    path = tmp_path / "write.lock"
    path.write_text("")
    real_try_lock = lock_module._try_lock
    replaced: list[int] = []

    def try_lock_after_a_replace(fd: int) -> bool:
        if not replaced:
            replaced.append(fd)
            path.unlink()
            path.write_text("")  # another process's cleanup re-created it
        return real_try_lock(fd)

    monkeypatch.setattr(lock_module, "_try_lock", try_lock_after_a_replace)
    taken = lock_module.FileLock(path, "test")
    assert taken.try_acquire()
    assert taken.still_ours()
    monkeypatch.setattr(lock_module, "_try_lock", real_try_lock)
    assert not lock_module.FileLock(path, "other").try_acquire()  # the lock is on the file that is there
    taken.release()
