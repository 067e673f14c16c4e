"""Reading memories and index statistics (read-only)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apsw
from pydantic import BaseModel, Field

from specmem.indexer import atomic, db, files, tiers
from specmem.indexer.config import Config
from specmem.indexer.errors import NotFound, WriteError
from specmem.indexer.lock import WatcherInfo, watcher_holder, watcher_info
from specmem.indexer.parse import decode, normalise
from specmem.server import citations, reads
from specmem.server.citations import Citation
from specmem.server.reads import MemoryDetail, Scope


class ListItem(BaseModel):
    id: int
    path: str
    rel_path: str
    title: str
    tier: str
    spec_folder: str
    context_type: str | None
    updated_at: int
    embedding_status: str
    project: str | None = Field(
        default=None, description="The project it belongs to (its name in a shared index)"
    )


class Memory(ListItem):
    trigger_phrases: list[str]
    tags: list[str]
    expires: str | None
    anchors: list[str]
    warnings: list[str]
    confidence: float
    line_count: int
    start_line: int
    end_line: int
    content: str
    code: str | None = Field(default=None, description=citations.CODE_DESCRIPTION)
    citations: list[Citation] = Field(
        default_factory=list,
        description="The code it cites, each with its status and, when changed, the diff",
    )


class FileWarnings(BaseModel):
    path: str
    messages: list[str]


class Stats(BaseModel):
    db_path: str
    db_bytes: int
    files_bytes: int = Field(description="Total size of the indexed memory files")
    schema_version: int
    model: str | None
    dim: int | None
    memories: int
    chunks: int
    by_tier: dict[str, int]
    by_spec_folder: dict[str, int]
    by_context_type: dict[str, int]
    by_embedding_status: dict[str, int]
    warnings: list[FileWarnings]
    watcher: WatcherInfo | None
    citations: dict[str, int] = Field(default_factory=dict, description="Citations of code by status")


def find(conn: apsw.Connection, cfg: Config, path_or_id: str | int) -> MemoryDetail:
    """The memory's row for an id or a path (absolute, relative to the cwd, or relative to a root)."""
    text = str(path_or_id).strip()
    if text.isascii() and text.isdigit():
        row = reads.memory_by_id(conn, int(text)) if int(text) <= db.MAX_ROWID else None
        if row is None:
            raise NotFound(f"no memory with id {text}; `specmem search` or `specmem list` show what exists")
        return row
    candidates = files.user_paths(text, cfg.project, cfg.roots)
    # A path from here (absolute, or relative to the current folder) names one file; relative to the project and
    # the roots it may name one in each: then it is ambiguous, and never silently the first.
    here = [
        raw if raw.is_absolute() else Path.cwd() / raw
        for raw in (Path(spelling).expanduser() for spelling in files.spellings(text))
    ]
    for candidate in here:
        row = reads.memory_by_path(conn, os.path.abspath(candidate))
        if row is not None:
            return row
    matches: dict[int, MemoryDetail] = {}
    for candidate in candidates:
        row = reads.memory_by_path(conn, os.path.abspath(candidate))
        if row is not None:
            matches[row.id] = row
    if not matches:
        for spelling in files.spellings(text):
            matches.update((row.id, row) for row in reads.memories_by_rel_path(conn, spelling))
    if len(matches) == 1:
        return next(iter(matches.values()))
    if matches:
        raise NotFound(ambiguous(text, [(row.path, row.id) for row in matches.values()]))
    if not any(files.inside_roots(c, cfg.roots) for c in candidates):
        roots = ", ".join(str(r) for r in cfg.roots)
        raise NotFound(f"{text} is outside the memory roots ({roots}); give a path inside them")
    raise NotFound(
        f"no indexed memory at {text!r}; give an id or a path inside the roots, or run `specmem scan`"
    )


def ambiguous(text: str, found: list[tuple[str, int | None]]) -> str:
    """The error for a name that fits several memories or files: each candidate, and what to give instead."""
    listed = "; ".join(path if mid is None else f"{path} (id {mid})" for path, mid in sorted(found))
    return f"{text} is ambiguous: it names {len(found)} memories ({listed}); give the id or the whole path"


def find_served(conn: apsw.Connection, cfg: Config, path_or_id: str | int) -> tuple[MemoryDetail, Path]:
    """The memory row and its file, refusing a file that (through a symlink) lies outside the roots."""
    row = find(conn, cfg, path_or_id)
    path = Path(row.path)
    if not files.inside_roots(path, cfg.roots):
        raise NotFound(f"{path} is outside the configured roots; it is not served")
    return row, path


def get(
    conn: apsw.Connection,
    cfg: Config,
    path_or_id: str | int,
    *,
    anchor: str | None = None,
    start_line: int | None = None,
    end_line: int | None = None,
) -> Memory:
    """One memory with its content read from the file, which must lie inside the roots.

    `anchor` (a `<!-- ANCHOR:name -->` section) or a 1-based inclusive line range returns only that part."""
    if anchor is not None and (start_line is not None or end_line is not None):
        raise NotFound("give an anchor or a line range, not both")
    row, path = find_served(conn, cfg, path_or_id)
    try:
        # Read as writes reach files (never through a symlink swapped in, never waiting on a FIFO).
        data = atomic.read_file(path, cfg.roots)
    except FileNotFoundError:
        raise NotFound(f"{path} was removed since the last scan; run `specmem scan`") from None
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None
    except WriteError as exc:
        raise NotFound(f"cannot read it: {exc}") from None
    content, _, binary = decode(data)
    content = "" if binary else content
    lines = content.splitlines(keepends=True)
    first, last = 1, max(len(lines), 1)
    if anchor is not None:
        span = reads.anchor_span(conn, row.id, anchor)
        if span is None:
            known = ", ".join(row.anchors) or "none"
            raise NotFound(f"memory {row.id} has no anchor {anchor!r} (its anchors: {known})")
        first, last = span
    elif start_line is not None or end_line is not None:
        first, last = start_line or 1, end_line or len(lines)
        if first < 1 or last < first:
            raise NotFound(f"bad line range {first}-{last}: lines are 1-based and start <= end")
        if first > len(lines):
            raise NotFound(f"line {first} is past the end: the file has {len(lines)} lines")
        last = min(last, len(lines))
    if (first, last) != (1, max(len(lines), 1)):
        content = "".join(lines[first - 1 : last])
    cites = citations.of_memories(conn, [row.id]).get(row.id, [])
    return Memory(
        **reads.named(row),
        start_line=first,
        end_line=last,
        content=content,
        code=citations.code_status(cites),
        citations=cites,
    )


def stats(conn: apsw.Connection, cfg: Config) -> Stats:
    dim = db.get_config(conn, "dim")
    warned = [FileWarnings(path=p, messages=m) for p, m in reads.file_warnings(conn)]
    db_bytes = sum(os.stat(p).st_size for p in (cfg.db_path, Path(f"{cfg.db_path}-wal")) if os.path.exists(p))
    return Stats(
        db_path=str(cfg.db_path),
        db_bytes=db_bytes,
        files_bytes=reads.files_bytes(conn),
        schema_version=db.schema_version(conn),
        model=db.get_config(conn, "model"),
        dim=int(dim) if dim else None,
        memories=reads.memory_count(conn),
        chunks=reads.chunk_count(conn),
        by_tier=reads.counts(conn, "importance_tier"),
        by_spec_folder=reads.counts(conn, "spec_folder"),
        by_context_type=reads.counts(conn, "context_type"),
        by_embedding_status=reads.counts(conn, "embedding_status"),
        warnings=warned,
        watcher=_watcher(cfg),
        citations=citations.counts(conn),
    )


def _watcher(cfg: Config) -> WatcherInfo | None:
    return watcher_info(watcher_holder(cfg), cfg.watcher_status_path)


class MemoryList(BaseModel):
    total: int
    offset: int
    items: list[ListItem]


def list_memories(
    conn: apsw.Connection,
    *,
    offset: int = 0,
    limit: int = 50,
    spec_folder: str | None = None,
    tier: str | None = None,
    sort: str = "updated",
) -> MemoryList:
    """One page of memories, newest first by default (a spec folder includes the folders below it)."""
    scope = Scope(spec_folder=spec_folder, tiers=(tier,) if tier else (), hide_deprecated=False)
    # An offset past the largest id is past every page (SQLite takes nothing bigger): an empty page.
    total, found = reads.page(conn, scope, sort, min(offset, db.MAX_ROWID), limit)
    return MemoryList(total=total, offset=offset, items=[ListItem(**reads.named(r)) for r in found])


class TriggerMatch(BaseModel):
    id: int
    path: str
    title: str
    tier: str
    spec_folder: str
    phrases: list[str]


_WORD = re.compile(r"\w+")


class TriggerIndex:
    """Every trigger phrase as a word-bounded pattern over normalised text, filed under its longest word.

    A phrase can only occur where each of its words is a whole word of the prompt, so a prompt runs the patterns
    filed under its own words only: matching costs what the prompt's words cost, not what every phrase costs
    (50,000 phrases made every call take seconds). `searched` counts the patterns run."""

    def __init__(self, phrases: Iterable[tuple[str, Any]]) -> None:
        self.by_word: dict[str, list[tuple[int, re.Pattern[str], str, Any]]] = {}
        self.wordless: list[tuple[int, re.Pattern[str], str, Any]] = []  # phrases of punctuation only
        self.searched = 0
        for seq, (phrase, row) in enumerate(phrases):
            norm = " ".join(normalise(phrase).split())
            if not norm:
                continue
            pattern = re.compile(r"(?<!\w)" + r"\s+".join(map(re.escape, norm.split())) + r"(?!\w)")
            words = _WORD.findall(norm)
            entry = (seq, pattern, phrase, row)
            if words:
                self.by_word.setdefault(max(words, key=len), []).append(entry)
            else:
                self.wordless.append(entry)

    def candidates(self, text: str) -> list[tuple[int, re.Pattern[str], str, Any]]:
        """The phrases that may occur in normalised `text`, in the order they were given."""
        found = list(self.wordless)
        for word in set(_WORD.findall(text)):
            found += self.by_word.get(word, ())
        found.sort(key=lambda entry: entry[0])
        return found


def trigger_index(conn: apsw.Connection) -> TriggerIndex:
    """The trigger phrases of every memory that is not deprecated, with its memory's row."""
    return TriggerIndex((phrase, row) for row, phrases in reads.triggered(conn) for phrase in phrases)


def match_triggers(index: TriggerIndex, prompt: str, limit: int) -> list[TriggerMatch]:
    """Memories whose trigger phrases occur in the prompt as whole words (case- and Unicode-insensitive)."""
    text = normalise(prompt)
    found: dict[int, TriggerMatch] = {}
    for _, pattern, phrase, row in index.candidates(text):
        index.searched += 1
        if pattern.search(text):
            match = found.setdefault(
                row.id,
                TriggerMatch(
                    id=row.id,
                    path=row.path,
                    title=row.title,
                    tier=row.tier,
                    spec_folder=row.spec_folder,
                    phrases=[],
                ),
            )
            match.phrases.append(phrase)
    ranked = sorted(
        found.values(),
        key=lambda m: (tiers.rank(m.tier), -len(m.phrases), m.id),
    )
    return ranked[:limit]
