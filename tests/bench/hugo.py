"""Indexing and search speed on the 1,000 pages of md-hugo-docs, through the real pipeline and model.

    .venv/bin/python tests/bench/hugo.py

Measures, in one run: the keyword phase of a first scan; embedding throughput of the pipeline next to the raw
throughput of SentenceTransformer.encode on the same chunk texts; a no-change rescan; a rescan after one file
changed; search latency p50/p95 over 200 queries in each mode. Compare ratios within a run: the machine is shared.
The figures go to tests/bench/results/hugo.json, from which scripts/readme_tables.py writes the README's table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import hugo_copy, pct, record  # noqa: E402

from specmem.indexer import db  # noqa: E402
from specmem.indexer.embed import (
    embed_pending,  # noqa: E402
    get_embedder,  # noqa: E402
)
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server.search import search  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.parse_args()
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        _, cfg = hugo_copy(Path(tmp))
        conn = db.connect(cfg.db_path)
        embedder = get_embedder(cfg.model)
        embedder.encode(["warm up the model"])  # load outside the timings

        t = time.perf_counter()
        report = scan(conn, cfg, embedder, embed=False)
        out["files"] = report.files_seen
        out["keyword_phase_s"] = time.perf_counter() - t

        chunks = conn.execute("SELECT heading || char(10) || text FROM memory_chunks ORDER BY id").fetchall()
        out["chunks"] = len(chunks)
        texts = list(
            dict.fromkeys(r[0] for r in chunks)
        )  # identical chunks are embedded once, by either path
        t = time.perf_counter()
        embedded, _ = embed_pending(conn, embedder, cfg.signal_path)
        pipeline_s = time.perf_counter() - t
        out["pipeline_chunks_per_s"] = embedded / pipeline_s
        t = time.perf_counter()
        embedder.encode(texts)
        raw_s = time.perf_counter() - t
        out["raw_encode_chunks_per_s"] = len(texts) / raw_s
        out["pipeline_vs_raw"] = out["pipeline_chunks_per_s"] / out["raw_encode_chunks_per_s"]
        out["embedded_unique_chunks"] = embedded

        times = []
        for _ in range(7):
            t = time.perf_counter()
            r = scan(conn, cfg, embedder)
            times.append(time.perf_counter() - t)
            assert r.unchanged == report.files_seen and r.updated == 0, r
        out["no_change_rescan_s"] = statistics.median(times)

        times = []
        files = [Path(r[0]) for r in conn.execute("SELECT path FROM memory_index ORDER BY id")]
        for i in range(7):
            target = files[i * 97 % len(files)]
            target.write_text(
                target.read_text(encoding="utf-8") + f"\n\nEdited paragraph number {i}.\n", encoding="utf-8"
            )
            t = time.perf_counter()
            r = scan(conn, cfg, embedder)
            times.append(time.perf_counter() - t)
            assert r.updated == 1, r
        out["one_file_changed_rescan_s"] = statistics.median(times)

        titles = [r[0] for r in conn.execute("SELECT title FROM memory_index ORDER BY id")]
        queries = [t.lower() for t in titles[::5]][:200]
        for mode in ("keyword", "semantic", "hybrid"):
            lat = []
            for q in queries:
                t = time.perf_counter()
                search(conn, q, mode=mode, embedder=embedder)
                lat.append((time.perf_counter() - t) * 1000)
            out[f"search_{mode}_p50_ms"] = pct(lat, 50)
            out[f"search_{mode}_p95_ms"] = pct(lat, 95)
        out["queries"] = len(queries)

    for key, value in out.items():
        print(f"{key:>28}: {value:.3f}" if isinstance(value, float) else f"{key:>28}: {value}")
    record("hugo", out)


if __name__ == "__main__":
    main()
