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


def _readme(path: PurePath) -> bool:
    """A README or index page in a rules folder documents the folder; it is no rule of its own."""
    return path.stem.lower() in ("readme", "index")


def _speckit(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    return ("constitutional", "rule") if path.name == "constitution.md" else (None, None)


def _kiro_steering(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if _readme(path):
        return None, None
    # Kiro's `inclusion`: always (its default), fileMatch (with fileMatchPattern) or manual; some projects write
    # `include: conditional`.
    always = str(meta.get("inclusion", meta.get("include", "always"))).strip().lower() == "always"
    return ("constitutional" if always else "important"), "rule"


def _cursor(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if _readme(path):
        return None, None
    always = meta.get("alwaysApply") is True or str(meta.get("alwaysApply", "")).strip().lower() == "true"
    return ("constitutional" if always else "important"), "rule"


def _windsurf(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    if _readme(path):
        return None, None
    always = str(meta.get("trigger", "")).strip().lower() == "always_on"
    return ("constitutional" if always else "important"), "rule"


def _adr(path: PurePath, meta: Mapping[str, Any]) -> tuple[str | None, str | None]:
    return (None, None) if _readme(path) else (None, "decision")


@dataclass(frozen=True)
class Convention:
    name: str  # the value in the `conventions` setting; several places can share one
    tool: str
    paths: tuple[
        str, ...
    ]  # where it lives, relative to the folder holding it, `/`-separated; the first is shown
    folder: bool  # a folder of memory files, or one file
    defaults: Defaults
    reads: str  # how specmem reads it, for people (the README's table)
    suffixes: tuple[str, ...] = (".md",)
    # Also below the project top (a CLAUDE.md in a package, a monorepo's docs/adr): found by the scan's search
    # of the project, read as a place of its own and scoped to its folder. Otherwise only at the project top.
    anywhere: bool = False

    @property
    def path(self) -> str:
        return self.paths[0]

    @property
    def places(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(p.split("/")) for p in self.paths)

    @property
    def hidden(self) -> bool:
        return self.path.startswith(".")


CONVENTIONS: tuple[Convention, ...] = (
    Convention(
        "speckit",
        "Spec Kit",
        (".specify/memory",),
        True,
        _speckit,
        "`constitution.md` is constitutional (context type `rule`); other files are memories",
    ),
    Convention(
        "kiro",
        "Kiro",
        (".kiro/steering",),
        True,
        _kiro_steering,
        "steering files are rules (`rule`): constitutional with `inclusion: always` (Kiro's default), "
        "important with `fileMatch` or `manual`; a README there is documentation, no rule",
    ),
    Convention(
        "kiro",
        "Kiro",
        (".kiro/specs",),
        True,
        _fixed(None, "spec"),
        "`<feature>/requirements.md`, `design.md`, `tasks.md` are spec documents (`spec`); the feature is the "
        "spec folder",
    ),
    Convention(
        "cursor",
        "Cursor",
        (".cursor/rules",),
        True,
        _cursor,
        "`*.mdc` and `*.md` rules (`rule`): constitutional with `alwaysApply: true`, important otherwise; at any "
        "depth, scoped to their folder",
        (".md", ".mdc"),
        anywhere=True,
    ),
    Convention(
        "windsurf",
        "Windsurf",
        (".windsurf/rules",),
        True,
        _windsurf,
        "rules (`rule`): constitutional with `trigger: always_on`, important otherwise",
    ),
    Convention(
        "claude",
        "Claude Code",
        ("CLAUDE.md",),
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`); at any depth, scoped to its folder",
        anywhere=True,
    ),
    Convention(
        "claude",
        "Claude Code",
        (".claude",),
        True,
        _fixed(None, "instructions"),
        "commands, agents, skills, rules and memory files (`instructions`)",
    ),
    Convention(
        "agents",
        "AGENTS.md (Codex, Jules, Aider, …)",
        ("AGENTS.md",),
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`); at any depth, scoped to its folder",
        anywhere=True,
    ),
    Convention(
        "gemini",
        "Gemini CLI",
        ("GEMINI.md",),
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`); at any depth, scoped to its folder",
        anywhere=True,
    ),
    Convention(
        "copilot",
        "GitHub Copilot",
        (".github/copilot-instructions.md",),
        False,
        _fixed("important", "instructions"),
        "important instructions (`instructions`)",
    ),
    Convention(
        "copilot",
        "GitHub Copilot",
        (".github/instructions",),
        True,
        _fixed("important", "instructions"),
        "`*.instructions.md` files (`instructions`), important",
    ),
    Convention(
        "memorybank",
        "Cline's memory bank",
        ("memory-bank",),
        True,
        _fixed(None, None),
        "every file is a memory (`projectbrief.md`, `activeContext.md`, …)",
    ),
    Convention(
        "serena",
        "Serena",
        (".serena/memories",),
        True,
        _fixed(None, None),
        "every file is a memory",
    ),
    Convention(
        "adr",
        "Architecture decision records",
        (
            "docs/adr",
            "docs/adrs",
            "docs/decisions",
            "docs/architecture/decisions",
            "doc/adr",
            "doc/decisions",
            "doc/architecture/decisions",
            "adr",
            "adrs",
        ),
        True,
        _adr,
        "decisions (`decision`); a README or index there is documentation; at any depth, scoped to their folder",
        anywhere=True,
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
        for cp in c.places:
            if tail == cp[: len(tail)] and len(tail) < len(cp):
                return True  # on the way to it
            if c.folder and tail[: len(cp)] == cp:
                return True  # it, or inside it
    return False


def match(path: PurePath, adopted: Iterable[Convention] = CONVENTIONS) -> Convention | None:
    """The adopted convention a file belongs to: by the last hidden folder on its path, else by the folder holding
    it (`docs/adr/x.md`), else by its name (`CLAUDE.md`)."""
    parts = path.parts
    start = _last_hidden(parts[:-1])
    adopted = tuple(adopted)
    if start is not None:
        tail = parts[start:]
        for c in adopted:
            for cp in c.places:
                if c.folder and tail[: len(cp)] == cp and len(tail) > len(cp):
                    return c if path.suffix.lower() in c.suffixes else None
                if not c.folder and tail == cp:
                    return c
    folders = parts[:-1]
    for c in adopted:
        if c.folder and not c.hidden and path.suffix.lower() in c.suffixes:
            # A plain folder's files directly inside it: an `adr` folder higher up says nothing about this file.
            if any(folders[len(folders) - len(cp) :] == cp for cp in c.places):
                return c
    for c in adopted:
        if not c.folder and any(len(cp) == 1 and path.name == cp[0] for cp in c.places):
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


def place(
    path: Path, top: Path, adopted: Iterable[Convention] = CONVENTIONS
) -> tuple[Convention, Path] | None:
    """The adopted convention and its place (a folder, or the file itself) that a file below `top` belongs to,
    where that place may be: at the top, or anywhere below it for the conventions read at any depth."""
    rel = path.relative_to(top).parts
    for c in adopted:
        for cp in c.places:
            n = len(cp)
            if not c.folder:
                at = len(rel) - n
                if rel[at:] == cp and (at == 0 or c.anywhere):
                    return c, path
                continue
            for at in range(0, len(rel) - n) if c.anywhere else (0,):
                if rel[at : at + n] == cp and len(rel) > at + n and (c.hidden or len(rel) == at + n + 1):
                    if match(path, (c,)) is c:
                        return c, top.joinpath(*rel[: at + n])
    return None


def markdown_table() -> str:
    """The README's table of conventions: one row per place."""
    rows = ["| convention | place | how specmem reads it | `conventions` name |", "|---|---|---|---|"]
    for c in CONVENTIONS:
        where = ", ".join(f"`{p}/`" if c.folder else f"`{p}`" for p in c.paths)
        rows.append(f"| {c.tool} | {where} | {c.reads} | `{c.name}` |")
    return "\n".join(rows)


def found_at(top: Path, adopted: Iterable[Convention] = CONVENTIONS) -> list[tuple[Convention, Path]]:
    """The adopted conventions a project has at its top folder, with their folder or file."""
    out = []
    for c in adopted:
        for cp in c.places:
            found = top.joinpath(*cp)
            if (found.is_dir() if c.folder else found.is_file()) and not found.is_symlink():
                out.append((c, found))
    return out
