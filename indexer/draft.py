"""A memory to write: one value from the edge (a CLI command, an MCP tool, the API) to the file, with its
validation and its rendering; and what makes two memories the same (duplicates are found by
server/duplicates.py, the write side acts on them: write.save).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any, Literal

import xxhash
import yaml
from pydantic import BaseModel

from specmem.indexer.errors import WriteError
from specmem.indexer.parse import HEADING_RE, normalise, parse, split_lines
from specmem.indexer.tiers import TIERS

MAX_TITLE = 200
Kind = Literal["same content", "same title", "similar"]
OnDuplicate = Literal["write", "skip", "update"]


class Duplicate(BaseModel):
    """A memory that already says what a draft says, and the evidence."""

    id: int
    path: str
    title: str
    kind: Kind
    similarity: float | None = None


@dataclass(frozen=True)
class Draft:
    """A memory to write: its title, body (markdown; a `# title` heading is added when it has none), spec
    folder (the file goes to `<spec_folder>/memory/`) and frontmatter."""

    title: str
    content: str
    spec_folder: str
    tier: str = "normal"
    context_type: str | None = None
    trigger_phrases: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Edges hand lists (click tuples, JSON arrays); the value keeps tuples, so it stays immutable.
        object.__setattr__(self, "trigger_phrases", tuple(self.trigger_phrases))
        object.__setattr__(self, "tags", tuple(self.tags))

    @property
    def body(self) -> str:
        """The markdown body as written to the file."""
        return self.content if self.content.lstrip().startswith("#") else f"# {self.title}\n\n{self.content}"

    def validate(self) -> None:
        """Refuse a draft whose fields would not read back: every text field checked by name."""
        validate_fields(
            self.title,
            self.tier,
            {
                "title": self.title,
                "content": self.content,
                "context_type": self.context_type,
                **{f"trigger phrase {p!r}": p for p in self.trigger_phrases},
                **{f"tag {t!r}": t for t in self.tags},
            },
        )

    def render(self) -> str:
        """The memory file's text: YAML frontmatter (only the keys given), then the body."""
        lines = [f"title: {yaml_value(self.title)}", f"importance_tier: {self.tier}"]
        if self.context_type:
            lines.append(f"context_type: {yaml_value(self.context_type)}")
        if self.trigger_phrases:
            lines.append("trigger_phrases:")
            lines += [f"  - {yaml_value(p)}" for p in self.trigger_phrases]
        if self.tags:
            lines.append(f"tags: {yaml_value(list(self.tags))}")
        return "---\n" + "\n".join(lines) + "\n---\n" + self.body.rstrip("\n") + "\n"

    def encoded(self, max_bytes: int) -> bytes:
        """The file's bytes, validated: within `max_bytes`, and reading back as given."""
        self.validate()
        data = self.render().encode("utf-8")
        if len(data) > max_bytes:
            raise WriteError(
                f"the memory would be {len(data)} bytes, over the {max_bytes}-byte limit "
                "(SPECMEM_MAX_FILE_BYTES); split it into several memories"
            )
        self._reads_back(data)
        return data

    def _reads_back(self, data: bytes) -> None:
        """Refuse a memory whose frontmatter would not read back as given (YAML line breaks such as U+0085)."""
        got = metadata(data, "new.md")
        asked: dict[str, Any] = {
            "title": self.title.strip(),
            "importance_tier": self.tier,
            "context_type": (self.context_type or "").strip() or None,
            "trigger_phrases": _items(self.trigger_phrases),
            "tags": _items(self.tags),
        }
        # A "Trigger phrases" section in the body adds its own phrases after these.
        got["trigger_phrases"] = got["trigger_phrases"][: len(asked["trigger_phrases"])]
        for key, value in asked.items():
            if got[key] != value:
                raise WriteError(
                    f"the {key} {value!r} would read back as {got[key]!r}; nothing was written: leave out line "
                    "breaks and control characters"
                )


def _items(values: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(v.strip() for v in values if v.strip()))


def clean(name: str, value: str | None) -> None:
    """Refuse a text field that cannot be written as UTF-8 text (a NUL, undecodable bytes)."""
    if value is None:
        return
    if "\x00" in value:
        raise WriteError(f"{name} contains a NUL character")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise WriteError(
            f"{name} is not UTF-8 text (undecodable bytes at character {exc.start}); pass it as UTF-8"
        ) from None


def validate_fields(title: str | None, tier: str | None, texts: dict[str, str | None]) -> None:
    """Refuse a title or tier that cannot be written, or a text field that is not clean UTF-8."""
    for name, value in texts.items():
        clean(name, value)
    if title is not None and (not title.strip() or len(title) > MAX_TITLE or "\n" in title):
        raise WriteError(f"title must be one line of 1 to {MAX_TITLE} characters")
    if tier is not None and tier not in TIERS:
        raise WriteError(f"unknown tier {tier!r}; use one of: {', '.join(TIERS)}")


def yaml_value(value: Any) -> str:
    """One YAML value on one line (flow style), e.g. `Some title`, `'a: b'`, `[x, y]`."""
    text = yaml.safe_dump([value], default_flow_style=True, allow_unicode=True, width=10**9).strip()
    return text[1:-1]


def metadata(data: bytes, name: str) -> dict[str, Any]:
    """The frontmatter keys the write tools manage, as the indexer reads them from a file's bytes."""
    parsed = parse(data, PurePosixPath(name))
    return {
        "title": parsed.title,
        "importance_tier": parsed.tier,
        "context_type": parsed.context_type,
        "trigger_phrases": parsed.trigger_phrases,
        "tags": parsed.tags,
    }


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


def title_key(title: str) -> str:
    """What makes two titles the same: case and whitespace aside."""
    return " ".join(normalise(title).split())
