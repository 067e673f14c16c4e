"""Shared by the benchmarks: the corpus location, a percentile, and a fresh copy of the corpus with its config."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from indexer import config  # noqa: E402

CORPUS = Path(__file__).resolve().parents[3] / "shared" / "data" / "md-hugo-docs"


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def hugo_copy(tmp: Path) -> tuple[Path, config.Config]:
    """The 1,000 hugo pages copied under `tmp`, and a config indexing them into `tmp/index.db`."""
    root = tmp / "hugo"
    shutil.copytree(CORPUS, root)
    return root, config.resolve(db=tmp / "index.db", roots=[root], cwd=tmp)
