"""Duplicate-aware writes: the memories of a spec folder that already say what a new memory says.

Three signals, strongest first: the same content (the body without its title heading, whitespace and case
normalised, hashed), the same title (case-insensitive), or a cosine similarity of at least `SIMILARITY` between
the new memory (title and content, one embedding) and the best chunk of an existing one. The threshold was
measured on paraphrase and non-paraphrase pairs: tests/bench/duplicates.py, and the decision record
specs/005-mcp-server/memory/duplicate-threshold.md.

`replace_body` turns a write into an update of the duplicate: the body is replaced, trigger phrases and tags are
merged, and the caller takes a checkpoint first, so nothing is lost.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

import apsw
import xxhash
from pydantic import BaseModel

from specmem.indexer import atomic, db, files, tiers
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import SpecmemError, WriteError
from specmem.indexer.parse import HEADING_RE, normalise, parse, split_lines
from specmem.indexer.write import rewrite_memory, update_frontmatter, validate_memory

SIMILARITY = 0.82  # chosen on data: see the module docstring
Kind = Literal["same content", "same title", "similar"]
OnDuplicate = Literal["write", "skip", "update"]
_KIND_ORDER = {"same content": 0, "same title": 1, "similar": 2}


class Duplicate(BaseModel):
    id: int
    path: str
    title: str
    kind: Kind
    similarity: float | None = None


def content_key(body: str) -> str:
    """What makes two bodies 'the same content': their text without a leading `# heading`, whitespace and case
    normalised, hashed. An empty body gives "" and is nobody's duplicate."""
    lines = split_lines(body)
    while lines and not lines[0].strip():
        lines.pop(0)
    if lines:
        heading = HEADING_RE.match(lines[0])
        if heading and len(heading.group(1)) == 1:
            lines.pop(0)
    text = " ".join(normalise("\n".join(lines)).split())
    return xxhash.xxh3_128_hexdigest(text.encode("utf-8")) if text else ""


def _title_key(title: str) -> str:
    return " ".join(normalise(title).split())


def _existing_key(path: Path, roots: tuple[Path, ...]) -> str | None:
    try:
        data = atomic.read_file(path, roots)  # non-blocking: a FIFO in the folder must not hang the write
    except (OSError, SpecmemError):
        return None
    parsed = parse(data, PurePosixPath(path.name))
    return content_key("\n".join(parsed.body_lines)) if not parsed.binary else None


def similarities(conn: apsw.Connection, embedder: Embedder, text: str, spec_folder: str) -> dict[int, float]:
    """memory id → cosine similarity of `text` to its most similar chunk, for the memories of a spec folder that
    have vectors of this model."""
    vector = embedder.encode([text])[0].astype("float32").tobytes()
    rows = db.rows(
        conn,
        "SELECT c.memory_id, min(vec_distance_cosine(e.vector, ?)) AS distance FROM memory_chunks c "
        "JOIN memory_index m ON m.id = c.memory_id "
        "JOIN embedding_cache e ON e.model = ? AND e.text_hash = c.text_hash "
        "WHERE m.spec_folder = ? AND m.importance_tier != 'deprecated' GROUP BY c.memory_id",
        (vector, embedder.model_id, spec_folder),
    )
    return {r.memory_id: 1.0 - r.distance for r in rows if r.distance is not None}


def find(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder | None,
    *,
    title: str,
    content: str,
    spec_folder: str,
    threshold: float = SIMILARITY,
) -> list[Duplicate]:
    """Memories of `spec_folder` that say what (`title`, `content`) says, strongest evidence first. Without an
    embedder (model still loading) only content and title are compared."""
    folder = spec_folder.strip("/")
    rows = db.rows(
        conn,
        "SELECT id, path, title FROM memory_index WHERE spec_folder = ? AND importance_tier != 'deprecated' "
        "ORDER BY id",
        (folder,),
    )
    # A row of a root no longer configured is not served: it is nobody's duplicate (until a scan drops it).
    rows = [r for r in rows if files.root_of(Path(r.path), config.roots) is not None]
    if not rows:
        return []
    key, title_key = content_key(content), _title_key(title)
    near = similarities(conn, embedder, f"{title}\n{content}", folder) if embedder is not None else {}
    found: list[Duplicate] = []
    for row in rows:
        score = near.get(row.id)
        kind: Kind | None = None
        if key and _existing_key(Path(row.path), config.roots) == key:
            kind = "same content"
        elif _title_key(row.title) == title_key:
            kind = "same title"
        elif score is not None and score >= threshold:
            kind = "similar"
        if kind is not None:
            similarity = round(score, 4) if score is not None else None
            found.append(
                Duplicate(id=row.id, path=row.path, title=row.title, kind=kind, similarity=similarity)
            )
    found.sort(key=lambda d: (_KIND_ORDER[d.kind], -(d.similarity or 0.0), d.id))
    return found


def replace_body(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    path: Path,
    *,
    title: str,
    content: str,
    tier: str,
    context_type: str | None,
    trigger_phrases: list[str],
    tags: list[str],
) -> list[str]:
    """Rewrite an existing memory with new content: its body becomes `content` and its title `title`; trigger
    phrases and tags are merged, the tier is the more important of the two, every other key and comment of
    the frontmatter stays. Returns what changed. The caller checkpoints the file first."""
    validate_memory(config, title, tier, content, context_type, trigger_phrases, tags)

    def rewrite(raw: bytes) -> tuple[list[str], bytes]:
        bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
        try:
            text = raw.decode("utf-8")[len(bom) :]
        except UnicodeDecodeError:
            raise WriteError(f"{path} is not UTF-8 text; it cannot be updated in place") from None
        before = parse(raw, PurePosixPath(path.name))
        current = {
            "title": before.title,
            "importance_tier": before.tier,
            "context_type": before.context_type,
            "trigger_phrases": before.trigger_phrases,
            "tags": before.tags,
        }
        wanted = {
            "title": title,
            "importance_tier": min(before.tier, tier, key=tiers.rank),
            "context_type": before.context_type or context_type,
            "trigger_phrases": list(dict.fromkeys([*before.trigger_phrases, *trigger_phrases])),
            "tags": list(dict.fromkeys([*before.tags, *tags])),
        }
        changes = {k: v for k, v in wanted.items() if v is not None and v != current[k]}
        nl = "\r\n" if "\r\n" in text else "\n"
        lines = split_lines(text)
        head = "".join(line + nl for line in lines[: before.body_start])
        body = content if content.lstrip().startswith("#") else f"# {title}\n\n{content}"
        new_body = nl.join(split_lines(body.rstrip("\n"))) + nl
        if changes:
            head = update_frontmatter(head, changes)
        body_changed = content_key("\n".join(lines[before.body_start :])) != content_key(body)
        return sorted(changes) + (["body"] if body_changed else []), (bom + head + new_body).encode("utf-8")

    return rewrite_memory(conn, config, embedder, path, rewrite)
