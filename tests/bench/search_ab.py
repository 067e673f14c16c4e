"""Search latency before and after a change to server/search.py, interleaved in one process on one index.

    .venv/bin/python tests/bench/search_ab.py --before main --cache .cache-bench

The 1,000 md-hugo-docs pages are indexed where they lie (kept in --cache DIR between runs); `server/search.py` as it
is at git revision BEFORE is loaded next to the working tree's, and the 200 queries of tests/bench/hugo.py (every
fifth title) are timed through both, alternating which goes first, for --rounds rounds. On a shared machine this is
fairer than two separate runs: both sides see the same load.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import CORPUS, ROOT, pct, record  # noqa: E402

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server import search as after  # noqa: E402


def load_before(rev: str, folder: Path):  # noqa: ANN201
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:server/search.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    path = folder / "search_before.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("search_before", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # type: ignore[union-attr]  # dataclasses look their module up
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--before", default="main", help="Git revision of the 'before' server/search.py.")
    parser.add_argument("--cache", type=Path, help="Keep the hugo index here between runs.")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.cache or Path(tmp)).resolve()
        (work / "db" / "hugo").mkdir(parents=True, exist_ok=True)
        cfg = config.resolve(db=work / "db" / "hugo" / "index.db", roots=[CORPUS], cwd=work)
        conn = db.connect(cfg.db_path)
        embedder = get_embedder(cfg.model)
        report = scan(conn, cfg, embedder)
        print(f"hugo: {report.files_seen} files, {report.embedded_chunks} chunks embedded", file=sys.stderr)
        before = load_before(args.before, Path(tmp))
        titles = [r[0] for r in conn.execute("SELECT title FROM memory_index ORDER BY path")]
        queries = [t.lower() for t in titles[::5]][:200]
        embedder.encode(["warm up the model"])
        figures: dict[str, float] = {"queries": len(queries), "rounds": args.rounds}
        for mode in ("keyword", "hybrid"):
            lat: dict[str, list[float]] = {"before": [], "after": []}
            for r in range(args.rounds):
                for i, q in enumerate(queries):
                    sides = [("before", before.search), ("after", after.search)]
                    for name, fn in sides if (i + r) % 2 else sides[::-1]:
                        t = time.perf_counter()
                        fn(conn, q, mode=mode, embedder=embedder)
                        lat[name].append((time.perf_counter() - t) * 1000)
            for name, values in lat.items():
                figures[f"{mode}_{name}_p50_ms"] = pct(values, 50)
                figures[f"{mode}_{name}_p95_ms"] = pct(values, 95)
    print("| search | before p50 / p95 | after p50 / p95 |")
    print("|---|---|---|")
    for mode in ("keyword", "hybrid"):
        b = f"{figures[f'{mode}_before_p50_ms']:.1f} / {figures[f'{mode}_before_p95_ms']:.1f} ms"
        a = f"{figures[f'{mode}_after_p50_ms']:.1f} / {figures[f'{mode}_after_p95_ms']:.1f} ms"
        print(f"| {mode}, {len(queries)} queries × {args.rounds} | {b} | {a} |")
    record("search_ab", figures)


if __name__ == "__main__":
    main()
