"""Ranking: each candidate's score (fused relevance × tier weight × recency × confidence) and the order shown:
constitutional memories on top only where every rule is asked for, else ranked by relevance within their share.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field, fields
from typing import Any, NamedTuple

import apsw

from specmem.indexer import tiers
from specmem.server import fusion, reads
from specmem.server.fusion import Candidates
from specmem.server.reads import MemoryRow, Scope

# Rules leading one result: 3,000 rules all on top made a session's first search 1.76 MB and memory_context 70 s.
MAX_RULES = 100

# Plain dataclasses, not pydantic models: a CLI search must not pay pydantic's import (specs/003-cli/memory/
# lazy-imports.md). The MCP tools still validate and describe them: pydantic reads stdlib dataclasses and their
# `__pydantic_config__`, whose hook puts each field's metadata description into the published JSON schema.


def figures(value: float) -> float:
    """`value` to six significant figures: decimals would turn BM25's tiny weights (a word found in most memories
    scores about 1e-6) into 0.0 for every hit."""
    return float(f"{value:.6g}")


def _describe(schema: dict[str, Any], cls: type) -> None:
    for f in fields(cls):
        if "description" in f.metadata:
            schema["properties"][f.name]["description"] = f.metadata["description"]


DESCRIBED = {"json_schema_extra": _describe}  # a pydantic ConfigDict; only the MCP layer reads it


def described(text: str, default: Any = None) -> Any:
    """A dataclass field with a description for the MCP tools' JSON schemas."""
    return field(default=default, metadata={"description": text})


@dataclass
class ScoreParts:
    __pydantic_config__ = DESCRIBED

    keyword: float | None = described("BM25 of the best chunk (higher is better)")
    keyword_second: float | None = described(
        "Hybrid: BM25 of the second best chunk; a share of it is added to the keyword score"
    )
    semantic: float | None = described("Cosine similarity of the best chunk")
    keyword_norm: float | None = described("Hybrid: keyword score normalised over the candidates")
    semantic_norm: float | None = described("Hybrid: semantic score normalised over the candidates")
    keyword_weight: float | None = described("Hybrid: weight of the keyword side for this query")
    semantic_weight: float | None = described("Hybrid: weight of the semantic side for this query")
    fusion: str | None = described("Hybrid: the normalisation and the weighting rule applied")
    fused: float = 0.0
    tier_weight: float = 1.0
    recency: float = 1.0
    confidence: float = 1.0


class Ranked(NamedTuple):
    """A memory in the order shown: its row, its score and what it was made of, whether it leads as a rule."""

    memory: MemoryRow
    score: float
    parts: ScoreParts
    surfaced: bool
    tie_breaker: float

    def key(self) -> tuple[bool, float, float, int]:
        """Sort key, first shown first: rules on top, then the score (ties: fusion.order_key)."""
        return (not self.surfaced, *fusion.order_key(self.score, self.tie_breaker, self.memory.id))


def recency(updated_ms: int, now: dt.datetime, tier: str) -> float:
    """A memory's recency factor: a small boost that halves every 90 days; temporary memories decay instead."""
    # Whole days, by the calendar: memories changed on the same day weigh the same, so their order is the fusion's.
    changed = dt.datetime.fromtimestamp(updated_ms / 1000, tz=now.tzinfo).date()
    age_days = max(0, (now.date() - changed).days)
    if tier == "temporary":
        return 0.5 ** (age_days / 30)  # temporary memories decay
    return 1.0 + 0.1 * 0.5 ** (age_days / 90)


def rank(
    conn: apsw.Connection,
    found: Candidates,
    scope: Scope,
    *,
    include_constitutional: bool,
    surface: int | None,
    now: dt.datetime,
    limit: int,
) -> tuple[list[Ranked], int]:
    """Every candidate with its score, in the order shown, and how many rules in scope do not lead for lack of room.

    Constitutional memories (rules) are context an assistant loads once: with `include_constitutional` and
    `surface` None (memory_context, a session's first search) every rule in scope leads, outside any limit (at
    most MAX_RULES, the most relevant). Otherwise a rule is ranked by its relevance like any memory and takes at
    most its share of the first `limit` places (`rule_share`); rules beyond it follow the other memories."""
    ids = set(found.scores)
    every_rule = include_constitutional and surface is None
    if every_rule:
        ids |= reads.constitutional(conn, scope)
    ranked: list[Ranked] = []
    for row in reads.memory_rows(conn, ids).values():
        rule = every_rule and row.tier == "constitutional"
        if not rule and row.id not in found.scores:
            continue
        parts = _parts(found, row, now)
        score = parts.fused * parts.tier_weight * parts.recency * parts.confidence
        ranked.append(Ranked(row, score, parts, rule, found.tie_breaker(row.id)))
    ranked.sort(key=Ranked.key)
    if every_rule:
        return _every_rule(ranked, found)
    if include_constitutional and surface is not None and "constitutional" not in scope.tiers:
        return _rules_within_share(ranked, rule_share(surface, limit)), 0
    return ranked, 0


def rule_share(surface: int, limit: int) -> int:
    """The most rules a search's first `limit` results hold: `surface` (SPECMEM_SURFACE), and never more than a
    third of the limit (rounded up), so rules cannot crowd out the answers."""
    return min(surface, -(-limit // 3))


def _every_rule(ranked: list[Ranked], found: Candidates) -> tuple[list[Ranked], int]:
    """Rules on top, the MAX_RULES most relevant; the others compete like any memory (those the query did not
    match, taken only to show every rule, are left out)."""
    rules = [r for r in ranked if r.surfaced]
    if len(rules) <= MAX_RULES:
        return ranked, 0
    on_top = {r.memory.id for r in rules[:MAX_RULES]}
    kept = [
        Ranked(r.memory, r.score, r.parts, r.memory.id in on_top, r.tie_breaker)
        for r in ranked
        if r.memory.id in on_top or r.memory.id in found.scores
    ]
    kept.sort(key=Ranked.key)
    return kept, len(rules) - MAX_RULES


def _rules_within_share(ranked: list[Ranked], share: int) -> list[Ranked]:
    """`ranked` with every rule after the first `share` moved behind the other memories (order kept)."""
    within: list[Ranked] = []
    beyond: list[Ranked] = []
    rules = 0
    for r in ranked:
        if r.memory.tier == "constitutional":
            rules += 1
            if rules > share:
                beyond.append(r)
                continue
        within.append(r)
    return within + beyond


def _parts(found: Candidates, row: MemoryRow, now: dt.datetime) -> ScoreParts:
    mid = row.id
    kw, sem, f = found.keyword.get(mid), found.semantic.get(mid), found.hybrid.get(mid)
    return ScoreParts(
        keyword=figures(kw.score) if kw else None,
        keyword_second=figures(f.keyword_second) if f and f.keyword_second is not None else None,
        semantic=figures(sem.similarity) if sem else None,
        keyword_norm=figures(f.keyword_norm) if f else None,
        semantic_norm=figures(f.semantic_norm) if f else None,
        keyword_weight=f.keyword_weight if f else None,
        semantic_weight=f.semantic_weight if f else None,
        fusion=f.rule if f else None,
        fused=found.scores.get(mid, 0.0),
        tier_weight=tiers.WEIGHTS[row.tier],
        recency=recency(row.updated_at, now, row.tier),
        confidence=0.8 + 0.4 * row.confidence,
    )
