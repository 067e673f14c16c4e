"""The importance tiers: their names, order and search weights, defined once."""

from __future__ import annotations

from typing import Literal, get_args

Tier = Literal["constitutional", "critical", "important", "normal", "temporary", "deprecated"]
TIERS: tuple[str, ...] = get_args(Tier)
DEFAULT_TIER: Tier = "normal"

# Multiplies a memory's relevance in search. A constitutional memory (a rule) is context an assistant loads once
# (memory_context, a session's first search, where every rule leads): in other searches it counts by relevance
# alone (specs/002-search/memory/rules-by-relevance.md).
WEIGHTS: dict[str, float] = {
    "constitutional": 1.0,
    "critical": 1.5,
    "important": 1.2,
    "normal": 1.0,
    "temporary": 0.8,
    "deprecated": 0.5,
}


def rank(tier: str) -> int:
    """0 for constitutional … 5 for deprecated; unknown tiers last."""
    return TIERS.index(tier) if tier in TIERS else len(TIERS)


def sql_rank(column: str) -> str:
    """An SQL expression ordering `column` by tier, as `rank` does."""
    whens = " ".join(f"WHEN '{t}' THEN {i}" for i, t in enumerate(TIERS))
    return f"CASE {column} {whens} ELSE {len(TIERS)} END"
