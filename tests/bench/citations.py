"""What citations of code cost a rescan: 2,000 memories with 5,000 citations against the same 2,000 memories citing
nothing, in git repositories, scanned in this process with the hash embedder (keyword phase only: no model).

    nice .venv/bin/python tests/bench/citations.py             # records tests/bench/results/citations.json
    nice .venv/bin/python tests/bench/citations.py --no-record

Two projects are made side by side, identical but for the citations: in the plain one each citation's text is
replaced by words of the same length, so both have the same files, sizes and chunks. Each has `src/` with the
code files (200 lines each) and `specs/NNN/memory/*.md`, all committed. Citations mix the forms people write:
links with line anchors, `path:N-M` in the text, `cites:` lists, whole files. Two spreads are measured: the
5,000 citations over 500 code files (a project citing its main modules) and over 5,000 (every citation its own
file: the most stats a rescan can need).

Measured, alternately plain / cited so that the shared machine's load falls on both alike: no-op rescans (the
walk, a stat per memory file and per cited file; nothing read), medians of wall and CPU time, and their ratio;
then one cited file edited and rescanned (its citations checked again), and the first index of each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from tests.bench.common import record  # noqa: E402

MEMORIES = 2_000
CITATIONS = 5_000
LINES = 200
SPREADS = (500, 5_000)


def cited_text(rng: random.Random, files: int, n: int) -> tuple[list[str], list[str]]:
    """`n` citations in the forms people write: (for the frontmatter list, for the body)."""
    listed, body = [], []
    for k in range(n):
        f = rng.randrange(files)
        start = rng.randrange(1, LINES - 20)
        end = start + rng.randrange(0, 15)
        form = k % 4
        if form == 0:
            body.append(f"see [the code](../../../src/m{f}.py#L{start}-L{end})")
        elif form == 1:
            body.append(f"read at src/m{f}.py:{start}-{end}")
        elif form == 2:
            listed.append(f"src/m{f}.py#L{start}-L{end}")
        else:
            body.append(f"the whole [module](../../../src/m{f}.py)")
    return listed, body


def blank(text: str) -> str:
    """Words of the same length instead of a citation: the plain project's files have the same sizes."""
    return "".join(c if c == " " else "x" for c in text)


def make(top: Path, files: int, cited: bool, seed: int) -> Path:
    rng = random.Random(seed)
    (top / "src").mkdir(parents=True)
    for f in range(files):
        (top / "src" / f"m{f}.py").write_text("".join(f"value_{f}_{i} = {i}\n" for i in range(1, LINES + 1)))
    counts = [3] * (CITATIONS - 2 * MEMORIES) + [2] * (3 * MEMORIES - CITATIONS)  # 5,000 over 2,000
    for i, n in enumerate(counts):
        folder = top / "specs" / f"{i // 50:03d}-feature" / "memory"
        folder.mkdir(parents=True, exist_ok=True)
        listed, body = cited_text(rng, files, n)
        if not cited:
            listed, body = [blank(x) for x in listed], [blank(x) for x in body]
        meta = "".join(f"  - {x}\n" for x in listed)
        key = "cites" if cited else "notes"
        lines = [
            f"---\ntitle: Decision {i}\n" + (f"{key}:\n{meta}" if meta else "") + "---\n",
            f"# Decision {i}\n",
        ]
        lines += [f"\nWe chose option {i % 7} for reason {i}; {sentence}.\n" for sentence in body]
        (folder / f"d{i}.md").write_text("".join(lines))
    subprocess.run(["git", "init", "-q", str(top)], check=True)
    env = ["-c", "user.name=b", "-c", "user.email=b@b", "-c", "commit.gpgsign=false"]
    subprocess.run(["git", "-C", str(top), "add", "."], check=True)
    subprocess.run(["git", *env, "-C", str(top), "commit", "-q", "-m", "corpus"], check=True)
    return top


def timed(conn, cfg, embedder) -> tuple[float, float, object]:
    wall, cpu = time.perf_counter(), time.process_time()
    report = scan(conn, cfg, embedder, embed=False)
    return time.perf_counter() - wall, time.process_time() - cpu, report


def measure(tmp: Path, files: int, rounds: int) -> dict[str, object]:
    embedder = get_embedder("hash:64")
    sides = {}
    for name, cited in (("plain", False), ("cited", True)):
        top = make(tmp / f"{name}-{files}", files, cited, seed=files)
        cfg = config.resolve(db=tmp / f"{name}-{files}.db", roots=[top / "specs"], model="hash:64", cwd=top)
        sides[name] = (top, cfg, db.connect(cfg.db_path))
    first = {}
    for name, (_, cfg, conn) in sides.items():
        wall, cpu, report = timed(conn, cfg, embedder)
        first[name] = wall
        print(f"{files} files, {name}: first index {wall:.2f} s", file=sys.stderr)
    cited_conn = sides["cited"][2]
    counted = cited_conn.execute("SELECT count(*), count(DISTINCT file) FROM citations").fetchall()[0]
    samples: dict[str, list[tuple[float, float]]] = {"plain": [], "cited": []}
    for _, cfg, conn in sides.values():
        timed(conn, cfg, embedder)  # warm
    for _ in range(rounds):
        for name, (_, cfg, conn) in sides.items():
            wall, cpu, report = timed(conn, cfg, embedder)
            assert report.unchanged == MEMORIES and not report.citations_changed, report
            samples[name].append((wall, cpu))
    edits = []
    top, cfg, conn = sides["cited"]
    for k in range(5):
        target = top / "src" / f"m{k * 7 % files}.py"
        lines = target.read_text().splitlines(keepends=True)
        lines.insert(0, f"# edit {k}\n")
        target.write_text("".join(lines))
        wall, _, report = timed(conn, cfg, embedder)
        edits.append(wall)
    for _, _, conn in sides.values():
        conn.close()
    med = {
        name: (statistics.median(w for w, _ in s), statistics.median(c for _, c in s))
        for name, s in samples.items()
    }
    return {
        "citations": counted[0],
        "cited_files": counted[1],
        "plain_noop_ms": round(med["plain"][0] * 1000, 1),
        "cited_noop_ms": round(med["cited"][0] * 1000, 1),
        "plain_noop_cpu_ms": round(med["plain"][1] * 1000, 1),
        "cited_noop_cpu_ms": round(med["cited"][1] * 1000, 1),
        "noop_ratio": round(med["cited"][0] / med["plain"][0], 3),
        "noop_cpu_ratio": round(med["cited"][1] / med["plain"][1], 3),
        "one_cited_file_edited_ms": round(statistics.median(edits) * 1000, 1),
        "plain_first_index_s": round(first["plain"], 2),
        "cited_first_index_s": round(first["cited"], 2),
        "rounds": rounds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15, help="No-op rescans of each side (default 15).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    parser.add_argument(
        "--spreads", type=int, nargs="+", default=list(SPREADS), help="Code files cited into."
    )
    args = parser.parse_args()
    figures: dict[str, object] = {"memories": MEMORIES}
    with tempfile.TemporaryDirectory(prefix="specmem-cite-") as tmp:
        for files in args.spreads:
            figures[f"spread_{files}"] = measure(Path(tmp), files, args.rounds)
            print(files, figures[f"spread_{files}"], file=sys.stderr)
    if not args.no_record:
        record("citations", figures)
    else:
        print(figures)


if __name__ == "__main__":
    main()
