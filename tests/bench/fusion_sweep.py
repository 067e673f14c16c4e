"""Offline sweep of hybrid fusion rules on the development sets: how server/fusion.py's rule and weights were chosen.

    .venv/bin/python tests/bench/fusion_sweep.py --cache .cache-bench

For every judged query of the four development sets (see retrieval.py) it captures, once, the memory-level candidate
lists that search fuses: raw BM25 and cosine of each memory's best chunk, with the same filters, candidate depth and
SQL as `server.search.search`. They are kept in DIR/candidates/<set>.json, so later runs need no model. Then it
scores fusion variants offline (nDCG@10 per set, LoCoMo also by category) and prints them next to keyword, semantic
and RRF (k = 60). Tier, recency and confidence multipliers are left out: every memory in these sets is `normal`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import retrieval  # noqa: E402

from specmem.server import fusion  # noqa: E402
from specmem.server.search import CANDIDATES, Filters, _keyword, _semantic, _where, fts_query  # noqa: E402

Scores = dict[str, float]
Rule = Callable[[Scores, Scores, bool], dict[str, float]]


def capture(name: str, work: Path) -> list[dict]:
    """Per judged query: gains, category, and the raw keyword and semantic candidates by document id."""
    path = work / "candidates" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    coll, conn, embedder = retrieval.open_indexed(name, work)
    doc_of = {mid: coll.doc_id(rel) for mid, rel in conn.execute("SELECT id, rel_path FROM memory_index")}
    today = dt.date.today().isoformat()
    out = []
    vectors = embedder.encode([q.text for q in coll.judged])
    for q, vector in zip(coll.judged, vectors, strict=True):
        filters = Filters(spec_folder=q.spec_folder)
        where, args = _where(filters, False, today)
        fts = fts_query(q.text)
        kw = _keyword(conn, fts, where, args, CANDIDATES) if fts else {}
        blob = vector.astype("float32").tobytes()
        sem = _semantic(conn, blob, embedder.model_id, where, args, CANDIDATES, not filters.is_empty())
        visible = (
            int(conn.execute(f"SELECT count(*) FROM memory_index m WHERE {where}", args).fetchall()[0][0])
            if not filters.is_empty()
            else None
        )
        out.append(
            {
                "id": q.id,
                "category": q.category,
                "gains": coll.qrels[q.id],
                "filtered_total": visible,
                "kw": {doc_of[m]: s for m, (_, s) in kw.items()},
                "sem": {doc_of[m]: s for m, (_, s) in sem.items()},
            }
        )
    conn.close()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out))
    return out


def ranked(scores: Mapping[str, float]) -> list[str]:
    return sorted(scores, key=lambda d: (-scores[d], d))


def evaluate(queries: list[dict], rule: Rule) -> dict[str, float]:
    per: dict[str, list[float]] = {"all": []}
    for q in queries:
        scoped = q["filtered_total"] is not None and len(q["sem"]) < CANDIDATES
        fused = rule(q["kw"], q["sem"], scoped)
        n = retrieval.ndcg_at(ranked(fused), q["gains"])
        per["all"].append(n)
        if q["category"]:
            per.setdefault(f"cat{q['category']}", []).append(n)
    return {k: statistics.fmean(v) for k, v in per.items()}


def rrf(kw: Scores, sem: Scores, _scoped: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for side in (kw, sem):
        for rank, d in enumerate(ranked(side)):
            out[d] = out.get(d, 0.0) + 1.0 / (61 + rank)
    return out


def with_rule(rule: fusion.Rule) -> Rule:
    return lambda kw, sem, scoped: {d: f.score for d, f in fusion.fuse(kw, sem, rule, scoped=scoped).items()}


def variants() -> dict[str, fusion.Rule]:
    """One weight for every query, for each pair of normalisations; then, on the chosen pair and weight, a separate
    weight for scoped searches, and the keyword-lead rule."""
    out = {}
    weights = [x / 20 for x in range(4, 19)]
    for kn in fusion.NORMALISATIONS:
        for sn in fusion.NORMALISATIONS:
            for w in weights:
                out[f"{kn}/{sn} w_kw {w:.2f}"] = fusion.Rule(kn, sn, w)
    chosen = fusion.RULE
    pair = {"keyword_norm": chosen.keyword_norm, "semantic_norm": chosen.semantic_norm}
    for w in weights:
        rule = fusion.Rule(**pair, keyword_weight=chosen.keyword_weight, scoped_keyword_weight=w)
        out[str(rule)] = rule
    for lead in (0.1, 0.2, 0.3, 0.4):
        for w in (0.5, 0.6, 0.7, 0.8, 0.9):
            rule = fusion.Rule(
                **pair,
                keyword_weight=chosen.keyword_weight,
                scoped_keyword_weight=chosen.scoped_keyword_weight,
                lead=lead,
                lead_keyword_weight=w,
            )
            out[str(rule)] = rule
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, required=True, help="The folder retrieval.py --cache uses.")
    parser.add_argument("--only", choices=retrieval.SETS, action="append")
    parser.add_argument("--top", type=int, default=15, help="How many variants to print, best first.")
    args = parser.parse_args()
    work = args.cache.resolve()
    names = [n for n in retrieval.SETS if not args.only or n in args.only]
    data = {name: capture(name, work) for name in names}

    fixed: dict[str, Rule] = {
        "keyword": lambda kw, sem, _: kw,
        "semantic": lambda kw, sem, _: sem,
        "rrf k=60 (before)": rrf,
        f"chosen: {fusion.RULE}": with_rule(fusion.RULE),
    }
    tried = {label: with_rule(rule) for label, rule in variants().items()}
    results = {
        label: {n: evaluate(qs, rule) for n, qs in data.items()} for label, rule in {**fixed, **tried}.items()
    }
    halves = {n: max(results["keyword"][n]["all"], results["semantic"][n]["all"]) for n in names}

    def margin(label: str) -> float:
        return min(results[label][n]["all"] - halves[n] for n in names)

    def rank(label: str) -> tuple[float, float]:
        """Worst margin first, then the mean margin: a rule must not lose anywhere before it wins on average."""
        return round(margin(label), 4), sum(results[label][n]["all"] - halves[n] for n in names) / len(names)

    def row(label: str) -> str:
        cells = " | ".join(f"{results[label][n]['all']:.4f}" for n in names)
        return f"| {label} | {cells} | {margin(label):+.4f} |"

    print(
        f"nDCG@10 over {', '.join(f'{n} ({len(data[n])})' for n in names)}; margin = hybrid - better half, worst set"
    )
    print("| rule | " + " | ".join(names) + " | min margin |")
    print("|" + "---|" * (len(names) + 2))
    for label in fixed:
        print(row(label))
    best_per_pair: dict[str, str] = {}
    for label in tried:
        pair = label.split(" ")[0] + " lead" * ("lead" in label) + " scoped" * ("scoped" in label)
        if pair not in best_per_pair or rank(label) > rank(best_per_pair[pair]):
            best_per_pair[pair] = label
    print("| **best of each normalisation pair** |" + " |" * (len(names) + 1))
    for label in best_per_pair.values():
        print(row(label))
    print(f"| **top {args.top} by min margin, then mean margin** |" + " |" * (len(names) + 1))
    for label in sorted(tried, key=rank, reverse=True)[: args.top]:
        print(row(label))
    cats = sorted(k for k in results["keyword"].get("locomo-dev", {}) if k != "all")
    if cats:
        print("\nlocomo-dev by category (nDCG@10)")
        print("| rule | " + " | ".join(cats) + " |")
        print("|" + "---|" * (len(cats) + 1))
        for label in fixed:
            print(f"| {label} | " + " | ".join(f"{results[label]['locomo-dev'][c]:.4f}" for c in cats) + " |")


if __name__ == "__main__":
    main()
