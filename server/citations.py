"""Reading the citations of code that memories hold (read-only): their status for every answer, and the memories
whose cited code changed (`specmem stale`, `memory_stale`). Its SQL is in server/reads.py; indexer/citations.py
decides what the table holds."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import apsw

from specmem.indexer import db
from specmem.server import reads

# A memory's code status is its worst citation's: changed, then missing, moved, unchecked, current.
STALE = ("changed", "missing")  # what `stale` lists and what a context block marks for care
CODE_DESCRIPTION = (
    "Whether the code this memory cites still matches what it saw: current, moved (same lines elsewhere), changed "
    "(code_notes and memory_get show the diff), missing (file or lines gone), unchecked; null when it cites none"
)


@dataclass
class Citation:
    """One place of code a memory cites, and how it compares now with when the memory was written."""

    target: str  # as written in the memory
    path: str  # relative to the repository
    start_line: int | None  # None: the whole file
    end_line: int | None
    line: int  # the memory's line that cites it
    status: str
    baseline: str  # "git <commit>" (the commit that last changed the memory) or "working tree"
    now_start_line: int | None = None  # moved or changed: where the cited lines are now
    now_end_line: int | None = None
    diff: str | None = None  # changed: unified diff of the span, then → now
    note: str | None = None

    @property
    def place(self) -> str:
        if self.start_line is None:
            return self.path
        span = (
            str(self.start_line) if self.start_line == self.end_line else f"{self.start_line}-{self.end_line}"
        )
        return f"{self.path}:{span}"

    def describe(self) -> str:
        """One line: `src/cache.py:10-40 changed (now 12-44)`."""
        now = ""
        if self.now_start_line is not None and self.status in ("moved", "changed"):
            span = (
                str(self.now_start_line)
                if self.now_start_line == self.now_end_line
                else f"{self.now_start_line}-{self.now_end_line}"
            )
            now = f" to {span}" if self.status == "moved" else f" (now {span})"
        why = f": {self.note}" if self.note and self.status != "moved" else ""
        return f"{self.place} {self.status}{now}{why}"


@dataclass
class StaleMemory(reads.MemoryRef):
    """A memory whose cited code changed or is gone, with those citations."""

    written_ms: int  # when its citations were baselined: the memory's commit, or when it was indexed
    code: str
    citations: list[Citation] = field(default_factory=list)


@dataclass
class StaleList:
    total: int
    items: list[StaleMemory]


def available(conn: apsw.Connection) -> bool:
    """False on an index made before citations (a reader never migrates; the next scan adds the tables)."""
    return db.has_table(conn, "citations")


def _citation(row: reads.CitationRow) -> Citation:
    baseline = row.baseline if row.baseline == "worktree" else f"git {row.baseline.split()[-1][:12]}"
    return Citation(
        target=row.target,
        path=row.path,
        start_line=row.start_line,
        end_line=row.end_line,
        line=row.line,
        status=row.status,
        baseline="working tree" if baseline == "worktree" else baseline,
        now_start_line=row.now_start,
        now_end_line=row.now_end,
        diff=row.diff,
        note=row.note,
    )


def of_memories(conn: apsw.Connection, ids: list[int]) -> dict[int, list[Citation]]:
    """Each memory's citations, in the order written (memories citing nothing are left out)."""
    if not ids or not available(conn):
        return {}
    out: dict[int, list[Citation]] = {}
    for row in reads.citations_of(conn, ids):
        out.setdefault(row.memory_id, []).append(_citation(row))
    return out


def _worst(statuses: Iterable[str]) -> str:
    # spans (difflib, xxhash, its patterns) is imported only when some memory cites code: ~5 ms of a search.
    from specmem.indexer.spans import STATUSES

    return min(statuses, key=lambda s: STATUSES.index(s) if s in STATUSES else len(STATUSES))


def code_status(cites: list[Citation]) -> str | None:
    """The worst status of a memory's citations; None when it cites nothing."""
    return _worst(c.status for c in cites) if cites else None


def notes(cites: list[Citation]) -> list[str]:
    """One line per citation that is not current."""
    return [c.describe() for c in cites if c.status != "current"]


def worst(conn: apsw.Connection) -> dict[int, str]:
    """Every memory's code status (memories citing nothing are left out): what resources list."""
    if not available(conn):
        return {}
    found: dict[int, list[str]] = {}
    for memory_id, status in reads.citation_statuses(conn):
        found.setdefault(memory_id, []).append(status)
    return {memory_id: _worst(statuses) for memory_id, statuses in found.items()}


def stale(conn: apsw.Connection, *, limit: int = 50, offset: int = 0) -> StaleList:
    """Memories whose cited code changed or is gone, the longest unreviewed first (oldest baseline, then id)."""
    if not available(conn):
        return StaleList(total=0, items=[])
    total, found = reads.citing(conn, STALE, limit, offset)
    cites = of_memories(conn, [r.id for r in found])
    items = []
    for r in found:
        mine = cites.get(r.id, [])
        items.append(
            StaleMemory(
                **reads.named(r, reads.MemoryRef),
                written_ms=r.written,
                code=code_status(mine) or "current",
                citations=[c for c in mine if c.status != "current"],
            )
        )
    return StaleList(total=total, items=items)


def counts(conn: apsw.Connection) -> dict[str, int]:
    """Citations by status (for stats)."""
    if not available(conn):
        return {}
    return reads.citation_counts(conn)


def annotate(conn: apsw.Connection, results: list[Any]) -> None:
    """Set `code` and `code_notes` on search results (anything with an `id`), in one query."""
    cites = of_memories(conn, [r.id for r in results])
    for r in results:
        mine = cites.get(r.id, [])
        r.code, r.code_notes = code_status(mine), notes(mine)
