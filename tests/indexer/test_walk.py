"""The walk over the roots: ignore rules exactly as git applies them, and a cost linear in the tree."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from specmem.indexer import files
from tests.helpers import chain

GIT = shutil.which("git")
T = TypeVar("T")


def calls_made(fn: Callable[[], T]) -> tuple[T, int]:
    """`fn()` and how many function calls (Python and C) it made: a cost that does not depend on the machine."""
    count = 0

    def profile(frame, event, arg):  # type: ignore[no-untyped-def]
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        result = fn()
    finally:
        sys.setprofile(None)
    return result, count


def test_the_walk_costs_linear_in_the_depth(isolated):
    """A file at depth 25 took 2.7 s to scan, 200 over 300 s: every path component re-walked the ignore files up
    to the repository top (depth³). Counted, not timed: twice as deep costs about twice the function calls."""
    (isolated / ".git").mkdir()
    (isolated / ".gitignore").write_text("*.tmp\nbuild/\n")
    costs = {}
    for depth in (40, 80):
        root = isolated / f"deep{depth}"
        root.mkdir()
        (root / ".gitignore").write_text("drafts/\n")
        bottom = chain(root, depth)
        (bottom / "x.md").write_text("# deep\n")
        (bottom / "drafts").mkdir()
        (bottom / "drafts" / "y.md").write_text("# ignored\n")
        walked, full = calls_made(lambda root=root: files.walk((root,)))
        assert list(walked.files) == [bottom / "x.md"]
        scoped, one = calls_made(
            lambda root=root, bottom=bottom: files.walk((root,), scopes=(bottom / "x.md",))
        )
        assert list(scoped.files) == [bottom / "x.md"]
        costs[depth] = (full, one)
    assert costs[80][0] < 2.5 * costs[40][0], costs  # depth³ would be 8 times
    assert costs[80][1] < 2.5 * costs[40][1], costs


def test_a_tree_deeper_than_the_recursion_limit_is_walked(specs):
    depth = 1200  # Python's recursion limit is 1000; the path stays under PATH_MAX (4096 bytes)
    bottom = chain(specs, depth, numbered=False)
    (bottom / "x.md").write_text("# very deep\n")
    try:
        walked = files.walk((specs,))
        assert list(walked.files) == [bottom / "x.md"] and not walked.problems
    finally:  # shutil.rmtree, which cleans pytest's folders, recurses: take the chain down here
        (bottom / "x.md").unlink()
        for folder in [bottom, *bottom.parents][:depth]:
            folder.rmdir()


# -- gitignore semantics, checked against git itself --------------------------------------------------------------

NAMES = ["a", "b", "build", "docs"]
FILES = ["x.md", "y.md", "keep.md", "n.bak.md"]
RULES = [
    "*.bak.md",
    "build/",
    "!keep.md",
    "b/",
    "/a",
    "docs/*.md",
    "!docs/y.md",
    "**/b/x.md",
    "x.md",
    "!x.md",
    "a/**",
    "!a/keep.md",
    "y.md",
    "/x.md",
    "*/",
    "!b/",
    "docs",
    "!build/keep.md",
    "a/b/",
    "!a/b/",
    "a/**/x.md",
    "**/build",
    "build/**",
    "!**/keep.md",
    "/**",
    "*.md",
    "!*/",
]
folders = st.lists(
    st.lists(st.sampled_from(NAMES), min_size=0, max_size=3).map(tuple), min_size=1, max_size=8
)
rules = st.lists(st.sampled_from(RULES), min_size=1, max_size=4)


@pytest.mark.skipif(GIT is None, reason="git is not installed")
# Found by this test: pathspec's `a/**` also matched the folder `a` (hiding a file a deeper .gitignore re-includes),
# and `!b/` re-included the files in b although a rule above excludes them.
@example(tree=[("a",)], names=["keep.md"], ignores={0: ["!keep.md"]}, top_rules=["a/**"])
@example(tree=[(), ("b",)], names=["x.md"], ignores={0: ["!b/"]}, top_rules=["/**"])
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    tree=folders,
    names=st.lists(st.sampled_from(FILES), min_size=1, max_size=4),
    ignores=st.dictionaries(st.integers(0, 7), rules, max_size=4),
    top_rules=st.none() | rules,
)
def test_ignore_rules_match_git(tree, names, ignores, top_rules):
    """Nested .gitignore files, negation, the deepest file winning, and a .gitignore above the root (at the
    repository top): the walk keeps exactly the memory files that git does not ignore."""
    with tempfile.TemporaryDirectory() as tmp:
        top = Path(tmp)
        subprocess.run([GIT, "init", "-q", str(top)], check=True)
        root = top / "specs"
        root.mkdir()
        if top_rules:
            (top / ".gitignore").write_text("".join(f"specs/{r.lstrip('/')}\n" for r in top_rules))
        made = [root / Path(*parts) for parts in tree]
        for i, folder in enumerate(made):
            folder.mkdir(parents=True, exist_ok=True)
            for name in names:
                (folder / name).write_text("# t\n")
            if i in ignores:
                (folder / ".gitignore").write_text("".join(f"{r}\n" for r in ignores[i]))
        listed = subprocess.run(
            [GIT, "-C", str(top), "ls-files", "--others", "--exclude-standard", "-z", "specs"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        expected = {top / p for p in listed.split("\0") if p.endswith(".md")}
        assert set(files.walk((root,)).files) == expected


PATHS = st.lists(
    st.sampled_from(["a", "b", "x.md", "build", "docs", "k|p", "[x]", "keep.md", "y.md"]),
    min_size=1,
    max_size=4,
)


@settings(max_examples=300, deadline=None)
@given(
    lines=st.lists(
        st.sampled_from([*RULES, "*.py[cod]", "k|p", "[]x]", "\\[x\\]", "**/docs/*.md", "!k|p"]), max_size=8
    ),
    path=PATHS,
    is_dir=st.booleans(),
)
def test_one_search_per_ignore_file_decides_as_its_lines_do(lines, path, is_dir):
    """An ignore file's lines are searched together first (most paths match none of them): that search finds a
    match whenever a line does, so the deepest matching line still decides."""
    rules = files.compile_rules(lines)
    rel = "/".join(path) + ("/" if is_dir else "")
    if rules is None:
        return
    by_line = next((exclude for regex, exclude in rules.lines if regex.search(rel)), None)
    assert (rules.any.search(rel) is not None) == (by_line is not None)
    layers = ((len("/r/"), rules),)
    assert files.IgnoreRules.matches(layers, "/r/" + "/".join(path), is_dir) == bool(by_line)
