"""The importance tiers: their names, order and search weights, defined once."""

from __future__ import annotations

from typing import Literal, get_args

Tier = Literal["constitutional", "critical", "important", "normal", "temporary", "deprecated"]
TIERS: tuple[str, ...] = get_args(Tier)
DEFAULT_TIER: Tier = "normal"

# Multiplies a memory's relevance in search. Constitutional memories are also surfaced on top (search.py).
WEIGHTS: dict[str, float] = {
    "constitutional": 1.5,
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
