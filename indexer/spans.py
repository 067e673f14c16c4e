"""A cited span then and now: is it where it was (current), elsewhere in the file (moved), different (changed, with
a short unified diff old → new) or gone (missing)? Pure functions over lines; no file is read here."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Literal

import xxhash

Status = Literal["current", "moved", "changed", "missing", "unchecked"]
# Worst first: a memory's status is that of its worst citation.
STATUSES: tuple[Status, ...] = ("changed", "missing", "moved", "unchecked", "current")
CONTEXT = 3  # lines kept above and below a span to find it again once lines around it changed
MAX_KEPT_CHARS = 64 * 1024  # a longer span is compared by its hash only (no diff, no move)
MAX_DIFF_LINES = 40
HUNK_RE = re.compile(r"^@@ -(\d+)(,\d+)? \+(\d+)(,\d+)? @@")


def digest(lines: list[str]) -> str:
    return xxhash.xxh3_128_hexdigest("\n".join(lines).encode("utf-8", "surrogatepass"))


@dataclass(frozen=True)
class Then:
    """A span as it was: lines start-end of the file (None: the whole file), their hash, their text when short
    enough to keep, and the lines around it."""

    start: int | None
    end: int | None
    digest: str
    lines: list[str] | None
    before: list[str]
    after: list[str]


@dataclass(frozen=True)
class Now:
    status: Status
    start: int | None = None  # where the span is now (moved, changed)
    end: int | None = None
    diff: str | None = None
    note: str | None = None


def take(lines: list[str], start: int | None, end: int | None) -> Then | None:
    """The span of `lines` (a file's lines) to keep as a baseline; None when the file has no such lines."""
    if start is None or end is None:
        span, before, after = lines, [], []
    else:
        if start > len(lines):
            return None
        end = min(end, len(lines))
        span = lines[start - 1 : end]
        before, after = lines[max(start - 1 - CONTEXT, 0) : start - 1], lines[end : end + CONTEXT]
    kept = span if sum(len(line) + 1 for line in span) <= MAX_KEPT_CHARS else None
    return Then(start, end, digest(span), kept, before, after)


def compare(then: Then, lines: list[str], path: str) -> Now:
    """Where `then` is in a file's current `lines`; `path` names the file in the diff."""
    if then.start is None or then.end is None:
        if digest(lines) == then.digest:
            return Now("current")
        return Now("changed", diff=_diff(then, lines, 1, 1, path), note=None if then.lines else _too_long())
    size = then.end - then.start + 1
    here = lines[then.start - 1 : then.end]
    if len(here) == size and digest(here) == then.digest:
        return Now("current")
    if then.lines is not None:
        at = _nearest(lines, then.lines, then.start)
        if at is not None:
            return Now("moved", at, at + size - 1)
    start, end = _locate(then, lines)
    if start > len(lines):
        return Now("missing", note=f"the file has {len(lines)} lines now; the cited lines are gone")
    if end < start:
        return Now(
            "missing",
            start,
            start,
            diff=_diff(then, [], start, start, path),
            note="the cited lines were deleted",
        )
    diff = _diff(then, lines[start - 1 : end], then.start, start, path)
    return Now("changed", start, end, diff=diff, note=None if then.lines else _too_long())


def _too_long() -> str:
    return f"the cited span is over {MAX_KEPT_CHARS // 1024} KB: only its hash is kept, so no diff"


def _nearest(lines: list[str], span: list[str], near: int) -> int | None:
    """The 1-based start of the occurrence of `span` in `lines` nearest line `near`."""
    if not span:
        return None
    first, size = span[0], len(span)
    best: int | None = None
    for i, line in enumerate(lines):
        if line == first and lines[i : i + size] == span:
            at = i + 1
            if best is None or abs(at - near) < abs(best - near):
                best = at
    return best


def _locate(then: Then, lines: list[str]) -> tuple[int, int]:
    """Where the span's lines are now: after the lines that stood above it and before those below it (the longest
    run of them found near the old place, never blank lines alone); with one side found the span keeps its size;
    with neither, its old line numbers. An end before the start: the span is empty now."""
    assert then.start is not None and then.end is not None
    size = then.end - then.start + 1
    above = _anchor(lines, then.before, then.start, above=True)
    below = _anchor(lines, then.after, then.end + 1, above=False)
    if above is not None and below is not None and below >= above:
        return above, below - 1
    if above is not None:
        return above, min(above + size - 1, len(lines))
    if below is not None:
        return max(below - size, 1), below - 1
    return then.start, min(then.end, len(lines))


def _anchor(lines: list[str], context: list[str], at: int, *, above: bool) -> int | None:
    """The line where the span starts (context above it) or the line after it ends (context below), found by the
    longest run of context lines next to the span that occurs in `lines`, nearest its old place."""
    for k in range(len(context), 0, -1):
        part = context[-k:] if above else context[:k]
        if not any(line.strip() for line in part):
            continue  # blank lines are everywhere: they place nothing
        found = _nearest(lines, part, at - k if above else at)
        if found is not None:
            return found + k if above else found
    return None


def _label(path: str, start: int | None, size: int) -> str:
    if start is None:
        return path
    return f"{path}:{start}" if size == 1 else f"{path}:{start}-{start + max(size, 1) - 1}"


def _diff(then: Then, now: list[str], old_start: int, new_start: int, path: str) -> str | None:
    """A unified diff of the span, old → new, with the file's line numbers; cut to MAX_DIFF_LINES."""
    if then.lines is None:
        return None
    old = f"{_label(path, then.start, len(then.lines))} (when written)"
    new = f"{_label(path, then.start and new_start, len(now))} (now)"
    out: list[str] = []
    for line in difflib.unified_diff(then.lines, now, old, new, n=1, lineterm=""):
        m = HUNK_RE.match(line)
        if m is not None:
            a, b = int(m.group(1)) + old_start - 1, int(m.group(3)) + new_start - 1
            line = f"@@ -{a}{m.group(2) or ''} +{b}{m.group(4) or ''} @@"
        out.append(line)
    if len(out) > MAX_DIFF_LINES:
        out = out[:MAX_DIFF_LINES] + [f"… {len(out) - MAX_DIFF_LINES} more diff lines"]
    return "\n".join(out) or None
