"""Hybrid fusion: one score per memory from its keyword (BM25) and semantic (cosine) scores.

Pure functions, no I/O. A memory's keyword score is its best chunk's BM25 plus a small share of its second best. Each
side is normalised over its own candidate set, a memory missing from one side gets that side's floor, and the two are
combined convexly with weights chosen on development data (specs/002-search/memory/score-fusion.md and
keyword-lead.md; tests/bench/fusion_sweep.py reproduces the choice).
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar

if TYPE_CHECKING:
    from specmem.server.keyword import KeywordHit
    from specmem.server.semantic import SemanticHit

K = TypeVar("K", bound=Hashable)
Normalisation = Literal["minmax", "zscore", "max"]
NORMALISATIONS: tuple[Normalisation, ...] = ("minmax", "zscore", "max")

# Scores equal to this many significant digits are a tie: float noise, or a recency a few seconds apart, never
# decides an order. Relative, because raw BM25 of a word found in most memories can be as small as 1e-6.
TIE_DIGITS = 7


@dataclass(frozen=True)
class Rule:
    """How the two sides are put on one scale and weighed. RULE below is the one chosen on development data."""

    keyword_norm: Normalisation = "minmax"
    semantic_norm: Normalisation = "minmax"
    keyword_weight: float = 0.5
    # A scoped search (filters on) whose semantic candidates are the whole scope, not a top-k cut.
    scoped_keyword_weight: float | None = None
    # The best BM25 leads the second by at least this fraction of itself.
    lead: float | None = None
    lead_keyword_weight: float = 0.5
    # A memory's keyword score: its best chunk's BM25 plus this share of its second best chunk's.
    keyword_second_share: float = 0.0

    def keyword_scores(self, best: Mapping[K, float], second: Mapping[K, float] | None) -> dict[K, float]:
        """Each memory's keyword score from its best and second best chunk (a missing second counts 0)."""
        if not self.keyword_second_share or not second:
            return dict(best)
        return {k: v + self.keyword_second_share * second.get(k, 0.0) for k, v in best.items()}

    def weight(self, keyword: Mapping[K, float], scoped: bool) -> tuple[float, str]:
        """The keyword side's weight for this query, and why (as --explain shows it)."""
        if self.lead is not None and len(keyword) > 1:
            best, second = sorted(keyword.values(), reverse=True)[:2]
            if best > 0 and (best - second) / best >= self.lead:
                return self.lead_keyword_weight, f"keyword leads by {self.lead:.0%} or more"
        if scoped and self.scoped_keyword_weight is not None:
            return self.scoped_keyword_weight, "scoped: every memory in scope is a candidate"
        return self.keyword_weight, "default weights"

    def __str__(self) -> str:
        out = f"{self.keyword_norm}/{self.semantic_norm} w_kw {self.keyword_weight:.2f}"
        if self.keyword_second_share:
            out += f", keyword + {self.keyword_second_share:g} × 2nd chunk"
        if self.scoped_keyword_weight is not None:
            out += f", scoped w_kw {self.scoped_keyword_weight:.2f}"
        if self.lead is not None:
            out += f", lead ≥ {self.lead:.0%} w_kw {self.lead_keyword_weight:.2f}"
        return out


# lead 0.4: one memory's BM25 far above every other's is a specific lexical match (a detail named in the question);
# the keyword side then weighs as much as the semantic one (specs/002-search/memory/keyword-lead.md).
RULE = Rule(
    "minmax",
    "max",
    keyword_weight=0.3,
    scoped_keyword_weight=0.5,
    lead=0.4,
    lead_keyword_weight=0.5,
    keyword_second_share=0.05,
)


@dataclass(frozen=True)
class Fused:
    """One memory's fused score with what it was made of: raw and normalised score per side, and the weights."""

    keyword: float | None  # raw BM25 of the best chunk (higher is better); None when keyword did not find it
    semantic: float | None  # raw cosine of the best chunk; None when semantic did not return it
    keyword_norm: float
    semantic_norm: float
    keyword_weight: float
    semantic_weight: float
    rule: str = ""
    keyword_second: float | None = None  # raw BM25 of the second best chunk, when one matched

    @property
    def score(self) -> float:
        return self.keyword_weight * self.keyword_norm + self.semantic_weight * self.semantic_norm

    @property
    def norm_sum(self) -> float:
        """The unweighted sum of the normalised scores: the first tie-breaker."""
        return self.keyword_norm + self.semantic_norm


def normalise(scores: Mapping[K, float], how: Normalisation = "minmax") -> tuple[dict[K, float], float]:
    """Each score on a common scale over the candidate set, and the floor for a memory missing from it.

    minmax: (s - min) / (max - min), floor 0. zscore: (s - mean) / stdev, floor the lowest z.
    max: s / max, floor min / max (falls back to minmax when the best score is not positive).
    A set whose scores are all equal maps each to the side's best value (1, or 0 for zscore).
    """
    if not scores:
        return {}, 0.0
    values = list(scores.values())
    lo, hi = min(values), max(values)
    if how == "zscore":
        import statistics  # zscore only (statistics imports fractions and decimal: ~3 ms of every search)

        mean, sd = statistics.fmean(values), statistics.pstdev(values)
        if sd <= 0:
            return dict.fromkeys(scores, 0.0), 0.0
        return {k: (v - mean) / sd for k, v in scores.items()}, (lo - mean) / sd
    if how == "max" and hi > 0:
        return {k: v / hi for k, v in scores.items()}, max(lo, 0.0) / hi
    if hi <= lo:
        return dict.fromkeys(scores, 1.0), 0.0
    return {k: (v - lo) / (hi - lo) for k, v in scores.items()}, 0.0


def fuse(
    keyword: Mapping[K, float],
    semantic: Mapping[K, float],
    rule: Rule = RULE,
    *,
    scoped: bool = False,
    keyword_second: Mapping[K, float] | None = None,
    pending: Collection[K] = (),
) -> dict[K, Fused]:
    """Every memory found by either side, with its fused score. Raw scores in, higher is better on both sides:
    each memory's best chunk, and in `keyword_second` the BM25 of its second best chunk (none: counts 0).

    `scoped`: the search was filtered and the semantic side ranked every memory in scope (no top-k cut).
    `pending`: memories whose embeddings are not computed yet. One the semantic side did not return is ranked by
    what is known: its normalised keyword score stands for both sides, never the semantic side's floor (a memory
    just written would otherwise drop below every memory that matches its meaning less well)."""
    second = keyword_second or {}
    kw_scores = rule.keyword_scores(keyword, second)
    kw_norm, kw_floor = normalise(kw_scores, rule.keyword_norm)
    sem_norm, sem_floor = normalise(semantic, rule.semantic_norm)
    if keyword and semantic:
        w_kw, why = rule.weight(kw_scores, scoped)
    else:
        w_kw, why = (1.0, "keyword only") if keyword else (0.0, "semantic only")
    name = f"{rule.keyword_norm}/{rule.semantic_norm}, {why}"
    if rule.keyword_second_share and second:
        name += f", keyword + {rule.keyword_second_share:g} × 2nd chunk"
    unknown = {k for k in pending if k in keyword and k not in semantic}
    return {
        key: Fused(
            keyword=keyword.get(key),
            semantic=semantic.get(key),
            keyword_norm=kw_norm.get(key, kw_floor),
            semantic_norm=kw_norm[key] if key in unknown else sem_norm.get(key, sem_floor),
            keyword_weight=w_kw,
            semantic_weight=1.0 - w_kw,
            rule=f"{name}, embedding pending: the keyword score stands for both" if key in unknown else name,
            keyword_second=second.get(key) if key in keyword else None,
        )
        for key in dict.fromkeys([*keyword, *semantic])
    }


def order_key(score: float, norm_sum: float, key: K) -> tuple[float, float, K]:
    """Sort key, best first: the score to TIE_DIGITS significant digits, then the sum of normalised scores (to as
    many), then the key."""
    return (-_significant(score), -_significant(norm_sum), key)


def _significant(value: float) -> float:
    return float(f"{value:.{TIE_DIGITS}g}")


def ranked(entries: Iterable[tuple[K, Fused, float]]) -> list[K]:
    """Keys ordered best first; each entry is (key, fused, multiplier), the multiplier being tier × recency × …"""
    return [
        key for key, _, _ in sorted(entries, key=lambda e: order_key(e[1].score * e[2], e[1].norm_sum, e[0]))
    ]


class Candidates(NamedTuple):
    """What retrieval found and fusion made of it, by memory id: each side's hit, and one score per memory."""

    keyword: Mapping[int, KeywordHit]
    semantic: Mapping[int, SemanticHit]
    scores: Mapping[int, float]  # the fused score (one side's raw score when only one side searched)
    hybrid: Mapping[int, Fused]  # hybrid: how each score was made (empty otherwise)

    def best_chunk(self, memory_id: int) -> int | None:
        """The memory's best chunk: the keyword side's, else the semantic side's; None when neither found it."""
        hit = self.keyword.get(memory_id) or self.semantic.get(memory_id)
        return hit.chunk_id if hit else None

    def tie_breaker(self, memory_id: int) -> float:
        """What decides between equal scores: the sum of normalised scores in hybrid mode, else the score."""
        fused = self.hybrid.get(memory_id)
        return fused.norm_sum if fused is not None else self.scores.get(memory_id, 0.0)


def combine(
    keyword: Mapping[int, KeywordHit],
    semantic: Mapping[int, SemanticHit],
    *,
    hybrid: bool,
    scoped: bool,
    pending: Collection[int] = (),
) -> Candidates:
    """The candidates of a search with one score each: fused (`hybrid`), else the one side's raw score.
    `scoped`: the search was filtered and the semantic side ranked every memory in scope. `pending`: memories
    whose embeddings are not computed yet (ranked by their keyword score on both sides, see `fuse`)."""
    if not hybrid:
        scores = {mid: hit.score for mid, hit in keyword.items()}
        scores.update({mid: hit.similarity for mid, hit in semantic.items()})  # one side is empty
        return Candidates(keyword, semantic, scores, {})
    fused = fuse(
        {mid: hit.score for mid, hit in keyword.items()},
        {mid: hit.similarity for mid, hit in semantic.items()},
        scoped=scoped,
        keyword_second={mid: hit.second for mid, hit in keyword.items() if hit.second is not None},
        pending=pending,
    )
    return Candidates(keyword, semantic, {mid: f.score for mid, f in fused.items()}, fused)
