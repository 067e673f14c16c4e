"""Where AI assistants already keep a project's memory, and how specmem reads each place: one table, used by the
walk (which hidden folders it enters), the scan (each file's default tier and context type), the settings (extra
roots at the project top), `specmem init` (what a project has) and the README's conventions table.

A rule an assistant follows in every session is constitutional; a rule for some sessions (some files, on
request) is important; instruction files that their own tool already loads whole (CLAUDE.md, AGENTS.md, Copilot's
instructions) are important too, not constitutional: they are long, general, and already in the assistant's
context, so surfacing them on top of every search would crowd out the answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePath
from typing import Any

Defaults = Callable[[PurePath, Mapping[str, Any]], tuple[str | None, str | None]]


def _fixed(tier: str | None, context_type: str | None) -> Defaults:
    return lambda path, meta: (tier, context_type)


def _speckit(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    return ("constitutional", "rule") if path.name == "constitution.md" else (None, None)


def _kiro_steering(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    # Kiro's `inclusion`: always (its default), fileMatch (with fileMatchPattern) or manual.
    always = str(meta.get("inclusion", "always")).strip().lower() == "always"
    return ("constitutional" if always else "important"), "rule"


def _cursor(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    always = meta.get("alwaysApply") is True or str(meta.get("alwaysApply", "")).strip().lower() == "true"
    return ("constitutional" if always else "important"), "rule"


@dataclass(frozen=True)
class Convention:
    name: str  # the value in the `conventions` setting; several places can share one
    tool: str
    path: str  # relative to the folder holding it (the project top), `/`-separated
    folder: bool  # a folder of memory files, or one file
    defaults: Defaults
    reads: str  # how specmem reads it, for people (the README's table)
    suffixes: tuple[str, ...] = (".md",)

    @property
    def parts(self) -> tuple[str, ...]:
        return tuple(self.path.split("/"))


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "speckit",
        "Spec Kit",
        ".specify/memory",
        True,
        _speckit,
        "`constitution.md` is constitutional (context type `rule`); other files are memories",
    ),
    Convention(
        "kiro",
        "Kiro",
        ".kiro/steering",
        True,
        _kiro_steering,
        "steering files are rules (`rule`): constitutional with `inclusion: always` (Kiro's default), "
        "important with `fileMatch` or `manual`",
    ),
    Convention(
        "kiro",
        "Kiro",
        ".kiro/specs",
        True,
        _fixed(None, "spec"),
        "`<feature>/requirements.md`, `design.md`, `tasks.md` are spec documents (`spec`); the feature is the "
        "spec folder",
    ),
    Convention(
        "cursor",
        "Cursor",
        ".cursor/rules",
        True,
        _cursor,
        "`*.mdc` and `*.md` rules (`rule`): constitutional with `alwaysApply: true`, important otherwise",
        (".md", ".mdc"),
    ),
    Convention(
        "claude",
        "Claude Code",
        "CLAUDE.md",
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`); inside a root, at any depth",
    ),
    Convention(
        "claude",
        "Claude Code",
        ".claude",
        True,
        _fixed(None, "instructions"),
        "commands, agents, skills and memory files (`instructions`)",
    ),
    Convention(
        "copilot",
        "GitHub Copilot",
        ".github/copilot-instructions.md",
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`)",
    ),
    Convention(
        "copilot",
        "GitHub Copilot",
        ".github/instructions",
        True,
        _fixed("important", "instructions"),
        "`*.instructions.md` files (`instructions`), important",
    ),
    Convention(
        "memorybank",
        "Cline's memory bank",
        "memory-bank",
        True,
        _fixed(None, None),
        "every file is a memory (`projectbrief.md`, `activeContext.md`, …)",
    ),
    Convention(
        "agents",
        "AGENTS.md (Codex, Jules, Aider, …)",
        "AGENTS.md",
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`); inside a root, at any depth",
    ),
)
NAMES: tuple[str, ...] = tuple(dict.fromkeys(c.name for c in CONVENTIONS))


def named(names: Iterable[str]) -> tuple[Convention, ...]:
    """The conventions with these names, in table order."""
    wanted = set(names)
    return tuple(c for c in CONVENTIONS if c.name in wanted)


def _last_hidden(parts: tuple[str, ...]) -> int | None:
    return next((i for i in range(len(parts) - 1, -1, -1) if parts[i].startswith(".")), None)


def enters(folder: PurePath, adopted: Iterable[Convention]) -> bool:
    """Whether a folder inside a hidden folder leads to, or lies inside, an adopted convention's place
    (`.kiro` and `.kiro/steering/x` do; `.kiro/settings` does not)."""
    parts = folder.parts
    start = _last_hidden(parts)
    if start is None:
        return True
    tail = parts[start:]
    for c in adopted:
        cp = c.parts
        if tail == cp[: len(tail)] and len(tail) < len(cp):
            return True  # on the way to it
        if c.folder and tail[: len(cp)] == cp:
            return True  # it, or inside it
    return False


def match(path: PurePath, adopted: Iterable[Convention] = CONVENTIONS) -> Convention | None:
    """The adopted convention a file belongs to, by the last hidden folder on its path, else by its name."""
    parts = path.parts
    start = _last_hidden(parts[:-1])
    adopted = tuple(adopted)
    if start is not None:
        tail = parts[start:]
        for c in adopted:
            cp = c.parts
            if c.folder and tail[: len(cp)] == cp and len(tail) > len(cp):
                return c if path.suffix.lower() in c.suffixes else None
            if not c.folder and tail == cp:
                return c
    for c in adopted:
        if not c.folder and len(c.parts) == 1 and path.name == c.path:
            return c
    return None


def defaults(
    path: PurePath, meta: Mapping[str, Any], adopted: Iterable[Convention] = CONVENTIONS
) -> tuple[str | None, str | None]:
    """(tier, context type) a file gets from its convention when its frontmatter does not say; (None, None)."""
    convention = match(path, adopted)
    return convention.defaults(path, meta) if convention else (None, None)


def extra_suffix(path: PurePath, adopted: Iterable[Convention]) -> bool:
    """Whether a file that is not `*.md` is a memory file by its convention (Cursor's `*.mdc` rules)."""
    convention = match(path, adopted)
    return convention is not None and path.suffix.lower() in convention.suffixes


def place_of(folder: PurePath) -> Convention | None:
    """The convention (adopted or not) whose place a hidden folder is, or lies on the way to."""
    return next((c for c in CONVENTIONS if enters(folder, (c,))), None)


def markdown_table() -> str:
    """The README's table of conventions: one row per place."""
    rows = ["| convention | place | how specmem reads it | `conventions` name |", "|---|---|---|---|"]
    for c in CONVENTIONS:
        where = f"`{c.path}/`" if c.folder else f"`{c.path}`"
        rows.append(f"| {c.tool} | {where} | {c.reads} | `{c.name}` |")
    return "\n".join(rows)


def found_at(top: Path, adopted: Iterable[Convention] = CONVENTIONS) -> list[tuple[Convention, Path]]:
    """The adopted conventions a project has at its top folder, with their folder or file."""
    out = []
    for c in adopted:
        place = top.joinpath(*c.parts)
        if (place.is_dir() if c.folder else place.is_file()) and not place.is_symlink():
            out.append((c, place))
    return out
