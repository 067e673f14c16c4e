"""Rewrite generated blocks of the README, or check that they are current: the one routine behind
scripts/readme_cli.py (the CLI reference) and scripts/readme_tables.py (the benchmark figures). Each of those
gives `main` its own `render(text) -> text`, which rewrites its marked blocks and nothing else.
"""

from __future__ import annotations

import argparse
import difflib
import sys
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def stale(text: str, render: Callable[[str], str]) -> str:
    """The difference between `text` and its blocks rendered anew (a unified diff); empty when they agree."""
    new = render(text)
    return "".join(difflib.unified_diff(text.splitlines(True), new.splitlines(True), "README.md", "rendered"))


def main(
    doc: str | None,
    render: Callable[[str], str],
    rewritten: str,
    failures: tuple[type[Exception], ...] = (),
) -> int:
    """Rewrite README.md with `render` (saying `rewritten` on stderr), or with --check print the difference and
    return 1 when it is stale. A `failures` exception (results missing) is one line on stderr and exit 2."""
    parser = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 when README.md is stale")
    args = parser.parse_args()
    text = README.read_text()
    try:
        new = render(text)
    except failures as exc:
        print(f"{Path(sys.argv[0]).stem}: {exc}", file=sys.stderr)
        return 2
    if new == text:
        return 0
    if args.check:
        sys.stdout.write(stale(text, lambda _: new))
        return 1
    README.write_text(new)
    print(f"README.md: {rewritten}", file=sys.stderr)
    return 0
