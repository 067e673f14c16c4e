"""Whole-process measurements for the benchmarks that drive tools through their command lines (peers.py,
scale.py): wall time, CPU time (user + system, the child's and its descendants') and peak RSS of one run, read from
`wait4`, so nothing but the child is counted. Imports nothing from specmem: these benchmarks must keep working
whichever way the package is laid out."""

from __future__ import annotations

import math
import os
import shutil
import statistics
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SPECMEM = ROOT / ".venv" / "bin" / "specmem"
PYTHON = ROOT / ".venv" / "bin" / "python"


@dataclass(frozen=True)
class Run:
    wall_s: float
    cpu_s: float
    max_rss_mb: float
    stdout: str
    stderr: str


class RunFailed(RuntimeError):
    pass


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 3600.0,
) -> Run:
    """Run `cmd` to completion with its output in temporary files (never a pipe that could fill and stall it)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            [str(c) for c in cmd], stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=cwd
        )
        killer = threading.Timer(timeout, proc.kill)
        killer.start()
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        finally:
            killer.cancel()
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode("utf-8", "replace")
        stderr = err.read().decode("utf-8", "replace")
    if proc.returncode != 0:
        raise RunFailed(
            f"{' '.join(str(c) for c in cmd)} exited with {proc.returncode}:\n{stderr[-2000:]}{stdout[-500:]}"
        )
    # ru_maxrss is in KiB on Linux.
    return Run(wall, usage.ru_utime + usage.ru_stime, usage.ru_maxrss / 1024, stdout, stderr)


def clean_env(**extra: str) -> dict[str, str]:
    """The environment without SPECMEM_* settings (every run says what it indexes), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SPECMEM_")}
    env.update(extra)
    return env


def summary(runs: Sequence[Run]) -> dict[str, object]:
    """Medians, with every sample kept so that the spread can be judged."""
    return {
        "wall_s": round(statistics.median(r.wall_s for r in runs), 4),
        "cpu_s": round(statistics.median(r.cpu_s for r in runs), 4),
        "max_rss_mb": round(statistics.median(r.max_rss_mb for r in runs), 1),
        "wall_samples": [round(r.wall_s, 4) for r in runs],
        "cpu_samples": [round(r.cpu_s, 4) for r in runs],
    }


def slope(sizes: Sequence[float], values: Sequence[float]) -> float | None:
    """Least-squares slope of log(value) on log(size): the growth exponent (1.0 = linear in size)."""
    pairs = [(math.log(s), math.log(v)) for s, v in zip(sizes, values, strict=True) if s > 0 and v > 0]
    if len(pairs) < 2:
        return None
    mx = sum(x for x, _ in pairs) / len(pairs)
    my = sum(y for _, y in pairs) / len(pairs)
    den = sum((x - mx) ** 2 for x, _ in pairs)
    return round(sum((x - mx) * (y - my) for x, y in pairs) / den, 3) if den else None


def project_copy(corpus: Path, project: Path) -> Path:
    """`corpus` copied to `project` as a user's writable git repository (the shared data is read-only); returns
    its `specs/` folder."""
    shutil.copytree(corpus, project)
    for folder, _, names in os.walk(project):
        os.chmod(folder, 0o755)
        for name in names:
            os.chmod(os.path.join(folder, name), 0o644)
    git_init(project)
    return project / "specs"


def git_init(folder: Path) -> None:
    """Make `folder` the top of a git repository (no commit needed): memory files normally live in one, and
    specmem reads ignore files from the repository top down."""
    subprocess.run(["git", "init", "-q", str(folder)], check=True, capture_output=True)


def extract(commit: str, into: Path) -> Path:
    """The package as of `commit`, laid out to be imported from `into` (the repository maps three folders)."""
    into.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", commit, "specmem", "indexer", "server"],
        check=True,
        capture_output=True,
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    for sub in ("indexer", "server"):
        (into / sub).rename(into / "specmem" / sub)
    return into
