"""Citations of code checked in real git repositories made here: baselines from the commit that last changed the
memory, statuses kept by scans and the watcher, rebuilds that give the same answer, and hostile cited files."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from specmem.api import Memories
from specmem.indexer import citations, db, gitrepo
from specmem.indexer.cites import MAX_CITES
from specmem.indexer.scan import scan
from specmem.indexer.watch import Watcher
from tests.helpers import git, memory, wait_for, write

CODE = "".join(f"line {i}\n" for i in range(1, 61))  # line N of the file reads "line N"


def statuses(conn) -> list[tuple]:
    """(memory, target, status, lines now) of every citation, in a stable order."""
    return [
        tuple(r)
        for r in conn.execute(
            "SELECT m.rel_path, c.target, c.status, c.now_start, c.now_end FROM citations c "
            "JOIN memory_index m ON m.id = c.memory_id ORDER BY m.rel_path, c.seq"
        )
    ]


def first(conn, sql: str, args=()):
    found = db.rows(conn, sql, args)
    return found[0] if found else None


def one(conn, target: str):
    return first(conn, "SELECT * FROM citations WHERE target = ?", (target,))


@pytest.fixture
def repo(isolated: Path) -> Path:
    """The test's project as a git repository: src/cache.py (60 lines) and a memory citing lines 10-12, committed."""
    git(isolated, "init", "-q")
    write(isolated / "src" / "cache.py", CODE)
    write(
        isolated / "specs" / "003-cache" / "memory" / "ttl.md",
        memory("Cache TTL", "Entries live 5 minutes: [ttl](../../../src/cache.py#L10-L12)."),
    )
    git(isolated, "add", ".")
    git(isolated, "commit", "-q", "-m", "memory and code", date="2026-01-01T10:00:00Z")
    return isolated


def edit(path: Path, change) -> None:
    lines = path.read_text().splitlines(keepends=True)
    change(lines)
    path.write_text("".join(lines))


LINK = "../../../src/cache.py#L10-L12"


def test_a_change_outside_the_cited_lines_leaves_it_current(repo, run_scan, conn):
    run_scan()
    assert one(conn, LINK).status == "current" and one(conn, LINK).baseline.startswith("git ")
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(49, "line 50 edited\n"))
    report = run_scan()
    assert one(conn, LINK).status == "current" and report.citations_changed == 0


def test_lines_inserted_above_make_it_moved_with_the_new_lines(repo, run_scan, conn):
    run_scan()
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(slice(0, 0), ["# a\n", "# b\n", "# c\n"]))
    report = run_scan()
    row = one(conn, LINK)
    assert (row.status, row.now_start, row.now_end, row.diff) == ("moved", 13, 15, None)
    assert report.citations_changed == 1


def test_an_edit_inside_the_span_makes_it_changed_with_the_diff(repo, run_scan, conn):
    run_scan()
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(10, "TTL = 30  # seconds\n"))
    run_scan()
    row = one(conn, LINK)
    assert (row.status, row.now_start, row.now_end) == ("changed", 10, 12)
    assert row.diff.splitlines()[2:] == [
        "@@ -10,3 +10,3 @@",
        " line 10",
        "-line 11",
        "+TTL = 30  # seconds",
        " line 12",
    ]


def test_deleting_the_file_or_the_lines_makes_it_missing(repo, run_scan, conn):
    run_scan()
    (repo / "src" / "cache.py").write_text("line 1\nline 2\n")
    run_scan()
    assert one(conn, LINK).status == "missing"
    (repo / "src" / "cache.py").unlink()
    run_scan()
    assert (one(conn, LINK).status, one(conn, LINK).note) == ("missing", "the file is gone")


def test_deleting_the_index_and_scanning_again_reproduces_every_status(repo, cfg, hash_embedder):
    write(repo / "src" / "util.py", CODE)
    write(repo / "src" / "gone.py", CODE)
    write(
        repo / "specs" / "004-util" / "memory" / "util.md",
        memory(
            "Util",
            "Helpers at `src/util.py#L5-L6`, src/util.py:40-41, src/gone.py:3 and the whole [file](../../../src/util.py).",
            cites="[src/cache.py:50-52]",
        ),
    )
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "util", date="2026-02-01T10:00:00Z")
    edit(repo / "src" / "util.py", lambda lines: lines.__setitem__(slice(0, 0), ["# new\n"]))  # all moved
    edit(repo / "src" / "util.py", lambda lines: lines.__setitem__(40, "changed\n"))  # 40-41 → changed
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(10, "changed\n"))  # ttl → changed
    git(repo, "commit", "-q", "-am", "code moves on", date="2026-03-01T10:00:00Z")
    (repo / "src" / "gone.py").unlink()  # not even committed: the working tree is what is compared
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, hash_embedder)
    before = statuses(conn)
    conn.close()
    assert {s for _, _, s, _, _ in before} == {"current", "moved", "changed", "missing"}, before
    for suffix in ("", "-wal", "-shm"):
        Path(f"{cfg.db_path}{suffix}").unlink(missing_ok=True)
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, hash_embedder)
    assert statuses(conn) == before
    conn.close()


def test_a_memory_committed_after_it_was_indexed_takes_its_commits_baseline(repo, run_scan, conn):
    run_scan()
    notes = repo / "specs" / "005-notes" / "memory" / "n.md"
    write(notes, memory("Notes", "See src/cache.py:20-21."))
    run_scan()
    assert one(conn, "src/cache.py:20-21").baseline == "worktree"
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(19, "edited\n"))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "notes with the edited code")
    run_scan()
    row = one(conn, "src/cache.py:20-21")
    # What a rebuild would say: the memory's commit holds the edited code, so it is current.
    assert row.baseline.startswith("git ") and row.status == "current"


def test_citations_that_escape_the_repository_are_refused_and_never_read(repo, run_scan, conn, monkeypatch):
    outside = repo.parent / "secret.py"
    outside.write_text("password = 1\n")
    (repo / "src" / "link.py").symlink_to(outside)
    (repo / "src" / "folder").symlink_to(repo.parent, target_is_directory=True)
    write(
        repo / "specs" / "006-x" / "memory" / "x.md",
        memory(
            "Escapes",
            "[up](../../../../secret.py#L1), [dots](../../../src/../../secret.py#L1), [link](../../../src/link.py#L1),\n"
            "src/folder/secret.py:1 and the real [one](../../../src/cache.py#L1).",
        ),
    )
    looked: list[str] = []
    real_look = citations.look
    monkeypatch.setattr(citations, "look", lambda f, *a, **k: looked.append(f) or real_look(f, *a, **k))
    run_scan()
    row = first(conn, "SELECT id, warnings FROM memory_index WHERE rel_path = '006-x/memory/x.md'")
    targets = [r[0] for r in conn.execute("SELECT target FROM citations WHERE memory_id = ?", (row.id,))]
    assert targets == ["../../../src/cache.py#L1"]
    refused = [w for w in json.loads(row.warnings) if "outside the repository" in w]
    assert len(refused) == 4, refused
    assert all(os.path.realpath(f).startswith(str(repo)) for f in looked) and str(outside) not in looked


def test_hostile_cited_files(isolated, run_scan, conn):
    """No git here: baselines come from the working tree. A 1 GB file (sparse), a FIFO and a folder are never
    read; a binary file is compared as a whole; 10,000 citations in one memory are bounded."""
    src = isolated / "src"
    src.mkdir()
    with open(src / "huge.bin", "wb") as fh:
        fh.truncate(1 << 30)
    os.mkfifo(src / "pipe")
    (src / "blob.bin").write_bytes(b"\x00\x01binary" * 100)
    write(src / "many.py", CODE)
    many = "\n".join(f"src/many.py:{1 + i % 60}-{1 + i % 60 + i // 60}" for i in range(10_000))
    write(
        isolated / "specs" / "007-h" / "memory" / "h.md",
        memory(
            "Hostile",
            "[huge](../../../src/huge.bin#L1) [pipe](../../../src/pipe#L1) [blob](../../../src/blob.bin#L2)\n"
            "[folder](../../../src#L1)\n\n" + many + "\n" + "[" * 100_000 + "](" + " x.py:1" * 30_000,
        ),
    )
    report = run_scan()
    assert report.added == 1
    by_target = {r.target: r for r in db.rows(conn, "SELECT target, status, note FROM citations")}
    assert by_target["../../../src/huge.bin#L1"].status == "unchecked"
    assert "over the" in by_target["../../../src/huge.bin#L1"].note
    assert by_target["../../../src/pipe#L1"].status == "unchecked"
    assert "not a regular file" in by_target["../../../src/pipe#L1"].note
    assert by_target["../../../src/blob.bin#L2"].status == "current"
    assert len(by_target) == MAX_CITES
    warnings = first(conn, "SELECT warnings FROM memory_index").warnings
    assert f"only the first {MAX_CITES}" in warnings
    (src / "blob.bin").write_bytes(b"\x00\x02other" * 100)
    run_scan()
    blob = one(conn, "../../../src/blob.bin#L2")
    assert blob.status == "changed" and blob.diff is None and "binary" in blob.note


def test_a_cited_file_over_the_limit_in_git_is_not_read(repo, cfg, hash_embedder, monkeypatch):
    monkeypatch.setenv("SPECMEM_MAX_FILE_BYTES", "200")
    from specmem.indexer import config

    small = config.resolve()
    conn = db.connect(small.db_path)
    scan(conn, small, hash_embedder)
    row = one(conn, LINK)
    assert row.status == "unchecked" and "over the" in row.note
    conn.close()


def test_the_watcher_sees_a_cited_files_edit_and_the_next_search_reports_it(repo, cfg, hash_embedder):
    watcher = Watcher(cfg, hash_embedder, debounce=0.05, embed=False)
    watcher.start()
    try:
        wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
        with Memories(cfg, embedder=hash_embedder) as mem:
            assert mem.search("entries live", mode="keyword").results[0].code == "current"
            edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(10, "TTL = 30\n"))

            def reported() -> bool:
                hit = mem.search("entries live", mode="keyword").results[0]
                return hit.code == "changed" and hit.code_notes == ["src/cache.py:10-12 changed (now 10-12)"]

            wait_for(reported, what="the search to report the changed code")
    finally:
        watcher.stop()


def test_confirming_a_memory_rebaselines_it_and_rewrites_moved_anchors(repo, cfg, hash_embedder):
    path = repo / "specs" / "003-cache" / "memory" / "ttl.md"
    before = path.read_text()
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(slice(0, 0), ["# a\n", "# b\n"]))
    edit(
        repo / "src" / "cache.py", lambda lines: lines.__setitem__(12, "TTL = 30\n")
    )  # old line 11, in the span
    with Memories(cfg, embedder=hash_embedder) as mem:
        mem.scan()
        assert [m.title for m in mem.stale().items] == ["Cache TTL"]
        written = mem.update("003-cache/memory/ttl.md", confirm_citations=True)
        assert written.changed == [f"{LINK} → ../../../src/cache.py#L12-L14", "cites_checked"]
        assert mem.stale().total == 0
        got = mem.get("003-cache/memory/ttl.md")
        assert got.code == "current" and got.citations[0].baseline == "working tree"
    after = path.read_text()
    assert after.replace("#L12-L14", "#L10-L12").replace(after.splitlines()[2] + "\n", "") == before


def test_stale_lists_the_longest_unreviewed_first(repo, cfg, hash_embedder):
    write(repo / "specs" / "008-b" / "memory" / "b.md", memory("Later", "Also src/cache.py:11."))
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "later", date="2026-05-01T10:00:00Z")
    edit(repo / "src" / "cache.py", lambda lines: lines.__setitem__(10, "TTL = 30\n"))
    with Memories(cfg, embedder=hash_embedder) as mem:
        mem.scan()
        found = mem.stale()
    assert [m.title for m in found.items] == ["Cache TTL", "Later"] and found.total == 2
    assert found.items[0].written_ms < found.items[1].written_ms
    assert found.items[1].citations[0].diff.endswith("-line 11\n+TTL = 30")


def test_memories_without_citations_cost_no_git(isolated, run_scan, conn, monkeypatch):
    git(isolated, "init", "-q")
    write(
        isolated / "specs" / "001-a" / "memory" / "a.md",
        memory("Plain", "No code named here, see [b](b.md)."),
    )
    calls: list[object] = []
    monkeypatch.setattr(gitrepo.Repo, "_run", lambda self, *a, **k: calls.append(a))
    run_scan()
    assert calls == [] and conn.execute("SELECT count(*) FROM citations").fetchall()[0][0] == 0
