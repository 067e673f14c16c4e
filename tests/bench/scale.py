"""How the keyword phase grows with the corpus: md-manpages-2000 copied to 2,000, 10,000 and 50,000 files.

    nice .venv/bin/python tests/bench/scale.py                       # 2k, 10k, 50k: about 30 minutes
    nice .venv/bin/python tests/bench/scale.py --sizes 2000,10000    # a quicker curve

Each size is a fresh project (a git repository with `specs/`) holding as many copies of the corpus as needed, every
copy in its own spec folders (`c07-056-alloc-hugepages-syscall/memory/…`) and every file given one line naming its
copy, so that no two files are alike. Only one size exists on disk at a time. For each size, keyword phase only
(`--no-embed`), through the CLI as a user runs it:

- first index into a new database: wall, CPU, peak RSS, and the scan's own keyword-phase time (`--json`);
- no-op rescan and one-file-changed rescan: whole process (wall, CPU, peak RSS) and the scan's own time;
- keyword search in-process: p50/p95 over fixed queries through the library's search function, in one Python
  process that imports it once; and how many chunks each query matches. Three times: with every constitutional
  memory listed ahead of the results (the library function's default, what `memory_context` and a stdio session's
  first search do; the copies multiply the rules: 33 at 2k, 825 at 50k), as users get a search (the 3 most
  relevant rules on top, `SPECMEM_SURFACE`'s default), and with `include_constitutional=False`, which leaves the
  keyword retrieval alone;
- keyword search as one CLI process (`specmem search --mode keyword`).

Then the growth exponent of each figure between sizes: the slope of log(time) on log(files), 1.0 meaning linear.
Whole-process figures carry a constant start-up cost, so their exponents understate the growth of the work itself;
the in-process ones do not.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from peers import CORPUS_NAME, QUERIES  # noqa: E402
from runner import PYTHON, ROOT, SPECMEM, Run, clean_env, git_init, run, slope, summary  # noqa: E402

# Runs in a child process so that this benchmark imports nothing of specmem itself.
SEARCH_CHILD = r"""
import json, sys, time
from pathlib import Path
from specmem.indexer import db
from specmem.server.search import fts_query, search

path, queries, reps = Path(sys.argv[1]), json.loads(sys.argv[2]), int(sys.argv[3])
conn = db.connect(path, readonly=True)
matched = {}
for q in queries:
    search(conn, q, mode="keyword", limit=10)  # warm: pages in the cache, statements prepared
    matched[q] = conn.execute(
        "SELECT count(*) FROM memory_fts WHERE memory_fts MATCH ?", (fts_query(q),)
    ).fetchall()[0][0]
out = {"matched_chunks": matched}
variants = (("default", True, None), ("surfaced", True, 3), ("no_constitutional", False, None))
for name, surfaced, surface in variants:
    wall, cpu, shown = [], [], 0
    for _ in range(reps):
        for q in queries:
            w, c = time.perf_counter(), time.process_time()
            found = search(conn, q, mode="keyword", limit=10, include_constitutional=surfaced, surface=surface)
            shown = len(found.results)
            wall.append((time.perf_counter() - w) * 1000)
            cpu.append((time.process_time() - c) * 1000)
    out[name] = {"wall_ms": wall, "cpu_ms": cpu, "results": shown}
print(json.dumps(out))
"""


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def make_corpus(source: Path, project: Path, files: int) -> int:
    """`files` memory files under project/specs/, copies of `source`'s, each copy in its own spec folders."""
    originals = sorted(p.relative_to(source / "specs") for p in (source / "specs").rglob("*.md"))
    contents = {rel: (source / "specs" / rel).read_bytes() for rel in originals}
    made = 0
    for copy in range(math.ceil(files / len(originals))):
        for rel in originals:
            if made == files:
                return made
            target = project / "specs" / f"c{copy:02d}-{rel.parts[0]}" / Path(*rel.parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(contents[rel] + f"\nCopy {copy} of this page.\n".encode())
            made += 1
    return made


def scan(db: Path, root: Path) -> tuple[Run, dict[str, object]]:
    r = run([SPECMEM, "scan", "--no-embed", "--json", "--db", db, root], env=clean_env(), timeout=7200)
    return r, json.loads(r.stdout)


def measure_size(
    tmp: Path, source: Path, files: int, runs: int, reps: int, *, keep: bool = False
) -> dict[str, object]:
    project = tmp / f"project-{files}"
    t = time.perf_counter()
    made = make_corpus(source, project, files)
    git_init(project)
    root = project / "specs"
    out: dict[str, object] = {"files": made, "generate_s": round(time.perf_counter() - t, 1)}
    db = tmp / f"index-{files}" / "index.db"
    print(f"{made} files: first index", file=sys.stderr)

    first, report = scan(db, root)
    assert report["added"] == made, report
    stats = json.loads(run([SPECMEM, "stats", "--json", "--db", db], env=clean_env()).stdout)
    out["chunks"] = stats["chunks"]
    out["files_mb"] = round(stats["files_bytes"] / 1e6, 1)
    out["db_mb"] = round(stats["db_bytes"] / 1e6, 1)
    out["first_index"] = {**summary([first]), "scan_s": round(report["keyword_seconds"], 3)}  # type: ignore[arg-type]

    print(f"{made} files: no-op rescan", file=sys.stderr)
    scan(db, root)  # warm
    noop, noop_scan_s = [], []
    for _ in range(runs):
        r, report = scan(db, root)
        assert report["unchanged"] == made and report["updated"] == report["added"] == 0, report
        noop.append(r)
        noop_scan_s.append(report["seconds"])
    out["noop_rescan"] = {**summary(noop), "scan_s": round(statistics.median(noop_scan_s), 4)}  # type: ignore[arg-type]

    print(f"{made} files: one file changed", file=sys.stderr)
    paths = sorted(root.rglob("*.md"))
    changed, changed_scan_s = [], []
    for i in range(runs):
        with open(paths[(i * 7919 + 13) % len(paths)], "a", encoding="utf-8") as fh:
            fh.write(f"\n\nEdited paragraph number {i}: the zanzibar{i} setting changes nothing else.\n")
        r, report = scan(db, root)
        assert report["updated"] == 1 and report["added"] == 0, report
        changed.append(r)
        changed_scan_s.append(report["seconds"])
    out["one_file_changed"] = {
        **summary(changed),  # type: ignore[arg-type]
        "scan_s": round(statistics.median(changed_scan_s), 4),
    }

    print(f"{made} files: keyword search in-process", file=sys.stderr)
    child = run([PYTHON, "-c", SEARCH_CHILD, db, json.dumps(QUERIES), str(reps)], env=clean_env(), cwd=ROOT)
    found = json.loads(child.stdout)
    for name, key in (
        ("default", "search_inprocess"),
        ("surfaced", "search_inprocess_surfaced"),
        ("no_constitutional", "search_inprocess_no_constitutional"),
    ):
        f = found[name]
        out[key] = {
            "p50_ms": round(pct(f["wall_ms"], 50), 2),
            "p95_ms": round(pct(f["wall_ms"], 95), 2),
            "cpu_p50_ms": round(pct(f["cpu_ms"], 50), 2),
            "cpu_p95_ms": round(pct(f["cpu_ms"], 95), 2),
            "results_shown": f["results"],
        }
    out["search_queries"] = {"queries": QUERIES, "reps": reps, "matched_chunks": found["matched_chunks"]}

    print(f"{made} files: keyword search, whole process", file=sys.stderr)
    cli = [
        run(
            [SPECMEM, "search", "--mode", "keyword", "-n", "10", "--db", db, QUERIES[i % len(QUERIES)]],
            env=clean_env(),
        )
        for i in range(-1, max(runs, len(QUERIES)))
    ][1:]  # the first one warms up
    out["search_cli"] = summary(cli)

    if not keep:
        shutil.rmtree(project)
        shutil.rmtree(db.parent)
    return out


# (name in the table and the curve, path into a size's figures)
CURVE = [
    ("first index, wall s", ("first_index", "wall_s")),
    ("first index, CPU s", ("first_index", "cpu_s")),
    ("first index, peak RSS MB", ("first_index", "max_rss_mb")),
    ("no-op rescan, wall s", ("noop_rescan", "wall_s")),
    ("no-op rescan, CPU s", ("noop_rescan", "cpu_s")),
    ("no-op rescan, in-scan s", ("noop_rescan", "scan_s")),
    ("no-op rescan, peak RSS MB", ("noop_rescan", "max_rss_mb")),
    ("one file changed, wall s", ("one_file_changed", "wall_s")),
    ("one file changed, CPU s", ("one_file_changed", "cpu_s")),
    ("one file changed, in-scan s", ("one_file_changed", "scan_s")),
    ("keyword search in-process p50 ms", ("search_inprocess", "p50_ms")),
    ("keyword search in-process p95 ms", ("search_inprocess", "p95_ms")),
    ("keyword search in-process CPU p50 ms", ("search_inprocess", "cpu_p50_ms")),
    (
        "same, the 3 most relevant rules on top (SPECMEM_SURFACE), p50 ms",
        ("search_inprocess_surfaced", "p50_ms"),
    ),
    ("same, the 3 most relevant rules on top, CPU p50 ms", ("search_inprocess_surfaced", "cpu_p50_ms")),
    ("same, no constitutional memories surfaced, p50 ms", ("search_inprocess_no_constitutional", "p50_ms")),
    ("same, no constitutional memories surfaced, p95 ms", ("search_inprocess_no_constitutional", "p95_ms")),
    (
        "same, no constitutional memories surfaced, CPU p50 ms",
        ("search_inprocess_no_constitutional", "cpu_p50_ms"),
    ),
    ("keyword search CLI, wall s", ("search_cli", "wall_s")),
    ("keyword search CLI, CPU s", ("search_cli", "cpu_s")),
]


def curve(sizes: dict[int, dict[str, object]]) -> dict[str, object]:
    """Every figure against size, with the growth exponent between neighbouring sizes and over all of them."""
    ns = sorted(sizes)
    out: dict[str, object] = {}
    for name, (part, key) in CURVE:
        values = [sizes[n][part][key] for n in ns]  # type: ignore[index]
        out[name] = {
            "values": dict(zip(map(str, ns), values, strict=True)),
            "exponent": slope(ns, values),
            "exponents_between": {
                f"{ns[i]}-{ns[i + 1]}": slope(ns[i : i + 2], values[i : i + 2]) for i in range(len(ns) - 1)
            },
        }
    return out


def table(sizes: dict[int, dict[str, object]], grown: dict[str, object]) -> str:
    ns = sorted(sizes)
    head = " | ".join(f"{n:,} files ({sizes[n]['chunks']:,} chunks)" for n in ns)
    lines = [f"| measure | {head} | growth exponent |", "|---|" + "---|" * len(ns) + "---|"]
    for name, _ in CURVE:
        row = grown[name]
        cells = " | ".join(f"{row['values'][str(n)]:.3g}" for n in ns)  # type: ignore[index]
        lines.append(f"| {name} | {cells} | {row['exponent']} |")  # type: ignore[index]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="2000,10000,50000", help="Comma-separated file counts.")
    parser.add_argument("--runs", type=int, default=5, help="Runs of each rescan and CLI search (default 5).")
    parser.add_argument(
        "--reps", type=int, default=5, help="In-process repetitions of each query (default 5)."
    )
    parser.add_argument(
        "--keep",
        type=Path,
        help="Work in this folder instead of a temporary one and leave the largest size's project and index "
        "there (for profiling); delete it yourself.",
    )
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    if not SPECMEM.exists():
        sys.exit(f"{SPECMEM} is missing: run ./scripts/setup.sh first")

    from common import corpus, record

    source = corpus(CORPUS_NAME)
    sizes: dict[int, dict[str, object]] = {}
    load_before = os.getloadavg()
    ordered = sorted(int(s) for s in args.sizes.split(","))
    with tempfile.TemporaryDirectory(prefix="specmem-scale-") as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        for n in ordered:
            sizes[n] = measure_size(
                work, source, n, args.runs, args.reps, keep=bool(args.keep) and n == ordered[-1]
            )
            print(json.dumps(sizes[n], indent=1), file=sys.stderr)
    grown = curve(sizes)
    print(table(sizes, grown))
    if not args.no_record:
        record(
            "scale",
            {
                "corpus": CORPUS_NAME,
                "runs": args.runs,
                "reps": args.reps,
                "queries": QUERIES,
                "loadavg_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
                "sizes": {str(n): v for n, v in sizes.items()},
                "curve": grown,
            },
        )


if __name__ == "__main__":
    main()
