"""The README's benchmark figures are the recorded results: scripts/readme_tables.py writes them from
tests/bench/results/*.json, and this test fails when the two disagree."""

from __future__ import annotations

import difflib
import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RESULTS = ROOT / "tests" / "bench" / "results"


def readme_tables():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("readme_tables", ROOT / "scripts" / "readme_tables.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_readme_figures_equal_the_recorded_results():
    tables = readme_tables()
    text = (ROOT / "README.md").read_text()
    assert {name for name, _ in tables.BLOCK.findall(text)} == set(
        tables.RENDERERS
    )  # every block, every renderer
    rendered = tables.render(text)
    diff = "".join(
        difflib.unified_diff(text.splitlines(True), rendered.splitlines(True), "README.md", "results")
    )
    assert rendered == text, "run .venv/bin/python scripts/readme_tables.py:\n" + diff


def test_every_result_says_how_and_where_it_was_measured():
    files = sorted(RESULTS.glob("*.json"))
    assert files
    for path in files:
        data = json.loads(path.read_text())
        assert data["bench"] and data["command"].startswith(
            ("OMP_NUM_THREADS=", ".venv/bin/python tests/bench/")
        )
        assert len(data["git_commit"]) == 40 and data["cpu_count"] >= 1, path.name
        assert set(data["threads"]) >= {"OMP_NUM_THREADS", "MKL_NUM_THREADS"} and data["figures"], path.name
