"""Context for an assistant's task: one ready-to-paste block of memories within a token budget.

Constitutional rules come first, then the memories whose trigger phrases the task contains, then the best hybrid
search results; each memory once, each with its citation (`path:start-end`, lines of the file as it is on disk).
Every memory first gets its most relevant chunk (or the anchored section holding it); the budget left then
widens memories to their whole body, in the same order. What does not fit is listed, never dropped in silence.
Tokens are counted on the final text with the embedding model's tokenizer. The same index and input give the
same block.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import apsw
from pydantic import BaseModel

from specmem.indexer.config import Config
from specmem.indexer.errors import NotFound, SearchError
from specmem.server import citations, memories, reads
from specmem.server.citations import Citation
from specmem.server.memories import TriggerMatch
from specmem.server.search import Mode, SearchResponse

DEFAULT_BUDGET = 2_000
MIN_BUDGET = 200
MAX_BUDGET = 100_000
SEARCH_CANDIDATES = 10  # hybrid results considered after the rules and the triggered memories
LISTED_LEFT_OUT = 5  # left-out memories named in the text (all of them are in `left_out`)
CITES_LISTED = 5  # citations that are not current named under a memory
DIFFS_SHOWN = 2  # of which shown with their diff
CARE = "⚠ The code this memory cites changed since it was written: check it before relying on this memory."

Reason = Literal["rule", "trigger", "search"]
SECTIONS: dict[Reason, str] = {
    "rule": "## Rules (constitutional): always apply",
    "trigger": "## Named by the task's words (trigger phrases)",
    "search": "## Most relevant",
}
Counter = Callable[[Sequence[str]], list[int]]


# The models' fields are described in the README (a docstring here would be repeated in tools/list).
# citation: path:start-end of the lines quoted, the path relative to the project; whole: the whole memory or its
# most relevant section; score: the search score (None when search did not rank it).
class ContextItem(BaseModel):
    id: int
    title: str
    tier: str
    spec_folder: str
    reason: Reason
    score: float | None
    path: str
    citation: str
    start_line: int
    end_line: int
    whole: bool
    tokens: int
    code: str | None  # the cited code's status (see memory_get's citations); None: cites none
    project: str | None = None  # the project it belongs to (its name in a shared index)


class LeftOut(BaseModel):  # a memory that did not fit; citation and tokens of its most relevant section
    id: int
    title: str
    tier: str
    reason: Reason
    citation: str
    tokens: int
    project: str | None = None


class ContextBlock(BaseModel):  # text: the block to paste; tokens: its size for the model's tokenizer
    task: str
    budget: int
    tokens: int
    text: str
    items: list[ContextItem]
    left_out: list[LeftOut]
    mode_used: Mode
    notes: list[str]


@dataclass
class _Candidate:
    id: int
    reason: Reason
    score: float | None
    best: tuple[int, int]  # line span of the most relevant chunk (or its anchored section)
    whole: tuple[int, int]
    row: memories.Memory | None = None  # read from its file when first rendered
    span: tuple[int, int] | None = None  # what is included; None: left out

    def quote(self, span: tuple[int, int]) -> str:
        assert self.row is not None
        lines = self.row.content.splitlines()
        return "\n".join(lines[span[0] - 1 : span[1]]).strip("\n")


def cite(path: str, config: Config, span: tuple[int, int]) -> str:
    """`path:start-end`, the path relative to the project when it lies inside it."""
    rel = os.path.relpath(path, config.project)
    shown = path if rel.startswith("..") else Path(rel).as_posix()
    return f"{shown}:{span[0]}-{span[1]}"


def _spans(conn: apsw.Connection, ids: list[int]) -> dict[int, tuple[int, int]]:
    """Each memory's whole body: from its first chunk's first line to its last chunk's last line."""
    return reads.spans(conn, ids) if ids else {}


def _section(
    conn: apsw.Connection, memory_id: int, start: int, end: int, anchor: str | None
) -> tuple[int, int]:
    """A chunk's span, widened to its whole anchored section when it is part of one."""
    if anchor is None:
        return start, end
    return reads.anchor_span(conn, memory_id, anchor) or (start, end)


def _first_chunk(conn: apsw.Connection, memory_id: int) -> tuple[int, int] | None:
    chunk = reads.chunks(conn, {memory_id: None})[memory_id]
    if chunk is None or chunk.id is None:
        return None
    return _section(conn, memory_id, chunk.start_line, chunk.end_line, chunk.anchor)


def candidates(
    conn: apsw.Connection, found: SearchResponse, triggered: list[TriggerMatch]
) -> list[_Candidate]:
    """Rules, then triggered memories, then search results: each memory once, in that order."""
    rules = [r for r in found.results if r.always_surfaced]
    ranked = [r for r in found.results if not r.always_surfaced][:SEARCH_CANDIDATES]
    hits = {r.id: r for r in found.results}
    order: list[tuple[int, Reason]] = [(r.id, "rule") for r in rules]
    order += [(t.id, "trigger") for t in triggered]
    order += [(r.id, "search") for r in ranked]
    whole = _spans(conn, list({mid for mid, _ in order}))
    out: list[_Candidate] = []
    seen: set[int] = set()
    for mid, reason in order:
        if mid in seen or mid not in whole:  # a memory without chunks has nothing to quote
            continue
        seen.add(mid)
        hit = hits.get(mid)
        if hit is not None:
            best = _section(conn, mid, hit.start_line, hit.end_line, hit.anchor)
        else:
            best = _first_chunk(conn, mid) or whole[mid]
        out.append(_Candidate(mid, reason, hit.score if hit else None, best, whole[mid]))
    return out


def _parts(items: list[_Candidate], config: Config) -> list[str]:
    """The block's parts, in order; the block is them joined by blank lines."""
    parts = ["Project memory for this task (specmem). Cite as path:lines."]
    current: Reason | None = None
    for c in items:
        if c.span is None:
            continue
        if c.reason != current:
            parts.append(SECTIONS[c.reason])
            current = c.reason
        parts.append(_quoted(c, c.span, config))
    left = [c for c in items if c.span is None]
    if left:
        named = "; ".join(f"#{c.id} {c.row.title if c.row else ''}".strip() for c in left[:LISTED_LEFT_OUT])
        more = f"; and {len(left) - LISTED_LEFT_OUT} more" if len(left) > LISTED_LEFT_OUT else ""
        parts.append(f"Left out for the budget (get them by id): {named}{more}")
    return parts


def _quoted(c: _Candidate, span: tuple[int, int], config: Config) -> str:
    """One memory's part: its citation line (marked when the code it cites changed), the quote, the code's status."""
    assert c.row is not None
    care = " · ⚠ cited code changed" if c.row.code in citations.STALE else ""
    head = f"--- {cite(c.row.path, config, span)} · {c.row.title} ({c.row.tier}){care}"
    return f"{head}\n{c.quote(span)}{code_mark(c.row.citations)}"


def code_mark(cites: list[Citation]) -> str:
    """What a context block says under a memory whose cited code is not as it was: a warning when it changed or
    is gone, then each such citation, the first few with their diff."""
    shown = [c for c in cites if c.status != "current"]
    if not shown:
        return ""
    lines = [CARE] if any(c.status in citations.STALE for c in shown) else []
    diffs = 0
    for c in shown[:CITES_LISTED]:
        lines.append(f"Cites {c.describe()}")
        if c.diff and diffs < DIFFS_SHOWN:
            hunks = [line for line in c.diff.splitlines() if not line.startswith(("--- ", "+++ "))]
            lines.append("```diff\n" + "\n".join(hunks) + "\n```")
            diffs += 1
    if len(shown) > CITES_LISTED:
        lines.append(f"… and {len(shown) - CITES_LISTED} more (memory_get lists them)")
    return "\n" + "\n".join(lines)


def _render(items: list[_Candidate], config: Config) -> str:
    return "\n\n".join(_parts(items, config)) + "\n"


def _fit(items: list[_Candidate], config: Config, count: Counter, budget: int) -> str:
    """Choose each candidate's span within `budget` tokens (in place) and return the block's text."""
    # Each part is counted once (parts are joined by blank lines, where word-piece tokenizers split anyway):
    # counting the whole block again for every memory tried made 3,000 rules cost a minute.
    counted: dict[str, int] = {}

    def tokens() -> int:
        parts = _parts(items, config)
        new = [p for p in dict.fromkeys(parts) if p not in counted]
        if new:
            counted.update(zip(new, count(new), strict=True))
        return sum(counted[p] for p in parts)

    # First every memory's most relevant section, in order; then whole memories where the budget allows.
    for widen in (False, True):
        for c in items:
            if widen and (c.span is None or c.span == c.whole):
                continue
            before = c.span
            c.span = c.whole if widen else c.best
            if tokens() > budget:
                c.span = before

    # The final text is counted whole; should that come out over the budget, the last memories give way.
    text = _render(items, config)
    while count([text])[0] > budget and any(c.span is not None for c in items):
        last = next(c for c in reversed(items) if c.span is not None)
        last.span = last.best if last.span != last.best else None
        text = _render(items, config)
    return text


def assemble(
    conn: apsw.Connection,
    config: Config,
    count: Counter,
    task: str,
    found: SearchResponse,
    triggered: list[TriggerMatch],
    *,
    budget: int = DEFAULT_BUDGET,
) -> ContextBlock:
    """The context block for `task` from its search results and trigger matches (see the module's docstring)."""
    if not MIN_BUDGET <= budget <= MAX_BUDGET:
        raise SearchError(f"budget must be between {MIN_BUDGET} and {MAX_BUDGET} tokens, not {budget}")
    notes = list(found.notes)
    items: list[_Candidate] = []
    for c in candidates(conn, found, triggered):
        try:
            c.row = memories.get(conn, config, c.id)
        except NotFound as exc:  # removed or moved since the last scan: say so, quote nothing stale
            notes.append(f"memory {c.id} skipped: {exc}")
            continue
        items.append(c)

    text = _fit(items, config, count, budget)
    return ContextBlock(
        task=task,
        budget=budget,
        tokens=count([text])[0],
        text=text,
        items=[
            ContextItem(
                id=c.id,
                title=c.row.title,
                tier=c.row.tier,
                spec_folder=c.row.spec_folder,
                reason=c.reason,
                score=c.score,
                path=c.row.path,
                citation=cite(c.row.path, config, c.span),
                start_line=c.span[0],
                end_line=c.span[1],
                whole=c.span == c.whole,
                tokens=count([c.quote(c.span)])[0],
                code=c.row.code,
            )
            for c in items
            if c.span is not None and c.row is not None
        ],
        left_out=[
            LeftOut(
                id=c.id,
                title=c.row.title,
                tier=c.row.tier,
                reason=c.reason,
                citation=cite(c.row.path, config, c.best),
                tokens=count([c.quote(c.best)])[0],
            )
            for c in items
            if c.span is None and c.row is not None
        ],
        mode_used=found.mode_used,
        notes=notes,
    )
