"""Offline sweep of hybrid fusion rules on the development sets: how server/fusion.py's rule and weights were chosen.

    .venv/bin/python tests/bench/fusion_sweep.py --cache .cache-bench
    .venv/bin/python tests/bench/fusion_sweep.py --cache .cache-bench --family "keyword lead"   # all of one family

For every judged query of the four development sets (see retrieval.py) it captures, once, the candidate memories
that search fuses, with the same filters, candidate depth and SQL as `server.search.search`, and for each the score of
every one of its chunks, best first: BM25 of the chunks that match, cosine of every chunk. They are kept in
DIR/candidates-chunks/<set>.json, so later runs need no model. Then it scores fusion variants offline (nDCG@10 per
set, LoCoMo also by category), including ways to make a memory's score from more than its best chunk, and prints
them next to keyword, semantic and RRF (k = 60). Tier, recency and confidence multipliers are left out: every memory
in these sets is `normal`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import statistics
import sys
from collections.abc import Callable, Mapping
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

import retrieval  # noqa: E402

from specmem.server import fusion, keyword, reads, semantic  # noqa: E402
from specmem.server.reads import BM25_WEIGHTS  # noqa: E402
from specmem.server.search import CANDIDATES, Filters, _scope, fts_query  # noqa: E402

Chunks = dict[str, list[float]]  # document id → its chunks' raw scores, best first
Rule = Callable[[Chunks, Chunks, bool], dict[str, float]]
Aggregate = Callable[[list[float]], float]


def _chunk_scores(conn, sql: str, params: list[object], ids: list[int]) -> dict[int, list[float]]:  # noqa: ANN001
    out: dict[int, list[float]] = {}
    if ids:
        for mid, score in conn.execute(sql.format(ids=",".join("?" * len(ids))), [*params, *ids]):
            out.setdefault(mid, []).append(score)
    return {mid: sorted(scores, reverse=True) for mid, scores in out.items()}


def capture(name: str, work: Path) -> list[dict]:
    """Per judged query: gains, category, and each candidate memory's chunk scores on both sides by document id."""
    path = work / "candidates-chunks" / f"{name}.json"
    if path.exists():
        return json.loads(path.read_text())
    coll, conn, embedder = retrieval.open_indexed(name, work)
    doc_of = {mid: coll.doc_id(rel) for mid, rel in conn.execute("SELECT id, rel_path FROM memory_index")}
    now = dt.datetime.now().astimezone()
    out = []
    vectors = embedder.encode([q.text for q in coll.judged])
    for q, vector in zip(coll.judged, vectors, strict=True):
        filters = Filters(spec_folder=q.spec_folder)
        scope = _scope(filters, False, now)
        fts = fts_query(q.text)
        kw = keyword.retrieve(conn, keyword.words(q.text), scope, CANDIDATES, seconds=True)
        blob = vector.astype("float32").tobytes()
        sem = semantic.retrieve(conn, blob, embedder.model_id, scope, CANDIDATES)
        kw_chunks = _chunk_scores(
            conn,
            f"SELECT c.memory_id, -bm25(memory_fts, {', '.join(map(str, BM25_WEIGHTS))}) FROM memory_fts "
            "JOIN memory_chunks c ON c.id = memory_fts.rowid WHERE memory_fts MATCH ? AND c.memory_id IN ({ids})",
            [fts],
            list(kw),
        )
        sem_chunks = _chunk_scores(
            conn,
            "SELECT c.memory_id, 1.0 - vec_distance_cosine(e.vector, ?) FROM memory_chunks c "
            "JOIN embedding_cache e ON e.model = ? AND e.text_hash = c.text_hash "
            "WHERE c.embedded = 1 AND c.memory_id IN ({ids})",
            [blob, embedder.model_id],
            list(sem),
        )
        # The chunk lists agree with what search takes from each side: its best, and for keyword the second best.
        for mid, (_, best, second) in kw.items():
            got = kw_chunks[mid]
            assert math.isclose(got[0], best) and (second is None) == (len(got) < 2), (q.id, mid)
            assert second is None or math.isclose(got[1], second), (q.id, mid)
        for mid, (_, best) in sem.items():
            assert math.isclose(sem_chunks[mid][0], best, abs_tol=1e-6), (q.id, mid)
        visible = len(reads.in_scope(conn, scope)) if scope.filtered else None
        out.append(
            {
                "id": q.id,
                "category": q.category,
                "gains": coll.qrels[q.id],
                "filtered_total": visible,
                "kw": {doc_of[m]: kw_chunks[m] for m in kw},
                "sem": {doc_of[m]: sem_chunks[m] for m in sem},
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


def best(chunks: Chunks) -> dict[str, float]:
    return {d: v[0] for d, v in chunks.items()}


def rrf(kw: Chunks, sem: Chunks, _scoped: bool) -> dict[str, float]:
    out: dict[str, float] = {}
    for side in (best(kw), best(sem)):
        for rank, d in enumerate(ranked(side)):
            out[d] = out.get(d, 0.0) + 1.0 / (61 + rank)
    return out


def with_rule(rule: fusion.Rule, semantic: Aggregate | None = None, depth: int = CANDIDATES) -> Rule:
    """Fusion as search does it; optionally a memory's semantic score from its chunks by `semantic` instead of the
    best, or each side cut to its `depth` best memories (by best chunk) first."""

    def fused(kw: Chunks, sem: Chunks, scoped: bool) -> dict[str, float]:
        if depth < CANDIDATES:
            kw = {d: kw[d] for d in ranked(best(kw))[:depth]}
            sem = {d: sem[d] for d in ranked(best(sem))[:depth]}
        sem_scores = {d: semantic(v) for d, v in sem.items()} if semantic else best(sem)
        second = {d: v[1] for d, v in kw.items() if len(v) > 1}
        out = fusion.fuse(best(kw), sem_scores, rule, scoped=scoped, keyword_second=second)
        return {d: f.score for d, f in out.items()}

    return fused


def plus_second(share: float) -> Aggregate:
    return lambda v: v[0] + share * (v[1] if len(v) > 1 else 0.0)


def softmax(t: float) -> Aggregate:
    """t · log Σ exp(s / t): the best chunk when t → 0, more of the others as t grows."""
    return lambda v: v[0] + t * math.log(sum(math.exp((x - v[0]) / t) for x in v))


def top_mean(n: int) -> Aggregate:
    return lambda v: statistics.fmean(v[:n])


def variants() -> dict[str, tuple[str, Rule]]:
    """label → (family, rule). One weight for every query, for each pair of normalisations; then, on the chosen pair
    and weights, a separate weight for scoped searches, the unscoped weight and the keyword-lead rule (on the chosen
    rule without its lead), and a memory's score made from more
    than its best chunk (keyword: + a share of the second best; semantic: + a share of the second best, a softmax
    over its chunks, the mean of its best two or three), and a shallower candidate depth."""
    out: dict[str, tuple[str, Rule]] = {}
    weights = [x / 20 for x in range(4, 19)]
    for kn in fusion.NORMALISATIONS:
        for sn in fusion.NORMALISATIONS:
            for w in weights:
                out[f"{kn}/{sn} w_kw {w:.2f}"] = (f"{kn}/{sn}", with_rule(fusion.Rule(kn, sn, w)))
    chosen = fusion.RULE
    before = fusion.Rule(
        chosen.keyword_norm, chosen.semantic_norm, chosen.keyword_weight, chosen.scoped_keyword_weight
    )
    pair = {"keyword_norm": chosen.keyword_norm, "semantic_norm": chosen.semantic_norm}
    for w in weights:
        rule = fusion.Rule(**pair, keyword_weight=chosen.keyword_weight, scoped_keyword_weight=w)
        out[str(rule)] = ("scoped weight", with_rule(rule))
    # The chosen rule without its keyword-lead condition: the base of the unscoped-weight and lead families.
    plain = fusion.Rule(**{**vars(chosen), "lead": None})
    for w in (0.25, 0.3, 0.35, 0.4, 0.45):
        rule = fusion.Rule(**{**vars(plain), "keyword_weight": w})
        out[str(rule)] = ("unscoped weight", with_rule(rule))
    for lead in (0.05, 0.1, 0.15, 0.2, 0.3, 0.4):
        for w in (0.4, 0.45, 0.5, 0.6, 0.7, 0.8, 0.9):
            rule = fusion.Rule(**{**vars(plain), "lead": lead, "lead_keyword_weight": w})
            out[str(rule)] = ("keyword lead", with_rule(rule))
    for share in (0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08, 0.1, 0.2, 0.3, 0.5):
        rule = fusion.Rule(**{**vars(before), "keyword_second_share": share})
        out[str(rule)] = ("keyword + 2nd chunk", with_rule(rule))
    for share in (0.05, 0.1, 0.2, 0.3, 0.5):
        out[f"{before}, semantic + {share:g} × 2nd chunk"] = (
            "semantic + 2nd chunk",
            with_rule(before, plus_second(share)),
        )
    for t in (0.01, 0.02, 0.03, 0.05, 0.08, 0.1):
        out[f"{before}, semantic softmax t {t:g}"] = ("semantic softmax", with_rule(before, softmax(t)))
    for n in (2, 3):
        out[f"{before}, semantic mean of best {n}"] = ("semantic top mean", with_rule(before, top_mean(n)))
    for share in (0.05, 0.1):
        for t in (0.03, 0.05):
            rule = fusion.Rule(**{**vars(before), "keyword_second_share": share})
            out[f"{rule}, semantic softmax t {t:g}"] = ("both sides", with_rule(rule, softmax(t)))
    for depth in (30, 50):
        for rule in (before, chosen):
            out[f"{rule}, depth {depth}"] = ("candidate depth", with_rule(rule, depth=depth))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", type=Path, required=True, help="The folder retrieval.py --cache uses.")
    parser.add_argument("--only", choices=retrieval.SETS, action="append")
    parser.add_argument("--top", type=int, default=15, help="How many variants to print, best first.")
    parser.add_argument(
        "--family", action="append", help="Also print every variant of this family; repeatable."
    )
    args = parser.parse_args()
    work = args.cache.resolve()
    names = [n for n in retrieval.SETS if not args.only or n in args.only]
    data = {name: capture(name, work) for name in names}

    before = fusion.Rule(**{**vars(fusion.RULE), "keyword_second_share": 0.0})
    fixed: dict[str, Rule] = {
        "keyword": lambda kw, sem, _: best(kw),
        "semantic": lambda kw, sem, _: best(sem),
        "rrf k=60": rrf,
        f"best chunk only: {before}": with_rule(before),
        f"chosen: {fusion.RULE}": with_rule(fusion.RULE),
    }
    families = variants()
    tried = {label: rule for label, (_, rule) in families.items()}
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
    best_per_family: dict[str, str] = {}
    for label, (family, _) in families.items():
        if family not in best_per_family or rank(label) > rank(best_per_family[family]):
            best_per_family[family] = label
    print("| **best of each family** |" + " |" * (len(names) + 1))
    for label in best_per_family.values():
        print(row(label))
    print(f"| **top {args.top} by min margin, then mean margin** |" + " |" * (len(names) + 1))
    for label in sorted(tried, key=rank, reverse=True)[: args.top]:
        print(row(label))
    for family in args.family or []:
        print(f"| **family: {family}** |" + " |" * (len(names) + 1))
        for label, (fam, _) in families.items():
            if fam == family:
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
