"""The walk: deep folders and no-op rescans of many files, with the hash embedder (no model: this is the walk).

    .venv/bin/python tests/bench/walk.py                 # both
    .venv/bin/python tests/bench/walk.py deep            # one file at depth 25, 50, 100, 200
    .venv/bin/python tests/bench/walk.py rescan          # no-op rescan of 10,000 and 50,000 files

Every tree lives in a git repository (a `.git` folder at its top) with a `.gitignore` at the top, one in the root
and one half-way down, so that ignore rules from above the root take part as they do in a real project.

- deep: a first scan (walk, read, index) of one memory file at the bottom of a chain of folders;
- rescan: N files in folders of 100 under `specs/NNN-feature/memory/`, a first keyword scan, then the median of
  three no-op rescans (the walk, a stat per file and the comparison with the index; nothing is read), wall and
  CPU (this machine is shared: CPU time moves less with its load).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from tests.bench.common import record  # noqa: E402

DEPTHS = (25, 50, 100, 200)
SIZES = (10_000, 50_000)
TEXT = "---\ntitle: Note {i}\nimportance_tier: normal\n---\n# Note {i}\n\nSome words about item {i}.\n"


def repo(tmp: Path) -> Path:
    top = tmp / "repo"
    (top / ".git").mkdir(parents=True)
    (top / ".gitignore").write_text("*.tmp\nbuild/\n")
    (top / "specs").mkdir()
    (top / "specs" / ".gitignore").write_text("drafts/\n!keep.md\n")
    return top


def deep(depth: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        top = repo(Path(tmp))
        folder = top / "specs"
        for level in range(depth):
            folder = folder / f"d{level}"
            if level == depth // 2:
                folder.mkdir(parents=True)
                (folder / ".gitignore").write_text("*.bak.md\n")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "x.md").write_text(TEXT.format(i=0))
        cfg = config.resolve(db=Path(tmp) / "index.db", roots=[top / "specs"], model="hash:64", cwd=Path(tmp))
        conn = db.connect(cfg.db_path)
        started = time.perf_counter()
        report = scan(conn, cfg, get_embedder("hash:64"), embed=False)
        seconds = time.perf_counter() - started
        conn.close()
        assert report.added == 1, report
        return seconds


def rescan(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        top = repo(Path(tmp))
        for i in range(n):
            folder = top / "specs" / f"{i // 100:04d}-feature" / "memory"
            if i % 100 == 0:
                folder.mkdir(parents=True)
            (folder / f"note-{i}.md").write_text(TEXT.format(i=i))
        cfg = config.resolve(db=Path(tmp) / "index.db", roots=[top / "specs"], model="hash:64", cwd=Path(tmp))
        conn = db.connect(cfg.db_path)
        embedder = get_embedder("hash:64")
        started = time.perf_counter()
        first = scan(conn, cfg, embedder, embed=False)
        first_seconds = time.perf_counter() - started
        assert first.added == n, first
        times, cpu = [], []
        for _ in range(3):
            started, started_cpu = time.perf_counter(), time.process_time()
            report = scan(conn, cfg, embedder, embed=False)
            times.append(time.perf_counter() - started)
            cpu.append(time.process_time() - started_cpu)
            assert report.unchanged == n and not (report.added or report.updated or report.removed), report
        conn.close()
        return {
            "first_scan_s": round(first_seconds, 2),
            "noop_rescan_s": round(statistics.median(times), 3),
            "noop_rescan_cpu_s": round(statistics.median(cpu), 3),
        }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("which", nargs="?", choices=["deep", "rescan"])
    parser.add_argument("--max-depth", type=int, default=max(DEPTHS))
    parser.add_argument("--max-files", type=int, default=max(SIZES))
    args = parser.parse_args()
    figures: dict[str, object] = {}
    if args.which in (None, "deep"):
        figures["deep_scan_s"] = {}
        for depth in (d for d in DEPTHS if d <= args.max_depth):
            seconds = deep(depth)
            figures["deep_scan_s"][str(depth)] = round(seconds, 3)  # type: ignore[index]
            print(f"depth {depth}: {seconds:.3f} s", flush=True)
    if args.which in (None, "rescan"):
        figures["rescan"] = {}
        for n in (s for s in SIZES if s <= args.max_files):
            result = rescan(n)
            figures["rescan"][str(n)] = result  # type: ignore[index]
            print(f"{n} files: {result}", flush=True)
    record("walk", figures)


if __name__ == "__main__":
    main()
