"""Citations as people write them, read from a memory's text (indexer/cites.py): no file is looked at here."""

from __future__ import annotations

from pathlib import PurePosixPath

from specmem.indexer.cites import MAX_CITES, anchor_text, extract
from specmem.indexer.parse import parse


def cites(text: str) -> list[tuple[str, int | None, int | None, bool]]:
    found, _ = extract(parse(text.encode(), PurePosixPath("m.md")))
    return [(c.path, c.start, c.end, c.explicit) for c in found]


def test_links_with_line_anchors_as_github_writes_them():
    text = (
        "See [cache](../../src/cache.py#L10-L40), [one line](src/a.py#L7), [cols](src/b.py#L3C2-L5C9),\n"
        '[bare range](src/c.py#L4-9) and [titled](<src/d e.py#L2> "title").\n'
    )
    assert cites(text) == [
        ("../../src/cache.py", 10, 40, True),
        ("src/a.py", 7, 7, True),
        ("src/b.py", 3, 5, True),
        ("src/c.py", 4, 9, True),
        ("src/d e.py", 2, 2, True),
    ]


def test_paths_with_lines_in_text_and_inline_code():
    text = "The TTL is set in `src/cache.py#L10-L12`, read at src/cache.py:30 and lib/x.go:4-8.\n"
    assert cites(text) == [
        ("src/cache.py", 10, 12, False),
        ("src/cache.py", 30, 30, False),
        ("lib/x.go", 4, 8, False),
    ]


def test_whole_files_and_the_frontmatter_list():
    text = (
        "---\ntitle: t\ncites:\n  - src/cache.py#L10-L40\n  - src/util.py:3-4\n  - docs/design.md\n---\n"
        "Body with a [whole file](../Makefile).\n"
    )
    assert cites(text) == [
        ("src/cache.py", 10, 40, True),
        ("src/util.py", 3, 4, True),
        ("docs/design.md", None, None, True),
        ("../Makefile", None, None, False),  # counted only if the file exists (a link may be navigation)
    ]


def test_a_link_quoted_in_inline_code_is_read_as_a_path_in_the_text():
    assert cites("An example: `[x](../../src/cache.py#L10-L40)`.\n") == [
        ("../../src/cache.py", 10, 40, False)
    ]


def test_what_is_not_a_citation():
    text = (
        "![diagram](img/arch.png) [site](https://example.com/src/a.py#L3) [page](other.md) [section](#usage)\n"
        "[heading](src/a.py#usage) [folder](src/) <https://github.com/o/r/blob/main/src/a.py#L10>\n"
        "localhost:8080, ratio 3:1, 12:30, see https://x.org/a.py:10\n"
        "```\nsrc/in_fence.py#L1\n```\n<!-- src/in_comment.py#L2 -->\n"
    )
    assert cites(text) == []


def test_each_place_once_and_a_bound_on_how_many():
    same = "[a](src/a.py#L1-L2) and again src/a.py#L1-L2\n"
    assert cites(same) == [("src/a.py", 1, 2, True)]
    many = "\n".join(f"src/f{i}.py:{i + 1}" for i in range(MAX_CITES + 50))
    found, warnings = extract(parse(many.encode(), PurePosixPath("m.md")))
    assert len(found) == MAX_CITES and any(f"only the first {MAX_CITES}" in w for w in warnings)


def test_bad_entries_are_warned_about_not_fatal():
    text = "---\ncites:\n  - 7\n  - https://example.com/x.py\n  - src/a.py#L0\n---\nbody\n"
    found, warnings = extract(parse(text.encode(), PurePosixPath("m.md")))
    assert found == [] and len(warnings) == 3
    found, warnings = extract(parse(b"---\ncites: {a: 1}\n---\n", PurePosixPath("m.md")))
    assert found == [] and "should be a list" in warnings[0]


def test_anchor_rewritten_in_the_style_written():
    assert anchor_text("../../src/cache.py#L10-L40", 12, 42) == "../../src/cache.py#L12-L42"
    assert anchor_text("src/a.py#L7", 9, 9) == "src/a.py#L9"
    assert anchor_text("src/a.py:30-31", 32, 33) == "src/a.py:32-33"
    assert anchor_text("src/a.py:30", 31, 31) == "src/a.py:31"
