"""Split a parsed file into chunks at headings, each within the embedding model's token limit.

Every chunk keeps its heading path and its 1-based line range in the file, so a result can cite `path:start-end`.
`<!-- ANCHOR:id -->…<!-- /ANCHOR:id -->` blocks are chunks of their own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import xxhash

from specmem.indexer.parse import (
    ANCHOR_CLOSE_RE,
    ANCHOR_OPEN_RE,
    HEADING_LINE_RE,
    HEADING_RE,
    ParsedFile,
    visible_lines,
)

TokenCounter = Callable[[Sequence[str]], list[int]]
HEADING_SEP = " › "


@dataclass(frozen=True)
class Chunk:
    seq: int
    heading: str
    anchor: str | None
    start_line: int  # 1-based, inclusive
    end_line: int  # 1-based, inclusive
    text: str

    @property
    def embed_text(self) -> str:
        """What the model sees: the heading path gives a short section its context."""
        return f"{self.heading}\n{self.text}"

    @property
    def text_hash(self) -> str:
        return xxhash.xxh3_128_hexdigest(self.embed_text.encode("utf-8"))


@dataclass
class _Piece:
    heading: str
    anchor: str | None
    start: int  # index into lines, inclusive
    end: int  # exclusive
    tokens: int
    text: str | None = None  # set when a piece is part of one long line


@dataclass(frozen=True)
class _Lead:
    """Heading lines with no text of their own, carried into the next piece rather than chunked alone."""

    start: int
    text: str
    tokens: int


def _only_headings(lines: list[str], start: int, end: int) -> bool:
    return all(not line.strip() or HEADING_RE.match(line) for line in lines[start:end])


def _sections(parsed: ParsedFile, warnings: list[str]) -> list[tuple[str, str | None, int, int]]:
    lines = parsed.lines
    title = parsed.title
    stack: list[tuple[int, str]] = []
    out: list[tuple[str, str | None, int, int]] = []

    def path() -> str:
        names = [title] + [text for _, text in stack]
        deduped = [n for i, n in enumerate(names) if i == 0 or n != names[i - 1]]
        return HEADING_SEP.join(deduped)

    cur_start, cur_anchor, cur_path, anchor_line = parsed.body_start, None, path(), 0
    # Only heading lines and lines with a fence or a comment marker (anchors are comments) can change a section.
    for i, visible in visible_lines(lines, parsed.body_start, HEADING_LINE_RE):
        raw = lines[i]
        if cur_anchor is None:
            opened = ANCHOR_OPEN_RE.match(raw)
            if opened:
                out.append((cur_path, None, cur_start, i))
                cur_start, cur_anchor, anchor_line = i, opened.group(1), i + 1
                continue
        else:
            closed = ANCHOR_CLOSE_RE.match(raw)
            if closed and closed.group(1).lower() == cur_anchor.lower():
                out.append((cur_path, cur_anchor, cur_start, i + 1))
                cur_start, cur_anchor, cur_path = i + 1, None, path()
                continue
        heading = HEADING_RE.match(visible)
        if heading and heading.group(2).strip():
            level = len(heading.group(1))
            while stack and stack[-1][0] >= level:
                stack.pop()
            stack.append((level, heading.group(2).strip()))
            if cur_anchor is None:
                out.append((cur_path, None, cur_start, i))
                cur_start, cur_path = i, path()
    if cur_anchor is not None:
        warnings.append(
            f"<!-- ANCHOR:{cur_anchor} --> on line {anchor_line} is never closed; it runs to the end of the file"
        )
    out.append((cur_path, cur_anchor, cur_start, len(lines)))
    return out


def _split(
    piece: _Piece, lines: list[str], counts: list[int], budget: int, count: TokenCounter
) -> list[_Piece]:
    """Split an oversized piece at blank lines where possible, else at lines, else at words."""
    out: list[_Piece] = []
    start, total, last_blank = piece.start, 0, None
    i = piece.start
    while i < piece.end:
        n = counts[i]
        if i > start and total + n > budget and _only_headings(lines, start, i):
            # A heading that would be a chunk of its own opens the first part of the line after it instead.
            lead = _Lead(start, "\n".join(lines[start:i]), total)
            out.extend(_split_line(piece, i, lines[i], budget, count, lead))
            start, total, last_blank = i + 1, 0, None
            i += 1
            continue
        if n > budget:
            if i > start:
                out.append(_Piece(piece.heading, piece.anchor, start, i, total))
            out.extend(_split_line(piece, i, lines[i], budget, count))
            start, total, last_blank = i + 1, 0, None
            i += 1
            continue
        if total + n > budget and i > start:
            cut = i
            if (
                last_blank is not None
                and last_blank > start
                and not _only_headings(lines, start, last_blank + 1)
            ):
                cut = last_blank + 1
            out.append(_Piece(piece.heading, piece.anchor, start, cut, sum(counts[start:cut])))
            start, total, last_blank = cut, sum(counts[cut:i]), None
            if total + n > budget and i > start:  # the tail after the blank line is still too long
                out.append(_Piece(piece.heading, piece.anchor, start, i, total))
                start, total = i, 0
        if not lines[i].strip():
            last_blank = i
        total += n
        i += 1
    if start < piece.end:
        out.append(_Piece(piece.heading, piece.anchor, start, piece.end, total))
    return out


def _split_line(
    piece: _Piece, index: int, line: str, budget: int, count: TokenCounter, lead: _Lead | None = None
) -> list[_Piece]:
    """Split one over-long line at words. `lead` (heading lines above it) opens the first part, within budget."""
    words = line.split(" ")
    sizes = count(words)
    out: list[_Piece] = []
    current: list[str] = []
    total = lead.tokens if lead else 0

    def flush(text: str, tokens: int) -> None:
        nonlocal lead
        if lead is not None:
            out.append(
                _Piece(piece.heading, piece.anchor, lead.start, index + 1, tokens, f"{lead.text}\n{text}")
            )
            lead = None
        else:
            out.append(_Piece(piece.heading, piece.anchor, index, index + 1, tokens, text))

    for word, n in zip(words, sizes, strict=True):
        if current and total + n > budget:
            flush(" ".join(current), total)
            current, total = [], 0
        # A single "word" longer than the room left (a base64 blob, say) is cut by characters.
        while total + n > budget and not current and len(word) > 1:
            part = word[: max(1, len(word) * (budget - total) // (n + 1))]
            flush(part, budget)
            word = word[len(part) :]
            n, total = count([word])[0], 0
        current.append(word)
        total += n
    if current:
        flush(" ".join(current), total)
    return out


def chunk_file(parsed: ParsedFile, count: TokenCounter, max_tokens: int) -> tuple[list[Chunk], list[str]]:
    """Chunks of one parsed file, and warnings about its structure."""
    warnings: list[str] = []
    if parsed.binary or not parsed.lines:
        return [], warnings
    lines = parsed.lines
    counts = [0] * len(lines)
    body_counts = count(lines[parsed.body_start :])
    counts[parsed.body_start :] = body_counts

    sections = _sections(parsed, warnings)
    headings = sorted({h for h, _, _, _ in sections})
    heading_cost = dict(zip(headings, count(headings), strict=True))
    # [CLS] and [SEP], plus the heading line that prefixes every chunk.
    reserve = 3

    pieces: list[_Piece] = []
    for heading, anchor, start, end in sections:
        while start < end and not lines[start].strip():
            start += 1
        while end > start and not lines[end - 1].strip():
            end -= 1
        if start >= end:
            continue
        budget = max(8, max_tokens - reserve - heading_cost[heading])
        piece = _Piece(heading, anchor, start, end, sum(counts[start:end]))
        pieces.extend([piece] if piece.tokens <= budget else _split(piece, lines, counts, budget, count))

    # Pack neighbouring small sections together (never across an anchor) so each chunk carries enough context.
    packed: list[_Piece] = []
    for piece in pieces:
        prev = packed[-1] if packed else None
        if (
            prev is not None
            and prev.anchor is None
            and piece.anchor is None
            and prev.text is None
            and piece.text is None
            and prev.end <= piece.start
            and prev.tokens + piece.tokens + sum(counts[prev.end : piece.start])
            <= max(8, max_tokens - reserve - heading_cost[prev.heading])
        ):
            prev.tokens += piece.tokens + sum(counts[prev.end : piece.start])
            prev.end = piece.end
            continue
        packed.append(piece)

    chunks = [
        Chunk(
            seq=seq,
            heading=p.heading,
            anchor=p.anchor,
            start_line=p.start + 1,
            end_line=p.end,
            text=p.text if p.text is not None else "\n".join(lines[p.start : p.end]),
        )
        for seq, p in enumerate(packed)
    ]
    return chunks, warnings
