"""Reading memories and index statistics (read-only)."""

from __future__ import annotations

import json
import os
import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import apsw
from pydantic import BaseModel, Field

from specmem.indexer import db, files, tiers
from specmem.indexer.config import Config
from specmem.indexer.errors import NotFound
from specmem.indexer.lock import WatcherInfo, watcher_info
from specmem.indexer.parse import decode, normalise


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


# A memory's index row, named as the models below name them.
MEMORY_COLS = (
    "id, path, rel_path, title, importance_tier AS tier, spec_folder, context_type, trigger_phrases, tags, "
    "expires, anchors, warnings, embedding_status, confidence, line_count, updated_at"
)
LIST_COLS = "id, path, rel_path, title, importance_tier AS tier, spec_folder, context_type, updated_at, embedding_status"
JSON_FIELDS = ("trigger_phrases", "tags", "anchors", "warnings")


def inside_roots(path: Path, cfg: Config) -> bool:
    """Whether `path`, with symlinks resolved, lies inside one of the roots."""
    real = path.resolve()
    return any(files.within(real, root.resolve()) for root in cfg.roots)


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
        return False
    return True


def find(conn: apsw.Connection, cfg: Config, path_or_id: str | int) -> Any:
    """The memory row (named) for an id or a path (absolute, relative to the cwd, or relative to a root)."""
    text = str(path_or_id).strip()
    if text.isascii() and text.isdigit():
        row = None
        if int(text) <= db.MAX_ROWID:
            row = db.one(conn, f"SELECT {MEMORY_COLS} FROM memory_index WHERE id = ?", (int(text),))
        if row is None:
            raise NotFound(f"no memory with id {text}; `specmem search` or `specmem list` show what exists")
        return row
    if "\x00" in text:
        raise NotFound("a path cannot contain a NUL character")
    if not text.isascii() and not _utf8(text):
        raise NotFound("a path must be UTF-8 text; give an id or a path inside the roots")
    # Accents composed or decomposed (macOS and archives write NFD names): either spelling finds the file.
    spellings = (
        [text]
        if text.isascii()
        else list(
            dict.fromkeys([text, unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)])
        )
    )
    candidates: list[Path] = []
    for spelling in spellings:
        raw = Path(spelling).expanduser()
        candidates += [raw] if raw.is_absolute() else [Path.cwd() / raw, *(root / raw for root in cfg.roots)]
    for candidate in candidates:
        absolute = Path(os.path.abspath(candidate))
        row = db.one(conn, f"SELECT {MEMORY_COLS} FROM memory_index WHERE path = ?", (str(absolute),))
        if row is not None:
            return row
    for spelling in spellings:
        found = db.rows(conn, f"SELECT {MEMORY_COLS} FROM memory_index WHERE rel_path = ?", (spelling,))
        if len(found) == 1:
            return found[0]
    if not any(inside_roots(c, cfg) for c in candidates):
        roots = ", ".join(str(r) for r in cfg.roots)
        raise NotFound(f"{text} is outside the memory roots ({roots}); give a path inside them")
    raise NotFound(
        f"no indexed memory at {text!r}; give an id or a path inside the roots, or run `specmem scan`"
    )


def find_served(conn: apsw.Connection, cfg: Config, path_or_id: str | int) -> tuple[Any, Path]:
    """The memory row and its file, refusing a file that (through a symlink) lies outside the roots."""
    row = find(conn, cfg, path_or_id)
    path = Path(row.path)
    if not inside_roots(path, cfg):
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
        data = path.read_bytes()
    except FileNotFoundError:
        raise NotFound(f"{path} was removed since the last scan; run `specmem scan`") from None
    except OSError as exc:
        raise NotFound(f"cannot read {path}: {exc.strerror}") from None
    content, _, binary = decode(data)
    content = "" if binary else content
    lines = content.splitlines(keepends=True)
    first, last = 1, max(len(lines), 1)
    if anchor is not None:
        spans: list[Any] = conn.execute(
            "SELECT min(start_line), max(end_line) FROM memory_chunks WHERE memory_id = ? AND anchor = ?",
            (row.id, anchor),
        ).fetchall()
        if not spans or spans[0][0] is None:
            known = ", ".join(json.loads(row.anchors)) or "none"
            raise NotFound(f"memory {row.id} has no anchor {anchor!r} (its anchors: {known})")
        first, last = spans[0]
    elif start_line is not None or end_line is not None:
        first, last = start_line or 1, end_line or len(lines)
        if first < 1 or last < first:
            raise NotFound(f"bad line range {first}-{last}: lines are 1-based and start <= end")
        if first > len(lines):
            raise NotFound(f"line {first} is past the end: the file has {len(lines)} lines")
        last = min(last, len(lines))
    if (first, last) != (1, max(len(lines), 1)):
        content = "".join(lines[first - 1 : last])
    fields = row._asdict()
    fields.update({name: json.loads(fields[name]) for name in JSON_FIELDS})
    return Memory(**fields, start_line=first, end_line=last, content=content)


def _counts(conn: apsw.Connection, column: str) -> dict[str, int]:
    sql = f"SELECT coalesce({column}, ''), count(*) FROM memory_index GROUP BY 1 ORDER BY 2 DESC, 1"
    return {k: v for k, v in conn.execute(sql)}


def stats(conn: apsw.Connection, cfg: Config) -> Stats:
    dim = db.get_config(conn, "dim")
    warned = [
        FileWarnings(path=p, messages=json.loads(w))
        for p, w in conn.execute(
            "SELECT path, warnings FROM memory_index WHERE warnings != '[]' ORDER BY path"
        )
    ]
    db_bytes = sum(os.stat(p).st_size for p in (cfg.db_path, Path(f"{cfg.db_path}-wal")) if os.path.exists(p))
    return Stats(
        db_path=str(cfg.db_path),
        db_bytes=db_bytes,
        files_bytes=db.scalar(conn, "SELECT coalesce(sum(size), 0) FROM memory_index"),
        schema_version=db.schema_version(conn),
        model=db.get_config(conn, "model"),
        dim=int(dim) if dim else None,
        memories=db.scalar(conn, "SELECT count(*) FROM memory_index"),
        chunks=db.scalar(
            conn, "SELECT count(*) FROM memory_chunks WHERE memory_id IN (SELECT id FROM memory_index)"
        ),
        by_tier=_counts(conn, "importance_tier"),
        by_spec_folder=_counts(conn, "spec_folder"),
        by_context_type=_counts(conn, "context_type"),
        by_embedding_status=_counts(conn, "embedding_status"),
        warnings=warned,
        watcher=_watcher(cfg),
    )


def _watcher(cfg: Config) -> WatcherInfo | None:
    return watcher_info(cfg.watcher_lock_path, cfg.watcher_status_path)


class MemoryList(BaseModel):
    total: int
    offset: int
    items: list[ListItem]


SORTS = {
    "updated": "updated_at DESC, id",
    "title": "title COLLATE NOCASE, id",
    "path": "rel_path, id",
    "tier": f"{tiers.sql_rank('importance_tier')}, updated_at DESC, id",
}


def list_memories(
    conn: apsw.Connection,
    *,
    offset: int = 0,
    limit: int = 50,
    spec_folder: str | None = None,
    tier: str | None = None,
    sort: str = "updated",
) -> MemoryList:
    """One page of memories, newest first by default."""
    where, args = ["1"], []
    if spec_folder:
        where.append("(spec_folder = ? OR spec_folder LIKE ? ESCAPE '\\')")
        escaped = spec_folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        args += [spec_folder, f"{escaped}/%"]
    if tier:
        where.append("importance_tier = ?")
        args.append(tier)
    clause = " AND ".join(where)
    total = db.scalar(conn, f"SELECT count(*) FROM memory_index WHERE {clause}", args)
    found = db.rows(
        conn,
        f"SELECT {LIST_COLS} FROM memory_index WHERE {clause} ORDER BY {SORTS[sort]} LIMIT ? OFFSET ?",
        [*args, limit, offset],
    )
    items = [ListItem(**r._asdict()) for r in found]
    return MemoryList(total=total, offset=offset, items=items)


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
    rows = db.rows(
        conn,
        "SELECT id, path, title, importance_tier AS tier, spec_folder, trigger_phrases FROM memory_index "
        "WHERE trigger_phrases != '[]' AND importance_tier != 'deprecated'",
    )
    return TriggerIndex((phrase, row) for row in rows for phrase in json.loads(row.trigger_phrases))


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
