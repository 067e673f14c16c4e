"""No function in indexer/, server/ or specmem/ above cyclomatic complexity 25 (radon) or longer than 80 lines:
a main path reads as its stages (STYLE.md, 19). Run by scripts/check.sh, as CI does.

    .venv/bin/python scripts/complexity.py
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from radon.complexity import cc_visit

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("indexer", "server", "specmem")
MAX_COMPLEXITY = 25
MAX_LINES = 80


def functions(blocks: list[Any]) -> Iterator[Any]:
    """Every function, method and closure among radon's blocks, once each (radon lists a class's methods both
    on their own and in the class)."""
    seen: set[tuple[int, str]] = set()
    stack = list(blocks)
    while stack:
        block = stack.pop()
        if hasattr(block, "methods"):  # a class
            stack += [*block.methods, *block.inner_classes]
            continue
        if (block.lineno, block.name) not in seen:
            seen.add((block.lineno, block.name))
            yield block
        stack += block.closures


def main() -> int:
    found = []
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*.py")):
            for fn in functions(cc_visit(path.read_text(encoding="utf-8"))):
                lines = fn.endline - fn.lineno + 1
                if fn.complexity > MAX_COMPLEXITY or lines > MAX_LINES:
                    where = f"{path.relative_to(ROOT)}:{fn.lineno}"
                    found.append(f"{where} {fn.name}: complexity {fn.complexity}, {lines} lines")
    for line in found:
        print(line)
    if found:
        print(
            f"{len(found)} function(s) above complexity {MAX_COMPLEXITY} or {MAX_LINES} lines: split them into "
            "named steps",
            file=sys.stderr,
        )
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
