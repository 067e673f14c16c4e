"""Duplicate-aware writes, the write side: what "the same content" means, what a duplicate found is, and
`replace_body`, which turns a write into an update of the duplicate: the body is replaced, trigger phrases and
tags are merged, and the caller takes a checkpoint first, so nothing is lost. Finding duplicates is a read:
server/duplicates.py.
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Literal

import apsw
import xxhash
from pydantic import BaseModel

from specmem.indexer import tiers
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import WriteError
from specmem.indexer.parse import HEADING_RE, normalise, parse, split_lines
from specmem.indexer.write import rewrite_memory, update_frontmatter, validate_memory

Kind = Literal["same content", "same title", "similar"]
OnDuplicate = Literal["write", "skip", "update"]


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
