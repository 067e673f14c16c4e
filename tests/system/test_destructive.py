"""Destructive operations against an editor and against other checkpoints, and the write side kept to the
configured roots: a delete's undo holds what an editor appended until the file was removed; automatic
checkpoints never evict manual ones; rows of a root no longer configured are nobody's duplicate and take no votes."""

from __future__ import annotations

import pytest

import specmem
from specmem.indexer import checkpoints
from specmem.indexer.errors import NotFound
from tests.helpers import memory, write

APPENDED = "".join(f"line appended by the editor {i}\n" for i in range(40))


def test_a_deletes_undo_holds_what_an_editor_appended_after_its_checkpoint(specs, cfg, run_scan, monkeypatch):
    path = write(specs / "001-a" / "memory" / "notes.md", memory("Notes", "first lines"))
    run_scan()
    real_create = checkpoints.create

    def editor_appends_right_after(*args, **kwargs):
        info = real_create(*args, **kwargs)
        with open(path, "a", encoding="utf-8") as fh:  # between the checkpoint and the removal
            fh.write(APPENDED)
        return info

    monkeypatch.setattr(checkpoints, "create", editor_appends_right_after)
    with specmem.open() as mem:
        deleted = mem.delete("001-a/memory/notes.md")
        assert not path.exists()
        monkeypatch.setattr(checkpoints, "create", real_create)
        mem.restore(deleted.checkpoint)
    assert path.read_text().endswith(APPENDED), "lines appended before the removal were lost"


def test_a_spec_folder_deletes_undo_holds_what_an_editor_appended(specs, cfg, run_scan, monkeypatch):
    paths = [write(specs / "002-b" / "memory" / f"m{i}.md", memory(f"M{i}", f"body {i}")) for i in range(3)]
    run_scan()
    real_create = checkpoints.create

    def editor_appends_right_after(*args, **kwargs):
        info = real_create(*args, **kwargs)
        for path in paths:
            with open(path, "a", encoding="utf-8") as fh:
                fh.write(APPENDED)
        return info

    monkeypatch.setattr(checkpoints, "create", editor_appends_right_after)
    with specmem.open() as mem:
        deleted = mem.delete(spec_folder="002-b", confirm=True)
        monkeypatch.setattr(checkpoints, "create", real_create)
        mem.restore(deleted.checkpoint)
    assert all(p.read_text().endswith(APPENDED) for p in paths)


def test_automatic_checkpoints_never_evict_manual_ones(specs, cfg, run_scan, monkeypatch):
    monkeypatch.setenv("SPECMEM_CHECKPOINT_MAX", "3")
    for i in range(8):
        write(specs / "001-a" / "memory" / f"m{i}.md", memory(f"M{i}", f"body {i}"))
    run_scan()
    with specmem.open() as mem:
        mem.checkpoint("before-cleanup")
        for i in range(8):
            mem.delete(f"001-a/memory/m{i}.md")
        names = [c.name for c in mem.checkpoints()]
    assert "before-cleanup" in names
    assert sum(1 for n in names if n.startswith("auto-")) == 3


@pytest.fixture
def removed_root(specs, isolated, cfg, run_scan, monkeypatch):
    """A memory indexed under a second root, which is then removed from the configuration (no scan since)."""
    other = isolated / "other-root"
    write(other / "001-a" / "memory" / "old.md", memory("Use Postgres", "Approved in the review."))
    write(specs / "001-a" / "memory" / "kept.md", memory("Kept", "an ordinary memory"))
    monkeypatch.setenv("SPECMEM_ROOTS", f"{specs}:{other}")
    with specmem.open() as mem:
        mem.scan()
        old_id = mem.get(str(other / "001-a" / "memory" / "old.md")).id
    monkeypatch.setenv("SPECMEM_ROOTS", str(specs))
    return old_id


def test_rows_outside_the_roots_are_nobodys_duplicate(removed_root, specs):
    with specmem.open() as mem:
        written = mem.write("Use Postgres", "Approved in the review.", "001-a")
        assert written.action != "skipped" and not written.duplicates, written
        again = mem.write("Use Postgres", "Approved in the review.", "001-a", on_duplicate="update")
        assert again.id == written.id


def test_rows_outside_the_roots_take_no_votes(removed_root):
    with specmem.open() as mem, pytest.raises(NotFound):
        mem.validate(removed_root, True)
