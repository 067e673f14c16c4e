"""Retrieval quality: nDCG@10 and Recall@10 for keyword, semantic and hybrid search, through the real pipeline.

    .venv/bin/python tests/bench/retrieval.py            # both collections, the real model
    .venv/bin/python tests/bench/retrieval.py --only qa  # one collection

Cranfield's 1,400 abstracts are written as memory files into a temporary root; the qa-anthropic-docs pages are
indexed where they lie (page-level judgments). Both are scanned by `specmem scan`'s library call and searched by
`server.search.search`, exactly as the CLI does.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import record  # noqa: E402

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server.search import search  # noqa: E402

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
MODES = ("keyword", "semantic", "hybrid")


def load_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    for line in path.read_text().splitlines()[1:]:
        qid, doc, score = line.split("\t")
        if int(score) > 0:
            qrels[qid][doc] = int(score)
    return qrels


def ndcg_at(ranked: list[str], gains: dict[str, int], k: int = 10) -> float:
    dcg = sum(gains.get(d, 0) / math.log2(i + 2) for i, d in enumerate(ranked[:k]))
    ideal = sorted(gains.values(), reverse=True)[:k]
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: list[str], gains: dict[str, int], k: int = 10) -> float:
    return len(set(ranked[:k]) & set(gains)) / len(gains) if gains else 0.0


def evaluate(
    name: str,
    root: Path,
    queries: list[tuple[str, str]],
    qrels: dict[str, dict[str, int]],
    doc_id: callable,
    workdir: Path,
) -> dict[str, dict[str, float]]:
    cfg = config.resolve(db=workdir / f"{name}.db", roots=[root], cwd=workdir)
    conn = db.connect(cfg.db_path)
    embedder = get_embedder(cfg.model)
    t = time.perf_counter()
    report = scan(conn, cfg, embedder)
    print(f"[{name}] indexed {report.files_seen} files in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    out: dict[str, dict[str, float]] = {}
    for mode in MODES:
        ndcgs, recalls = [], []
        for qid, text in queries:
            if qid not in qrels:
                continue
            response = search(conn, text, limit=10, mode=mode, embedder=embedder)
            assert response.mode_used == mode, response.notes
            ranked = [doc_id(r) for r in response.results]
            ndcgs.append(ndcg_at(ranked, qrels[qid]))
            recalls.append(recall_at(ranked, qrels[qid]))
        out[mode] = {
            "ndcg@10": sum(ndcgs) / len(ndcgs),
            "recall@10": sum(recalls) / len(recalls),
            "queries": len(ndcgs),
        }
    return out


def cranfield(workdir: Path) -> dict[str, dict[str, float]]:
    src = DATA / "cranfield"
    root = workdir / "cranfield"
    root.mkdir()
    for line in (src / "corpus.jsonl").read_text().splitlines():
        doc = json.loads(line)
        title = doc["title"].strip().rstrip(" .") or f"doc {doc['_id']}"
        (root / f"{doc['_id']}.md").write_text(f"# {title}\n\n{doc['text'].strip()}\n")
    queries = [
        (q["_id"], q["text"]) for q in map(json.loads, (src / "queries.jsonl").read_text().splitlines())
    ]
    return evaluate(
        "cranfield",
        root,
        queries,
        load_qrels(src / "qrels" / "test.tsv"),
        lambda r: Path(r.rel_path).stem,
        workdir,
    )


def qa(workdir: Path) -> dict[str, dict[str, float]]:
    src = DATA / "qa-anthropic-docs"
    queries = [
        (q["_id"], q["text"]) for q in map(json.loads, (src / "queries.jsonl").read_text().splitlines())
    ]
    return evaluate(
        "qa-anthropic-docs",
        src / "pages",
        queries,
        load_qrels(src / "qrels" / "test_pages.tsv"),
        lambda r: f"pages/{r.rel_path}",
        workdir,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=["cranfield", "qa"])
    parser.add_argument("--json", type=Path, help="Also write the figures to this file.")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        if args.only in (None, "cranfield"):
            results["cranfield"] = cranfield(Path(tmp))
        if args.only in (None, "qa"):
            results["qa-anthropic-docs"] = qa(Path(tmp))
    print("| collection | mode | nDCG@10 | Recall@10 |")
    print("|---|---|---|---|")
    for name, modes in results.items():
        for mode, m in modes.items():
            print(f"| {name} ({m['queries']} queries) | {mode} | {m['ndcg@10']:.3f} | {m['recall@10']:.3f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    if args.only is None:  # the README shows both collections
        record("retrieval", results)
    for name, modes in results.items():
        best_single = max(modes["keyword"]["ndcg@10"], modes["semantic"]["ndcg@10"])
        verdict = "beats" if modes["hybrid"]["ndcg@10"] > best_single else "DOES NOT beat"
        print(f"{name}: hybrid {verdict} both keyword and semantic on nDCG@10")


if __name__ == "__main__":
    main()
