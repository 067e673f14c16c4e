import os
import time
from pathlib import Path

import pytest

from specmem.indexer import scan, signal
from specmem.indexer.config import resolve
from tests.helpers import memory, write


def rows(conn):
    return {
        Path(p).name: (i, h) for i, p, h in conn.execute("SELECT id, path, content_hash FROM memory_index")
    }


def test_add_update_remove(conn, specs, run_scan):
    write(specs / "001-a" / "memory" / "one.md", memory("One", "first"))
    write(specs / "001-a" / "memory" / "two.md", memory("Two", "second"))
    r = run_scan()
    assert (r.added, r.updated, r.removed, r.pending_embeddings) == (2, 0, 0, 0)
    write(specs / "001-a" / "memory" / "one.md", memory("One", "changed text"))
    (specs / "001-a" / "memory" / "two.md").unlink()
    r = run_scan()
    assert (r.added, r.updated, r.unchanged, r.removed) == (0, 1, 0, 1)
    assert set(rows(conn)) == {"one.md"}
    assert (
        conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'second'").fetchall()[0][0] == 0
    )


def test_fast_path_reads_nothing(conn, specs, run_scan, monkeypatch):
    hour_ago = time.time_ns() - 3_600_000_000_000
    for i in range(20):
        path = write(specs / f"f{i}.md", memory(f"F{i}", "text"))
        # Not modified within the timestamp granularity of the scan (those are hashed again: git's racy rule).
        os.utime(path, ns=(hour_ago, hour_ago))
    run_scan()
    reads = []
    real = scan.read_head
    monkeypatch.setattr(scan, "read_head", lambda *a: reads.append(a) or real(*a))
    r = run_scan()
    assert r.unchanged == 20 and reads == []


def test_touch_without_change_rewrites_nothing(conn, specs, run_scan):
    path = write(specs / "a.md", memory("A", "alpha"))
    run_scan()
    chunk_ids = conn.execute("SELECT id FROM memory_chunks").fetchall()
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    r = run_scan()
    assert (r.unchanged, r.updated, r.embedded_chunks) == (1, 0, 0)
    assert conn.execute("SELECT id FROM memory_chunks").fetchall() == chunk_ids
    assert conn.execute("SELECT mtime_ns FROM memory_index").fetchall()[0][0] == path.stat().st_mtime_ns


def test_rename_and_move_keep_id_and_embeddings(conn, specs, run_scan):
    write(specs / "001-a" / "memory" / "old.md", memory("Moving", "content that moves\n\n## Part\n\nmore"))
    run_scan()
    (before,) = rows(conn).values()
    (specs / "002-b" / "memory").mkdir(parents=True)
    (specs / "001-a" / "memory" / "old.md").rename(specs / "002-b" / "memory" / "new.md")
    r = run_scan()
    assert (r.moved, r.added, r.removed, r.embedded_chunks) == (1, 0, 0, 0)
    assert r.reused_chunks >= 1
    assert rows(conn)["new.md"] == before
    assert conn.execute("SELECT spec_folder, embedding_status FROM memory_index").fetchall() == [
        ("002-b", "done")
    ]


def test_a_move_in_a_later_batch_keeps_its_row(conn, specs, run_scan, monkeypatch):
    """Many changed files and a move: the gone rows are deleted after every batch has claimed its moves."""
    monkeypatch.setattr(scan, "FILES_PER_BATCH", 3)
    for i in range(7):
        write(specs / "001-a" / "memory" / f"m{i}.md", memory(f"M{i}", f"body {i}"))
    run_scan()
    before = rows(conn)
    for i in range(6):
        write(specs / "001-a" / "memory" / f"m{i}.md", memory(f"M{i}", f"body {i} changed"))
    (specs / "001-a" / "memory" / "m6.md").rename(specs / "001-a" / "memory" / "zz-moved.md")  # walked last
    r = run_scan()
    assert (r.updated, r.moved, r.added, r.removed) == (6, 1, 0, 0)
    assert rows(conn)["zz-moved.md"] == before["m6.md"]


def test_new_files_are_read_batch_by_batch(conn, specs, run_scan, monkeypatch):
    """A first index reads each batch's files just before writing them, so memory follows the batch size."""
    monkeypatch.setattr(scan, "FILES_PER_BATCH", 3)
    for i in range(10):
        write(specs / f"f{i}.md", memory(f"F{i}", f"text {i}"))
    events = []
    real_read, real_touch = scan.read_head, signal.touch
    monkeypatch.setattr(scan, "read_head", lambda *a: events.append("read") or real_read(*a))
    monkeypatch.setattr(signal, "touch", lambda *a: events.append("commit") or real_touch(*a))
    r = run_scan(embed=False)
    assert r.added == 10
    assert events == (["read"] * 3 + ["commit"]) * 3 + ["read", "commit"]


def test_changed_files_past_the_kept_bytes_are_read_again_in_their_batch(conn, specs, run_scan, monkeypatch):
    monkeypatch.setattr(scan, "FILES_PER_BATCH", 2)
    paths = [write(specs / f"f{i}.md", memory(f"F{i}", f"old words {i}")) for i in range(5)]
    run_scan()
    before = rows(conn)
    for i, path in enumerate(paths):
        path.write_text(memory(f"F{i}", f"new words {i} changed"))
    monkeypatch.setattr(scan, "KEEP_READ_BYTES", 0)
    reads = []
    real = scan.read_head
    monkeypatch.setattr(scan, "read_head", lambda p, limit: reads.append(p.name) or real(p, limit))
    r = run_scan()
    assert (r.updated, r.unchanged, r.added) == (5, 0, 0)
    assert sorted(reads) == sorted([p.name for p in paths] * 2)  # the hash check, then the batch
    after = rows(conn)
    assert {n: i for n, (i, _) in after.items()} == {n: i for n, (i, _) in before.items()}
    assert (
        conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'changed'").fetchall()[0][0] == 5
    )


def test_a_file_deleted_before_its_batch_reads_it_loses_its_row(conn, specs, run_scan, monkeypatch):
    """A forced scan reads every file in its batch; one deleted since the walk is removed, not reported."""
    monkeypatch.setattr(scan, "FILES_PER_BATCH", 2)
    paths = [write(specs / f"f{i}.md", memory(f"F{i}", f"words {i}")) for i in range(5)]
    run_scan()
    real = scan.read_head

    def vanish(p, limit):
        if p == paths[3]:
            p.unlink()
            raise FileNotFoundError(2, "No such file or directory")
        return real(p, limit)

    monkeypatch.setattr(scan, "read_head", vanish)
    r = run_scan(force=True)
    assert (r.updated, r.removed, r.problems) == (4, 1, [])
    assert set(rows(conn)) == {"f0.md", "f1.md", "f2.md", "f4.md"}


def test_only_changed_chunks_are_embedded(conn, specs, run_scan):
    sections = "\n\n".join(f"## Section {i}\n\n" + f"words of section {i} " * 60 for i in range(4))
    path = write(specs / "a.md", memory("Big", sections))
    first = run_scan()
    assert first.embedded_chunks >= 4
    path.write_text(path.read_text().replace("words of section 2 ", "edited words of section 2 ", 1))
    r = run_scan()
    assert r.updated == 1 and r.embedded_chunks == 1 and r.reused_chunks == first.embedded_chunks - 1


def test_keyword_phase_first_then_embeddings(conn, specs, run_scan, cfg):
    write(specs / "a.md", memory("A", "zebra crossing"))
    r = run_scan(embed=False)
    assert r.pending_embeddings == 1
    assert (
        conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'zebra'").fetchall()[0][0] == 1
    )
    r = run_scan()
    assert (r.unchanged, r.embedded_chunks, r.pending_embeddings) == (1, 1, 0)


def test_signal_touched_after_each_batch(conn, specs, run_scan, cfg, monkeypatch):
    monkeypatch.setattr(scan, "FILES_PER_BATCH", 10)
    for i in range(25):
        write(specs / f"f{i}.md", memory(f"F{i}", "text"))
    run_scan(embed=False)
    assert signal.read(cfg.signal_path).generation == 3  # three keyword batches
    run_scan()
    assert signal.read(cfg.signal_path).generation >= 4  # and the embedding batch


def test_ignore_rules(conn, specs, run_scan, isolated):
    (isolated / ".git").mkdir()
    write(isolated / ".gitignore", "specs/drafts/\n")
    write(specs / ".gitignore", "*.tmp.md\nprivate/\n!keep.tmp.md\n")
    write(specs / "sub" / ".gitignore", "local.md\n")
    write(specs / ".specmemignore", "skipme.md\n")
    for rel in [
        "ok.md",
        "keep.tmp.md",
        "x.tmp.md",
        "private/p.md",
        "sub/local.md",
        "sub/fine.md",
        "skipme.md",
        "drafts/d.md",
        ".hidden/h.md",
        "node_modules/n.md",
        ".dot.md",
        "notes.txt",
        "x.md~",
        "#x.md#",
        "sub/.#lock.md",
    ]:
        write(specs / rel, "# t\n")
    run_scan()
    assert set(rows(conn)) == {"ok.md", "keep.tmp.md", "fine.md"}
    # A repository nested inside the root has its own rules: the outer .gitignore stops applying below it.
    write(specs / ".git" / "HEAD", "ref: refs/heads/main\n")
    run_scan()
    assert "d.md" in rows(conn) and ".git" not in {Path(p).parent.name for p in rows(conn)}


def test_new_ignore_rule_removes_indexed_files(conn, specs, run_scan):
    write(specs / "a.md", "# a\n")
    write(specs / "b.md", "# b\n")
    run_scan()
    write(specs / ".specmemignore", "b.md\n")
    r = run_scan()
    assert r.removed == 1 and set(rows(conn)) == {"a.md"}


def test_symlink_loop_and_escape_are_reported(conn, specs, run_scan, tmp_path):
    write(specs / "real" / "a.md", "# a\n")
    (specs / "real" / "loop").symlink_to(specs / "real", target_is_directory=True)
    outside = write(tmp_path / "outside" / "secret.md", "# secret\n")
    (specs / "escape.md").symlink_to(outside)
    r = run_scan()
    assert set(rows(conn)) == {"a.md"}
    messages = " ".join(m for _, m in r.problems)
    assert "symlink loop" in messages and "outside the roots" in messages


def test_unreadable_folder_keeps_its_rows(conn, specs, run_scan, monkeypatch):
    write(specs / "locked" / "a.md", "# a\n")
    write(specs / "open" / "b.md", "# b\n")
    run_scan()
    real = os.scandir

    def deny(path):
        if str(path).endswith("locked"):
            raise PermissionError(13, "Permission denied")
        return real(path)

    monkeypatch.setattr(os, "scandir", deny)
    r = run_scan()
    assert r.removed == 0 and set(rows(conn)) == {"a.md", "b.md"}
    assert any("cannot read folder" in m for _, m in r.problems)


def test_unreadable_file_keeps_its_row(conn, specs, run_scan, monkeypatch):
    path = write(specs / "a.md", "# a\n")
    run_scan()
    path.write_text("# a changed\n")
    real = scan.read_head

    def deny(p, limit):
        if p == path:
            raise PermissionError(13, "Permission denied")
        return real(p, limit)

    monkeypatch.setattr(scan, "read_head", deny)
    r = run_scan()
    assert r.removed == 0 and set(rows(conn)) == {"a.md"}
    assert any("cannot read" in m for _, m in r.problems)


def test_bad_files_are_indexed_with_warnings(conn, specs, run_scan, isolated, monkeypatch):
    monkeypatch.setenv("SPECMEM_MAX_FILE_BYTES", "1000")
    cfg = resolve()
    write(specs / "bin.md", b"\x00\x01\x02binary")
    write(specs / "empty.md", b"")
    write(specs / "huge.md", "# Huge\n" + "needle words here\n" * 200)
    write(specs / "bad.md", "---\ntitle: [oops\n---\nbody\n")
    write(specs / "utf16.md", b"\xff\xfe" + "# Wide\n".encode("utf-16-le"))
    r = run_scan(cfg=cfg)
    assert r.added == 5
    warned = {Path(p).name for p, _ in r.warnings}
    assert warned == {"bin.md", "empty.md", "huge.md", "bad.md", "utf16.md"}
    stored = dict(conn.execute("SELECT rel_path, warnings FROM memory_index"))
    assert "over the size limit" in stored["huge.md"]
    assert (
        conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'needle'").fetchall()[0][0] >= 1
    )


def test_missing_root_is_a_problem_not_a_wipe(conn, specs, run_scan, cfg, tmp_path):
    write(specs / "a.md", "# a\n")
    run_scan()
    renamed = tmp_path / "elsewhere"
    specs.rename(renamed)
    r = run_scan()
    assert r.removed == 0 and len(rows(conn)) == 1
    assert any("does not exist" in m for _, m in r.problems)


def test_database_inside_a_root_is_not_indexed(specs, hash_embedder, monkeypatch):
    monkeypatch.setenv("SPECMEM_DB", str(specs / "index-data" / "index.db"))
    cfg = resolve()
    write(specs / "a.md", "# a\n")
    write(specs / "index-data" / "notes.md", "# inside the db folder\n")
    from specmem.indexer import db

    conn = db.connect(cfg.db_path)
    report = scan.scan(conn, cfg, hash_embedder)
    assert report.added == 1


@pytest.mark.parametrize("force", [True])
def test_force_reindexes_everything_but_embeds_nothing_new(conn, specs, run_scan, force):
    write(specs / "a.md", memory("A", "alpha"))
    run_scan()
    r = run_scan(force=force)
    assert r.updated == 1 and r.embedded_chunks == 0 and r.reused_chunks == 1


def test_root_inside_the_database_folder_is_walked(tmp_path, hash_embedder):
    from specmem.indexer import db

    write(tmp_path / "data" / "notes" / "deep" / "a.md", "# a\n")
    cfg = resolve(db=tmp_path / "data" / "index.db", roots=[tmp_path / "data" / "notes"])
    report = scan.scan(db.connect(cfg.db_path), cfg, hash_embedder)
    assert report.added == 1


def test_no_change_scan_writes_nothing_and_signals_nothing(conn, specs, run_scan, cfg):
    write(specs / "a.md", memory("A", "alpha"))
    run_scan()
    generation = signal.read(cfg.signal_path).generation
    changes = conn.total_changes()
    r = run_scan()
    assert r.unchanged == 1
    assert signal.read(cfg.signal_path).generation == generation
    assert conn.total_changes() == changes


def test_scoped_scan_touches_only_its_scopes(conn, specs, run_scan):
    write(specs / "001-a" / "one.md", memory("One", "first"))
    write(specs / "002-b" / "two.md", memory("Two", "second"))
    run_scan()
    (specs / "001-a" / "one.md").unlink()
    (specs / "002-b" / "two.md").unlink()
    write(specs / "001-a" / "new.md", memory("New", "third"))
    r = run_scan(scopes=(specs / "001-a",))
    assert (r.added, r.removed) == (1, 1)
    assert set(rows(conn)) == {"new.md", "two.md"}, "a row outside the scope was touched"
    r = run_scan(scopes=(specs / "002-b" / "two.md", specs / "nowhere" / "x.md"))
    assert r.removed == 1 and set(rows(conn)) == {"new.md"}


def test_scoped_scan_finds_the_source_of_a_move_outside_its_scopes(conn, specs, run_scan):
    write(specs / "001-a" / "old.md", memory("Moved", "content that moves"))
    run_scan()
    (before,) = rows(conn).values()
    (specs / "002-b").mkdir()
    (specs / "001-a" / "old.md").rename(specs / "002-b" / "new.md")
    r = run_scan(scopes=(specs / "002-b" / "new.md",))  # the watcher saw the new name first
    assert (r.moved, r.added, r.embedded_chunks) == (1, 0, 0)
    assert rows(conn)["new.md"][0] == before[0]
    assert run_scan(scopes=(specs / "001-a" / "old.md",)).removed == 0


def test_scoped_scan_honours_ignore_rules_and_nested_roots(conn, specs, isolated, hash_embedder):
    nested = specs / "inner"
    write(nested / "in.md", memory("In", "nested root"))
    write(specs / "top.md", memory("Top", "outer root"))
    write(specs / "skip" / "s.md", memory("Skip", "ignored"))
    write(specs / ".specmemignore", "skip/\n")
    cfg = resolve(roots=[specs, nested])
    scan.scan(conn, cfg, hash_embedder)
    assert conn.execute("SELECT root FROM memory_index WHERE title = 'In'").fetchall()[0][0] == str(nested)
    r = scan.scan(conn, cfg, hash_embedder, scopes=(specs,))
    assert (r.added, r.removed, r.updated) == (0, 0, 0), "the nested root's rows were disturbed"
    r = scan.scan(conn, cfg, hash_embedder, scopes=(specs / "skip" / "s.md",))
    assert r.added == 0


def test_file_vanishing_while_read_is_gone_not_a_problem(conn, specs, run_scan, monkeypatch):
    kept = write(specs / "kept.md", memory("Kept", "stays"))
    doomed = write(specs / "doomed.md", memory("Doomed", "goes"))
    run_scan()
    doomed.write_text(memory("Doomed", "changed, then deleted while being read"))
    real = scan.read_head

    def vanish(p, limit):
        if p == doomed:
            doomed.unlink()
            raise FileNotFoundError(2, "No such file or directory")
        return real(p, limit)

    monkeypatch.setattr(scan, "read_head", vanish)
    r = run_scan(scopes=(doomed, kept))
    assert r.removed == 1 and r.problems == [] and set(rows(conn)) == {"kept.md"}


def test_file_being_written_is_read_again_until_it_settles(conn, specs, run_scan, monkeypatch):
    path = write(specs / "growing.md", memory("Growing", "start"))
    real = scan.read_head
    calls = []

    def still_writing(p, limit):
        data = real(p, limit)
        calls.append(p)
        if len(calls) == 1:  # the writer appends while we read the first time
            with open(p, "a") as fh:
                fh.write("appended later\n")
            st = p.stat()
            os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return data

    monkeypatch.setattr(scan, "read_head", still_writing)
    r = run_scan()
    assert len(calls) == 2 and r.unsettled == []
    assert (
        conn.execute("SELECT count(*) FROM memory_fts WHERE memory_fts MATCH 'appended'").fetchall()[0][0]
        == 1
    )
    assert conn.execute("SELECT mtime_ns FROM memory_index").fetchall()[0][0] == path.stat().st_mtime_ns


def test_file_that_never_settles_is_read_again_next_time(conn, specs, run_scan, monkeypatch):
    path = write(specs / "busy.md", memory("Busy", "start"))
    real = scan.read_head

    def always_writing(p, limit):
        data = real(p, limit)
        st = p.stat()
        os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
        return data

    monkeypatch.setattr(scan, "read_head", always_writing)
    monkeypatch.setattr(scan, "SETTLE_DELAY", 0.0)
    r = run_scan()
    assert r.unsettled == [str(path)] and r.added == 1
    assert conn.execute("SELECT ctime_ns FROM memory_index").fetchall()[0][0] == -1  # matches no file
    monkeypatch.setattr(scan, "read_head", real)
    r = run_scan()
    assert r.unsettled == [] and r.unchanged == 1  # read again (hash unchanged), stat now recorded
    assert conn.execute("SELECT mtime_ns FROM memory_index").fetchall()[0][0] == path.stat().st_mtime_ns


def test_write_lock_serialises_writers_and_names_a_stuck_holder(conn, cfg, specs, hash_embedder):
    from specmem.indexer.errors import LockTimeout
    from specmem.indexer.lock import FileLock

    write(specs / "a.md", memory("A", "alpha"))
    with FileLock(cfg.write_lock_path, "test") as held:
        assert held.try_acquire()
        with pytest.raises(LockTimeout, match=f"test pid {os.getpid()}"):
            scan.scan(conn, cfg, hash_embedder, lock_timeout=0.2)
    assert scan.scan(conn, cfg, hash_embedder).added == 1


def test_classify_plans_without_writing(conn, cfg, specs, run_scan, hash_embedder):
    """The first step of a scan is a value: which files to index, which stats to record, which rows are gone;
    nothing is written until `apply` carries it out."""
    hour_ago = time.time_ns() - 3_600_000_000_000
    kept = write(specs / "001-a" / "memory" / "kept.md", memory("Kept", "same"))
    touched = write(specs / "001-a" / "memory" / "touched.md", memory("Touched", "same bytes"))
    edited = write(specs / "001-a" / "memory" / "edited.md", memory("Edited", "before"))
    moved = write(specs / "001-a" / "memory" / "moved.md", memory("Moved", "moves away"))
    for path in (kept, touched, edited, moved):
        os.utime(path, ns=(hour_ago, hour_ago))
    run_scan()
    before = rows(conn)
    os.utime(touched, ns=(hour_ago, hour_ago + 5_000_000_000))
    write(edited, memory("Edited", "after"))
    moved.rename(specs / "002-b.md")
    new = write(specs / "001-a" / "memory" / "new.md", memory("New", "fresh"))

    run = scan.ScanRun(conn, cfg, hash_embedder, cfg.roots)
    plan = scan.classify(run)
    assert plan is not None
    assert sorted(Path(c.name).name for c in plan.changed) == ["002-b.md", "edited.md", "new.md"]
    assert [mid for mid, _ in plan.stat_only] == [before["touched.md"][0]]
    assert [Path(name).name for name in plan.gone] == ["moved.md"]
    assert plan.gone_by_digest() == {before["moved.md"][1]: [(str(moved), before["moved.md"][0])]}
    assert run.report.unchanged == 2 and rows(conn) == before

    scan.apply(run, plan)
    assert (run.report.added, run.report.updated, run.report.moved, run.report.removed) == (1, 1, 1, 0)
    assert rows(conn)["002-b.md"][0] == before["moved.md"][0] and "new.md" in rows(conn)
    assert str(new) in {c.name for c in plan.changed}
