"""Parse a memory file's bytes: decoding, frontmatter, tier, trigger phrases, anchors, title.

Never raises on bad input: every problem becomes a warning on the result, and the file is indexed as well as it can be.
"""

from __future__ import annotations

import datetime as dt
import re
import unicodedata
from bisect import bisect_right
from collections.abc import Iterator
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import PurePosixPath
from typing import Any

from specmem.indexer.tiers import DEFAULT_TIER, TIERS

FENCE_RE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
HEADING_RE = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.*?)[ \t#]*$")
HEADING_LINE_RE = re.compile(
    r"\n {0,3}#"
)  # a newline, then any line HEADING_RE can match (for visible_lines)
# Anchor markers stand alone on their line (a marker quoted inside a sentence or inline code is text).
ANCHOR_OPEN_RE = re.compile(r"^\s*<!--\s*ANCHOR:\s*([\w.\-]+)\s*-->\s*$", re.IGNORECASE)
ANCHOR_CLOSE_RE = re.compile(r"^\s*<!--\s*/ANCHOR:\s*([\w.\-]+)\s*-->\s*$", re.IGNORECASE)
COMMENT_RE = re.compile(r"<!--.*?-->", re.DOTALL)
# `importance_tier: critical`, `**Importance Tier:** critical`, `[IMPORTANCE_TIER: critical]` in the body.
BODY_TIER_RE = re.compile(
    r"^\s*(?:[-*]\s+)?\[?\s*(?:\*\*)?importance[ _-]?tier(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*[`'\"]?([A-Za-z]+)",
    re.IGNORECASE,
)
TRIGGER_HEADING_RE = re.compile(r"^trigger[ _-]?phrases?$", re.IGNORECASE)
# Words the two patterns above need, with their flags: a file without them has neither.
_IMPORTANCE = re.compile("importance", re.IGNORECASE)
_TRIGGER = re.compile("trigger", re.IGNORECASE)
LIST_ITEM_RE = re.compile(r"^\s*(?:[-*+]|\d+[.)])\s+(.*\S)\s*$")
# Real frontmatter is a few hundred bytes; a bigger block is not metadata, and parsing it costs time and memory.
MAX_FRONTMATTER_BYTES = 64 * 1024
MAX_VALUE_CHARS = 1000  # one metadata value (title, tier, a tag, a phrase) as text
# Lists or tables inside one another: real frontmatter nests two or three deep; the parsers recurse per level.
MAX_NESTING = 50
# Trigger phrases and tags of one file: every prompt is matched against every phrase, so a file must not hold
# 50,000 of them (a `## Trigger phrases` section is the body's, and the body may be megabytes).
MAX_TRIGGER_PHRASES = 100
MAX_TAGS = 100
MAX_WARNINGS = 20  # warnings kept per file (each is stored on its row and shown by stats and memory_health)
_BRACKETS = re.compile(r"[\[\]{}]")
SHOWN_CHARS = 60  # how much of a bad value a warning quotes


@dataclass
class ParsedFile:
    title: str
    tier: str
    context_type: str | None
    trigger_phrases: list[str]
    tags: list[str]
    expires: str | None
    lines: list[str]  # every line of the file, newlines normalised to \n
    body_start: int  # index into `lines` of the first body line (after the frontmatter)
    binary: bool = False
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)  # the frontmatter as read
    tier_given: bool = False  # set by the file (frontmatter, body line or a constitutional/ folder)

    @property
    def body_lines(self) -> list[str]:
        return self.lines[self.body_start :]


def decode(data: bytes) -> tuple[str, list[str], bool]:
    """Bytes to text. Returns (text, warnings, is_binary)."""
    warnings: list[str] = []
    if data.startswith(b"\xef\xbb\xbf"):
        data = data[3:]
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        endian = "LE" if data.startswith(b"\xff\xfe") else "BE"
        text = data[2:].decode(f"utf-16-{endian.lower()}", errors="replace")
        warnings.append(
            f"file is UTF-16 {endian}; indexed, but git and most tools treat it as binary: save it as UTF-8"
        )
        return text, warnings, False
    if b"\x00" in data:
        return "", [f"binary file (NUL byte at offset {data.index(0)}); its content is not indexed"], True
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text = data.decode("utf-8", errors="replace")
        warnings.append(
            f"invalid UTF-8 at byte {exc.start}; undecodable bytes were replaced with U+FFFD: save it as UTF-8"
        )
    return text, warnings, False


def split_lines(text: str) -> list[str]:
    """Lines with CRLF and lone CR normalised, so line numbers match what editors show."""
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def _frontmatter(lines: list[str], warnings: list[str]) -> tuple[dict[str, Any], int]:
    """Parse a leading `---` YAML or `+++` TOML block. Returns (metadata, index of the first body line)."""
    if not lines or lines[0].rstrip() not in ("---", "+++"):
        return {}, 0
    fence = lines[0].rstrip()
    closers = ("---", "...") if fence == "---" else ("+++",)
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip() in closers), None)
    if end is None:
        warnings.append(
            f"frontmatter opened with `{fence}` on line 1 is never closed; the file is indexed as body"
        )
        return {}, 0
    import tomllib  # as yaml: a search imports parse for normalise only

    import yaml  # here, not at the top: searching (normalise) needs no YAML parser

    block = "\n".join(lines[1:end])
    size = len(block.encode("utf-8", "surrogatepass"))
    if size > MAX_FRONTMATTER_BYTES:
        warnings.append(
            f"frontmatter is {size / 1024:.0f} KB, over the {MAX_FRONTMATTER_BYTES // 1024} KB limit; indexed with "
            "default metadata: keep the metadata short and move the rest into the body"
        )
        return {}, end + 1
    nested = f"frontmatter nests lists or tables more than {MAX_NESTING} deep; indexed with default metadata"
    try:
        if fence == "---":
            alias, depth = _yaml_shape(block)
            if alias:
                warnings.append(
                    "frontmatter uses YAML aliases (*name); specmem does not expand them (a few lines of aliases "
                    "can expand to gigabytes); indexed with default metadata: write the values out"
                )
                return {}, end + 1
            if depth > MAX_NESTING:
                warnings.append(nested)
                return {}, end + 1
            meta = yaml.load(block, Loader=_safe_loader()) if block.strip() else {}
        else:
            if bracket_depth(block) > MAX_NESTING:
                warnings.append(nested)
                return {}, end + 1
            meta = tomllib.loads(block)
    except RecursionError:  # (the checks above keep the parsers far from it; this is the last line)
        warnings.append(nested)
        return {}, end + 1
    except (yaml.YAMLError, tomllib.TOMLDecodeError, ValueError) as exc:
        where = ""
        mark = getattr(exc, "problem_mark", None)
        if mark is not None:
            where = f" at line {mark.line + 2}"
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        warnings.append(
            f"frontmatter is not valid {'YAML' if fence == '---' else 'TOML'}{where} ({problem}); "
            "indexed with default metadata: fix the block between the fences"
        )
        return {}, end + 1
    if meta is None:
        meta = {}
    if not isinstance(meta, dict):
        warnings.append(
            f"frontmatter is a {type(meta).__name__}, not a mapping of keys; indexed with defaults"
        )
        return {}, end + 1
    return meta, end + 1


def _safe_loader() -> Any:
    """PyYAML's safe loader, its C version when PyYAML was built with libyaml (several times faster)."""
    import yaml

    return getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _yaml_shape(block: str) -> tuple[bool, int]:
    """(whether a YAML block refers to an anchor, how deep its collections nest), from parsing events: they expand
    nothing and recurse nowhere, so this is linear in the text. Stops once either is known to be too much."""
    import yaml

    depth = deepest = 0
    for event in yaml.parse(block, Loader=_safe_loader()):
        if isinstance(event, yaml.AliasEvent):
            return True, deepest
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_NESTING:
                break
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return False, deepest


def bracket_depth(text: str) -> int:
    """How deep `[` and `{` nest in a TOML text, counting brackets inside strings too: an over-estimate only for
    text holding dozens of unclosed brackets, and linear, where the parser recurses once per level."""
    depth = deepest = 0
    for bracket in _BRACKETS.findall(text):
        if bracket in "[{":
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth = max(depth - 1, 0)
    return deepest


def visible_lines(
    lines: list[str], start: int = 0, only: re.Pattern[str] | None = None
) -> Iterator[tuple[int, str]]:
    """(index, text) of lines outside fenced code blocks, with HTML comments blanked out.

    With `only` (a pattern matching a newline and the start of a line), lines it does not find are left out when
    their visible text is their raw text or nothing: only lines with a fence, a comment marker or a match are
    looked at, found by one search of the text from each such line to the next (no loop over the others)."""
    indexes = range(start, len(lines)) if only is None else _candidates(lines, start, only)
    fence: str | None = None
    in_comment = False
    for i in indexes:
        line = lines[i]
        m = FENCE_RE.match(line)
        if fence is not None:
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence):
                fence = None
            continue
        if not in_comment and m:
            fence = m.group(1)
            continue
        text, in_comment = _strip_comments(line, in_comment)
        yield i, text


# What can change what the lines after it show: a fence, or a comment's start or end. Each begins with a literal,
# which the regex engine finds by a fast scan of the text.
_STATE_RES = (re.compile(r"\n {0,3}(?:`{3}|~{3})"), re.compile("<!--"), re.compile("-->"))


def _candidates(lines: list[str], start: int, only: re.Pattern[str]) -> list[int]:
    """Indexes of the lines from `start` that `only` or one of `_STATE_RES` finds, in order. Every other line
    keeps the fence and comment state of the line before it, and shows its raw text or nothing."""
    # Each line follows a newline, which is where a line's pattern starts.
    text = "\n" + "\n".join(lines[start:])
    starts = [0, *accumulate(len(line) + 1 for line in lines[start:])]  # its newline, per line
    found: set[int] = set()
    last = len(starts) - 2
    for pattern in (*_STATE_RES, only):
        match = pattern.search(text)
        while match is not None:
            i = bisect_right(starts, match.start()) - 1
            found.add(i)
            match = pattern.search(text, starts[i + 1]) if i < last else None
    return [start + i for i in sorted(found)]


def _strip_comments(line: str, in_comment: bool) -> tuple[str, bool]:
    out: list[str] = []
    pos = 0
    while pos <= len(line):
        if in_comment:
            close = line.find("-->", pos)
            if close < 0:
                return "".join(out), True
            pos = close + 3
            in_comment = False
        else:
            open_ = line.find("<!--", pos)
            if open_ < 0:
                out.append(line[pos:])
                break
            out.append(line[pos:open_])
            pos = open_ + 4
            in_comment = True
    return "".join(out), in_comment


def _get(meta: dict[str, Any], *keys: str) -> Any:
    for key in keys:
        if key in meta and meta[key] is not None:
            return meta[key]
    return None


def _text(value: Any, name: str, warnings: list[str]) -> str | None:
    """One metadata value as text, or None with a warning. The only place a frontmatter value becomes a string:
    a list or mapping is never stringified (it may be huge), nor an integer too long for Python to print."""
    if value is None:
        return None
    if isinstance(value, dt.date | bool | float):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, int):
        try:
            text = str(value)
        except ValueError:
            warnings.append(f"`{name}` is a number of thousands of digits, not text; ignored")
            return None
    else:
        warnings.append(f"`{name}` should be text, not a {type(value).__name__}; ignored")
        return None
    text = text.strip()
    if len(text) > MAX_VALUE_CHARS:
        warnings.append(f"`{name}` is {len(text)} characters long (at most {MAX_VALUE_CHARS}); ignored")
        return None
    return text


def _shown(text: str) -> str:
    return repr(text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…")


def _str_list(value: Any, name: str, warnings: list[str], limit: int) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        items: list[Any] = value.split(",")
    elif isinstance(value, list | tuple | set):
        items = list(value)
    else:
        warnings.append(f"`{name}` should be a list of strings, not {type(value).__name__}; ignored")
        return []
    out: list[str] = []
    for item in items:
        if isinstance(item, dict | list):
            warnings.append(f"`{name}` holds a nested {type(item).__name__}; that item is ignored")
            continue
        text = _text(item, name, warnings)
        if text and text not in out:
            out.append(text)
            if len(out) > limit:
                break
    return out


def _bounded(items: list[str], name: str, limit: int, warnings: list[str]) -> list[str]:
    if len(items) > limit:
        warnings.append(
            f"more than {limit} {name}; only the first {limit} are used: keep the few that matter"
        )
    return items[:limit]


def _tier(value: Any, source: str, warnings: list[str]) -> str | None:
    text = _text(value, "importance_tier", warnings)
    if text is None:
        return None
    if text.lower() in TIERS:
        return text.lower()
    warnings.append(
        f"unknown importance tier {_shown(text)} in {source}; using a default (one of: {', '.join(TIERS)})"
    )
    return None


def _expires(value: Any, warnings: list[str]) -> str | None:
    if isinstance(value, dt.datetime):
        return value.date().isoformat()
    if isinstance(value, dt.date):
        return value.isoformat()
    text = _text(value, "expires", warnings)
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        warnings.append(f"`expires` value {_shown(text)} is not a date (YYYY-MM-DD); ignored")
        return None


def _mentions(lines: list[str], start: int, word: re.Pattern[str]) -> bool:
    """Whether a visible line may hold `word`: with no HTML comment, visible text is raw text or nothing, so the
    raw text tells (with comments, pieces around one could join into the word: the caller looks line by line)."""
    text = "\n".join(lines[start:])
    return "<!--" in text or word.search(text) is not None


def _body_tier(lines: list[str], start: int) -> str | None:
    if not _mentions(lines, start, _IMPORTANCE):
        return None
    for _, text in visible_lines(lines, start):
        m = BODY_TIER_RE.match(text)
        if m and m.group(1).lower() in TIERS:
            return m.group(1).lower()
    return None


def _trigger_section(lines: list[str], start: int, warnings: list[str]) -> list[str]:
    """The items of `## Trigger phrases` sections; stops one past MAX_TRIGGER_PHRASES (the caller says so)."""
    phrases: list[str] = []
    if not _mentions(lines, start, _TRIGGER):
        return phrases
    in_section = False
    for _, text in visible_lines(lines, start):
        h = HEADING_RE.match(text)
        if h:
            in_section = bool(TRIGGER_HEADING_RE.match(h.group(2).strip()))
            continue
        if in_section:
            item = LIST_ITEM_RE.match(text)
            if item:
                phrase = _text(item.group(1).strip().strip("`'\"").strip(), "trigger phrase", warnings)
                if phrase and phrase not in phrases:
                    phrases.append(phrase)
                    if len(phrases) > MAX_TRIGGER_PHRASES:
                        break
    return phrases


def first_heading(lines: list[str], start: int) -> str | None:
    for _, text in visible_lines(lines, start, HEADING_LINE_RE):
        h = HEADING_RE.match(text)
        if h and len(h.group(1)) == 1 and h.group(2).strip():
            return h.group(2).strip()
    return None


def normalise(text: str) -> str:
    """Case- and Unicode-normalised form used to compare phrases."""
    return unicodedata.normalize("NFKC", text).casefold()


def spec_folder(rel_path: PurePosixPath) -> str:
    """`003-auth/memory/x.md` → `003-auth`; below a `specs/` folder when the root is above it; else the folder.

    A spec folder is never the empty name of a `memory/` folder itself: `specs/memory/x.md` (a spec folder named
    `specs`, the root being `specs/`) → `specs`, `memory/memory/x.md` → `memory`, `memory/x.md` → `memory`."""
    parts = rel_path.parts[:-1]
    starts = [i + 1 for i, part in enumerate(parts) if part == "specs"][::-1] + [0]
    for start in dict.fromkeys(starts):
        below = parts[start:]
        if "memory" in below[1:]:
            return "/".join(below[: below.index("memory", 1)])
        if below != ("memory",):
            return "/".join(below)
    return "memory"  # files right in a root's `memory/` folder


def parse(data: bytes, rel_path: PurePosixPath, *, truncated_from: int | None = None) -> ParsedFile:
    """Parse one memory file. `truncated_from` is the real size when `data` is only the file's head."""
    text, warnings, binary = decode(data)
    if truncated_from is not None:
        warnings.append(
            f"file is {truncated_from / 1e6:.1f} MB, over the size limit; only its first {len(data) / 1e6:.1f} MB "
            "are indexed: split it, or raise SPECMEM_MAX_FILE_BYTES"
        )
    if not binary and not text.strip():
        warnings.append("empty file: nothing to index but its name")
    lines = split_lines(text) if not binary else []
    meta, body_start = _frontmatter(lines, warnings)

    constitutional_folder = "constitutional" in rel_path.parts[:-1]
    given = (
        _tier(_get(meta, "importance_tier", "importanceTier"), "the frontmatter", warnings)
        or _body_tier(lines, body_start)
        or ("constitutional" if constitutional_folder else None)
    )
    tier = given or DEFAULT_TIER

    title = _text(_get(meta, "title"), "title", warnings) or first_heading(lines, body_start) or rel_path.stem
    context_type = _text(_get(meta, "context_type", "contextType"), "context_type", warnings)
    triggers = _str_list(
        _get(meta, "trigger_phrases", "triggerPhrases"), "trigger_phrases", warnings, MAX_TRIGGER_PHRASES
    )
    if len(triggers) <= MAX_TRIGGER_PHRASES:
        for phrase in _trigger_section(lines, body_start, warnings):
            if phrase not in triggers:
                triggers.append(phrase)
    triggers = _bounded(triggers, "trigger phrases", MAX_TRIGGER_PHRASES, warnings)
    tags = _bounded(_str_list(_get(meta, "tags"), "tags", warnings, MAX_TAGS), "tags", MAX_TAGS, warnings)
    expires = _expires(_get(meta, "expires"), warnings)
    if len(warnings) > MAX_WARNINGS:
        warnings[MAX_WARNINGS - 1 :] = [f"and {len(warnings) - MAX_WARNINGS + 1} more warnings"]

    return ParsedFile(
        title=title,
        tier=tier,
        context_type=context_type or None,
        trigger_phrases=triggers,
        tags=tags,
        expires=expires,
        lines=lines,
        body_start=body_start,
        binary=binary,
        warnings=warnings,
        meta=meta,
        tier_given=given is not None,
    )
