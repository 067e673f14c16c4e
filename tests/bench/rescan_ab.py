"""Rescans of one indexed project with this tree's code and with an earlier commit's, alternately, through the CLI.

    nice .venv/bin/python tests/bench/scale.py --sizes 50000 --keep /tmp/s50k     # once: a project and its index
    nice .venv/bin/python tests/bench/rescan_ab.py /tmp/s50k/project-50000/specs /tmp/s50k/index-50000/index.db \
        --base 1f673d5

The earlier commit's indexer, server and package are extracted (`git archive`) and imported ahead of the editable
install (PYTHONPATH); both run in this .venv, on the same files and index (so the index format must not differ).
Each round runs both, in turns, so that the machine's load falls on both alike (it is shared: compare CPU first):
a no-op rescan, then one file appended to and a rescan (the changed file differs each round). Keyword phase only
(`--no-embed`). Medians of whole-process wall and CPU, and the scan's own time (`seconds` in `--json`).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from runner import PYTHON, clean_env, extract, run  # noqa: E402


def scan(root: Path, db: Path, pythonpath: Path | None) -> dict[str, float]:
    env = clean_env(**({"PYTHONPATH": str(pythonpath)} if pythonpath else {}))
    r = run(
        [PYTHON, "-m", "specmem", "scan", "--no-embed", "--json", "--db", db, root], env=env, cwd=db.parent
    )
    report = json.loads(r.stdout)
    return {"wall_s": r.wall_s, "cpu_s": r.cpu_s, "scan_s": report["seconds"], "updated": report["updated"]}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("root", type=Path, help="The indexed root (a scale.py project's specs/).")
    parser.add_argument("db", type=Path, help="Its index.")
    parser.add_argument("--base", required=True, help="The earlier commit to compare with.")
    parser.add_argument("--runs", type=int, default=5, help="Rounds (default 5).")
    parser.add_argument(
        "--no-record", action="store_true", help="Print only; leave tests/bench/results/ alone."
    )
    args = parser.parse_args()
    paths = sorted(args.root.rglob("*.md"))
    out: dict[str, dict[str, list[dict[str, float]]]] = {
        "base": {"noop": [], "changed": []},
        "this": {"noop": [], "changed": []},
    }
    with tempfile.TemporaryDirectory(prefix="specmem-ab-") as tmp:
        base = extract(args.base, Path(tmp))
        for pythonpath in (base, None):
            scan(args.root, args.db, pythonpath)  # warm: page cache, .pyc files
        for i in range(args.runs):
            for name, pythonpath in (("base", base), ("this", None)):
                out[name]["noop"].append(scan(args.root, args.db, pythonpath))
                with open(
                    paths[(i * 7919 + len(out[name]["changed"]) * 104_729 + 13) % len(paths)], "a"
                ) as fh:
                    fh.write(f"\n\nEdited paragraph {i} for {name}.\n")
                changed = scan(args.root, args.db, pythonpath)
                assert changed["updated"] == 1, changed
                out[name]["changed"].append(changed)
                print(name, i, out[name]["noop"][-1], changed, file=sys.stderr)
    figures: dict[str, object] = {"files": len(paths), "base": args.base, "runs": args.runs}
    for name, kinds in out.items():
        for kind, samples in kinds.items():
            figures[f"{name}_{kind}"] = {
                key: round(statistics.median(s[key] for s in samples), 3)
                for key in ("wall_s", "cpu_s", "scan_s")
            } | {"samples": samples}
    print(json.dumps({k: {**v, "samples": "…"} if isinstance(v, dict) else v for k, v in figures.items()}))
    if not args.no_record:
        from common import record

        record("rescan_ab", figures)


if __name__ == "__main__":
    main()
