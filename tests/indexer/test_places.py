"""The one walk that says which markdown no root reads (indexer/places.py): which folder counts each file, so that
init's and scan's summary, their lines and their JSON are the same list."""

from __future__ import annotations

from pathlib import Path

from specmem.indexer import config, places
from specmem.indexer.config import Config
from tests.helpers import write


def searched(top: Path, roots: list[Path]) -> places.Found:
    own = config.with_places(
        Config(project=top, db_path=top / ".specmem" / "index.db", roots=tuple(roots), searches_project=True),
        (),
    )
    return places.search(top, own)


def test_each_unread_file_counts_in_the_folder_to_add_to_the_roots(tmp_path):
    top = tmp_path / "project"
    write(top / "specs" / "001-a" / "memory" / "a.md", "# Read\n")
    write(top / "docs" / "faq.md", "# FAQ\n")
    write(top / "docs" / "guide" / "intro.md", "# Intro\n")
    write(top / "apps" / "web" / "CLAUDE.md", "# Web\n")  # a place found by the walk: read
    write(top / "apps" / "web" / "README.md", "# Beside a place\n")
    write(top / "apps" / "web" / "src" / "notes.md", "# Below it\n")
    write(top / ".notes" / "n.md", "# Hidden\n")  # a hidden folder the walk does not enter
    write(top / "README.md", "# The project\n")
    write(top / "node_modules" / "x" / "y.md", "# Never counted\n")

    found = searched(top, [top / "specs"])

    assert [p.relative_to(top).as_posix() for _, p in found.places] == ["apps/web/CLAUDE.md"]
    assert found.left_out(top) == [
        ("docs", 2),  # the outermost folder holding no root, with every file below it
        (".", 1),  # the project's top holds the roots: its own files count there
        (".notes", 1),
        ("apps/web", 1),  # holds a place found in the same walk: the file counts in its own folder
        ("apps/web/src", 1),
    ]


def test_nothing_is_unread_when_the_project_is_the_root(tmp_path):
    top = tmp_path / "project"
    write(top / "docs" / "faq.md", "# FAQ\n")
    write(top / ".notes" / "n.md", "# Hidden: the scan of the root reports it as skipped\n")

    assert searched(top, [top]).left_out(top) == []
