"""Citations of code, as people already write them in a memory: read from its parsed text, never resolved here.

- a link with a line anchor, as GitHub and assistants write them: `[cache](../../src/cache.py#L10-L40)`,
  `[x](src/cache.py#L10)` (also `#L10C3-L40C9` and reference definitions `[x]: src/cache.py#L10`);
- a link without one (a whole file), counted only when the file exists (links between pages are navigation);
- a path with lines in the text or in inline code: `src/cache.py#L10-L40`, `src/cache.py:10-40`, counted only
  when the file exists (prose names hosts and ratios too);
- a frontmatter list `cites:` of paths, with or without lines, always counted.

Fenced code blocks and HTML comments are skipped, as everywhere in parsing. See specs/009-citations/spec.md.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import unquote

from specmem.indexer.parse import ParsedFile, visible_lines

MAX_CITES = 500  # citations checked per memory; the rest are named in a warning
MAX_LINE = 10_000_000  # a line number beyond this is a typo
MARKDOWN = (".md", ".markdown", ".mdx")
# Cheap test first: a memory without any of these cites nothing, and most memories cite nothing.
QUICK_RE = re.compile(r"\]\(|\]:|#L\d|\.[A-Za-z]\w*:\d|^cites\s*:", re.MULTILINE)
MAX_MATCHES = 20_000  # candidate citations looked at per memory (a hostile file can hold millions)
MAX_LINK_TEXT = 500  # characters between a link's brackets that are looked back over
# A link is found from its `](`, looking back for its `[`: a regex from every `[` would scan the rest of a line
# for each one (quadratic on a line of brackets). Repeats are bounded for the same reason.
TARGET_RE = re.compile(
    r"\s*(<[^>\n]{0,4096}>|[^\s()]+(?:\([^\s()]*\)[^\s()]*)*)(?:\s+(?:\"[^\"\n]*\"|'[^'\n]*'|\([^)\n]*\)))?\s*\)"
)
REF_DEF_RE = re.compile(r"^ {0,3}\[[^\]\n]{1,500}\]:\s*(<[^>\n]{0,4096}>|\S+)")
CODE_SPAN_RE = re.compile(r"(`+)[^`]+?\1")
URL_RE = re.compile(r"\b[A-Za-z][A-Za-z0-9+.\-]{0,30}://\S+")
SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*:")
# A path with lines, standing on its own: not inside a longer word, a URL or another path.
BARE_RE = re.compile(
    r"(?<![\w/.\-~:@])((?:\.{1,2}/)*/?[\w\-][\w.\-]*(?:/[\w.\-]+)*)"
    r"(?:#L(\d+)(?:C\d+)?(?:-L?(\d+)(?:C\d+)?)?|:(\d+)(?:-(\d+))?)(?![\w\-]|\.\w)"
)
LINES_RE = re.compile(r"^L(\d+)(?:C\d+)?(?:-L?(\d+)(?:C\d+)?)?$", re.IGNORECASE)
ENTRY_RE = re.compile(r"^(?P<path>.+?)(?:#L(\d+)(?:C\d+)?(?:-L?(\d+)(?:C\d+)?)?|:(\d+)(?:-(\d+))?)?$")


@dataclass(frozen=True)
class Cite:
    """One citation as written: `path` is the path part (relative, or `/`-rooted at the repository), `line`
    the memory file's line (1-based) that holds `target`. `explicit` citations count even when the file does
    not exist (they are then `missing`); the others only name a file that exists. A link's path is relative to
    the memory's folder first (as GitHub reads it); a path in the text or the frontmatter to the repository's top
    first."""

    target: str
    path: str
    start: int | None
    end: int | None
    line: int
    explicit: bool
    kind: Literal["link", "text", "frontmatter"] = "text"

    @property
    def key(self) -> tuple[str, int | None, int | None]:
        return self.path, self.start, self.end


def _lines(a: str | None, b: str | None) -> tuple[int | None, int | None] | None:
    """A line range from the anchor's numbers; None for a number that names no line."""
    if a is None:
        return None, None
    start, end = int(a), int(b) if b else int(a)
    if start > end:
        start, end = end, start
    if start < 1 or end > MAX_LINE:
        return None
    return start, end


def _link_target(raw: str) -> tuple[str, str | None] | None:
    """(path, fragment) of a link target that can name a file of the repository; None for URLs, in-page
    anchors and empty targets."""
    target = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw
    if not target or target.startswith(("#", "//")) or SCHEME_RE.match(target):
        return None
    path, _, fragment = target.partition("#")
    path = unquote(path.partition("?")[0])
    if not path or path.endswith("/") or "\x00" in path:
        return None
    return path, fragment or None


def _from_link(raw: str, line: int) -> Cite | None:
    parsed = _link_target(raw)
    if parsed is None:
        return None
    path, fragment = parsed
    if fragment is None:
        if path.lower().endswith(MARKDOWN):
            return None  # a link to another page
        return Cite(raw, path, None, None, line, explicit=False, kind="link")
    m = LINES_RE.match(fragment)
    if m is None:
        return None  # a heading anchor: a link to a section, not to lines
    span = _lines(m.group(1), m.group(2))
    if span is None:
        return None
    return Cite(raw, path, span[0], span[1], line, explicit=True, kind="link")


def extract(parsed: ParsedFile, text: str | None = None) -> tuple[list[Cite], list[str]]:
    """The memory's citations in the order written (each path and range once), and warnings about them."""
    warnings: list[str] = []
    found: dict[tuple[str, int | None, int | None], Cite] = {}
    joined = text if text is not None else "\n".join(parsed.lines)
    listed = parsed.meta.get("cites")
    if listed is None and not QUICK_RE.search(joined):
        return [], warnings
    for cite in _frontmatter(listed, parsed, warnings):
        found.setdefault(cite.key, cite)
    left = MAX_MATCHES
    for index, visible in visible_lines(parsed.lines, parsed.body_start):
        line_cites = _in_line(visible, index + 1, left)
        left -= len(line_cites)
        if left <= 0:
            warnings.append(
                f"names over {MAX_MATCHES} places of code; those after line {index + 1} are not read: split it"
            )
        for cite in line_cites:
            if cite.key in found:
                if cite.explicit and not found[cite.key].explicit:
                    found[cite.key] = cite
                continue
            found[cite.key] = cite
        if left <= 0:
            break
    cites = list(found.values())
    if len(cites) > MAX_CITES:
        warnings.append(
            f"cites {len(cites)} places; only the first {MAX_CITES} are checked: split the memory, or cite "
            "whole files"
        )
        cites = cites[:MAX_CITES]
    return cites, warnings


def _links(text: str, most: int) -> tuple[list[tuple[bool, str]], str]:
    """The inline links of a line as (is an image, target), at most `most`, and the line with them blanked out.
    A link quoted in inline code is an example, not a link: it is left to be read as a path in the text."""
    found: list[tuple[bool, str]] = []
    chars = list(text) if "](" in text else None
    code = [m.span() for m in CODE_SPAN_RE.finditer(text)] if chars is not None and "`" in text else []
    pos = text.find("](")
    while pos >= 0 and chars is not None and len(found) < most:
        opening = text.rfind("[", max(0, pos - MAX_LINK_TEXT), pos)
        m = TARGET_RE.match(text, pos + 2)
        quoted = any(a <= pos < b for a, b in code)
        if opening >= 0 and m is not None and not quoted and "]" not in text[opening + 1 : pos]:
            image = opening > 0 and text[opening - 1] == "!"
            found.append((image, m.group(1)))
            chars[opening - image : m.end()] = " " * (m.end() - opening + image)
            pos = text.find("](", m.end())
        else:
            pos = text.find("](", pos + 2)
    return found, text if chars is None else "".join(chars)


def _in_line(text: str, line: int, most: int) -> list[Cite]:
    """A line's citations, at most `most` of them."""
    out: list[Cite] = []
    links, text = _links(text, most)
    for image, target in links:
        if not image:  # an image is not a citation
            cite = _from_link(target, line)
            if cite is not None:
                out.append(cite)
    ref = REF_DEF_RE.match(text)
    if ref is not None:
        cite = _from_link(ref.group(1), line)
        if cite is not None:
            out.append(cite)
        text = " " * ref.end() + text[ref.end() :]
    if "#L" in text or ":" in text:
        text = URL_RE.sub(lambda m: " " * len(m.group(0)), text)
        for m in BARE_RE.finditer(text):
            if len(out) >= most:
                break
            path = m.group(1)
            if not _looks_like_file(path):
                continue
            span = _lines(m.group(2) or m.group(4), m.group(3) or m.group(5))
            if span is not None:
                out.append(Cite(m.group(0), path, span[0], span[1], line, explicit=False, kind="text"))
    return out


def _looks_like_file(path: str) -> bool:
    """A path with a folder or a file extension (`src/x`, `x.py`), not a word before a colon."""
    name = path.rstrip("/").rsplit("/", 1)[-1]
    return "/" in path.strip("/") or bool(re.search(r"\.[A-Za-z]\w*$", name))


def _frontmatter(listed: Any, parsed: ParsedFile, warnings: list[str]) -> list[Cite]:
    """The `cites:` list of the frontmatter: strings such as `src/cache.py#L10-L40`, `src/cache.py:10-40` or a
    path alone (the whole file)."""
    if listed is None:
        return []
    items = [listed] if isinstance(listed, str) else listed
    if not isinstance(items, list):
        warnings.append(f"`cites` should be a list of paths, not a {type(listed).__name__}; ignored")
        return []
    out: list[Cite] = []
    for item in items[: MAX_CITES + 1]:
        if not isinstance(item, str) or not item.strip() or "\x00" in item:
            warnings.append(f"`cites` holds {item!r}, not a path such as src/cache.py#L10-L40; ignored")
            continue
        entry = item.strip()
        m = ENTRY_RE.match(entry)
        assert m is not None  # the path group matches anything
        span = _lines(m.group(2) or m.group(4), m.group(3) or m.group(5))
        if span is None:
            warnings.append(f"`cites` entry {entry!r} names no line (lines start at 1); ignored")
            continue
        path = unquote(m.group("path"))
        if SCHEME_RE.match(path) or path.startswith("//"):
            warnings.append(f"`cites` entry {entry!r} is a URL, not a path in the repository; ignored")
            continue
        line = _entry_line(parsed, entry)
        out.append(Cite(entry, path, span[0], span[1], line, explicit=True, kind="frontmatter"))
    return out


def _entry_line(parsed: ParsedFile, entry: str) -> int:
    """The frontmatter line holding a `cites:` entry (1-based), or the first line."""
    for i in range(1, max(parsed.body_start - 1, 1)):
        if entry in parsed.lines[i]:
            return i + 1
    return 1


def anchor_text(cite_target: str, start: int, end: int) -> str:
    """`cite_target` (as written) pointing at lines start-end instead, in the same style (`#L1-L2` or `:1-2`)."""
    single = start == end

    def link(m: re.Match[str]) -> str:
        return f"#L{start}" if single else f"#L{start}-L{end}"

    def colon(m: re.Match[str]) -> str:
        return f":{start}" if single else f":{start}-{end}"

    updated, n = re.subn(r"#L\d+(?:C\d+)?(?:-L?\d+(?:C\d+)?)?", link, cite_target, count=1)
    if n:
        return updated
    return re.sub(r":\d+(?:-\d+)?$", colon, cite_target, count=1)
