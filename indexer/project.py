"""`specmem init`: set a project up for specmem. Plan first (so `--dry-run` shows exactly what would be done),
then create only what is missing: an existing file is never overwritten, and the plan says what it kept."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from specmem.indexer import assistants, atomic, conventions, db, files
from specmem.indexer.config import DB_DIRNAME, PROJECT_FILE
from specmem.indexer.conventions import Convention
from specmem.indexer.errors import ConfigError

EXAMPLE_RULE = """---
title: Example rule - replace it with one your assistant must always follow
importance_tier: constitutional
context_type: rule
trigger_phrases: [example rule]
tags: [example]
---
# Example rule: replace it with one your assistant must always follow

Files in `constitutional/` are rules: the most relevant ones lead every search, whatever the query. Write one
rule per file, short and testable, e.g. "Never commit secrets; configuration comes from the environment."
"""

EXAMPLE_MEMORY = """---
title: Project memory lives in markdown files next to the code
importance_tier: normal
context_type: decision
trigger_phrases: [project memory, specmem]
tags: [example]
---
# Project memory lives in markdown files next to the code

Decisions, context and conventions are kept as markdown files under `{root}/<NNN-feature>/memory/`, committed
with the code and reviewed like it. specmem indexes them (`specmem scan`, or live with `specmem watch`) and
assistants search them over MCP. Replace this example with your first real decision: what was decided, why,
and what was rejected.
"""


@dataclass
class Step:
    action: Literal["create", "keep"]
    path: Path
    why: str
    content: str | None = None  # what `create` writes; a folder when None


@dataclass
class InitPlan:
    folder: Path
    roots: list[str]
    steps: list[Step] = field(default_factory=list)
    found: list[tuple[Convention, Path]] = field(default_factory=list)  # conventions this project has
    hidden: dict[Path, int] = field(default_factory=dict)  # other hidden folders at the top holding markdown
    unread: dict[Path, int] = field(
        default_factory=dict
    )  # other folders of markdown no root reads (unread.py)

    @property
    def created(self) -> list[Step]:
        return [s for s in self.steps if s.action == "create"]

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "roots": self.roots,
            "steps": [{"action": s.action, "path": str(s.path), "why": s.why} for s in self.steps],
            "conventions_found": [{"name": c.name, "tool": c.tool, "path": str(p)} for c, p in self.found],
            "hidden": {str(p): n for p, n in self.hidden.items()},
            "unread": {str(p): n for p, n in self.unread.items()},
        }


def plan(folder: Path, roots: list[str] | None = None) -> InitPlan:
    """What `specmem init` would do in `folder`, with `roots` (default `specs`), changing nothing."""
    folder = folder.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the project's folder")
    listed = [_relative(folder, r) for r in roots] if roots else ["specs"]  # --root: as typed, from here
    result = InitPlan(folder, listed)
    steps = result.steps

    project_file = folder / PROJECT_FILE
    found = conventions.found_at(folder) if folder.is_dir() else []
    result.found = found
    result.hidden = _other_hidden(folder, found)
    if project_file.exists():
        steps.append(Step("keep", project_file, "exists; its settings stay as they are"))
    else:
        steps.append(
            Step(
                "create",
                project_file,
                f"the project's settings: roots = {json.dumps(listed)}",
                _toml(listed, found),
            )
        )

    first = (folder / listed[0]).resolve() if not Path(listed[0]).is_absolute() else Path(listed[0])
    holding = _markdown_in(first)
    if holding:
        steps.append(
            Step(
                "keep",
                first,
                f"holds {holding} markdown file{'s' if holding != 1 else ''} already; no examples added",
            )
        )
    else:
        rule = first / "constitutional" / "example-rule.md"
        steps.append(Step("create", rule, "an example rule: rules lead every search", EXAMPLE_RULE))
        example = first / "000-project" / "memory" / "project-memory-lives-in-markdown.md"
        text = EXAMPLE_MEMORY.format(root=listed[0])
        steps.append(Step("create", example, "an example memory (a decision)", text))

    ignore = folder / DB_DIRNAME / ".gitignore"
    if ignore.exists():
        steps.append(Step("keep", ignore, "exists: the index stays out of git"))
    else:
        steps.append(Step("create", ignore, "keeps the index (.specmem/) out of git", db.IGNORE_MARKER))

    for client in assistants.clients_for(folder):
        path = folder / client.file
        if not path.exists():
            why = f"{client.name} starts `specmem serve` from PATH (commit it: no machine's path in it)"
            steps.append(Step("create", path, why, assistants.config_text(client)))
        elif assistants.has_entry(client, path):
            steps.append(Step("keep", path, f"exists and already starts a specmem server for {client.name}"))
        else:
            steps.append(Step("keep", path, f"exists without specmem; {assistants.entry_hint(client)}"))
    return result


def apply(init: InitPlan) -> None:
    """Create what the plan says to create; a file that appeared since the plan is kept, never overwritten."""
    init.folder.mkdir(parents=True, exist_ok=True)
    for step in init.created:
        assert step.content is not None
        step.path.parent.mkdir(parents=True, exist_ok=True)
        if step.path.parent.name == DB_DIRNAME:
            os.chmod(
                step.path.parent, 0o700
            )  # the index holds every memory: owner only, as db.connect makes it
        if not _create(step.path, step.content):
            step.action, step.why = "keep", "appeared meanwhile; kept as it is"


def _create(path: Path, text: str) -> bool:
    """Write a new file atomically under its final name, never replacing one (a hard link claims the name)."""
    # The folder as the plan names it, its symlinks followed: init writes where the user pointed it.
    with atomic.open_folder(path.parent, [path.parent]) as folder:
        return folder.create([path.name], text.encode("utf-8")) is not None


def _relative(folder: Path, root: str) -> str:
    path = Path(root).expanduser()
    target = (path if path.is_absolute() else Path.cwd() / path).absolute()
    try:
        return target.relative_to(folder).as_posix() or "."
    except ValueError:
        return str(target)


def _markdown_in(folder: Path) -> int:
    return files.count_markdown(folder) if folder.is_dir() else 0


def _other_hidden(folder: Path, found: list[tuple[Convention, Path]]) -> dict[Path, int]:
    if not folder.is_dir():
        return {}
    out = {}
    for entry in sorted(folder.iterdir()):
        if (
            entry.name.startswith(".")
            and entry.is_dir()
            and entry.name not in files.NEVER_REPORTED
            and conventions.place_of(entry) is None
            and (count := files.count_markdown(entry))
        ):
            out[entry] = count
    return out


def _toml(roots: list[str], found: list[tuple[Convention, Path]]) -> str:
    names = sorted({c.name for c, _ in found})
    here = f"found here: {', '.join(names)}" if names else "none found here yet"
    return f"""# specmem: this project's memory settings (`specmem paths` shows what they resolve to).

# Folders of memory files (*.md), relative to this file.
roots = {json.dumps(roots)}

# Places where other assistants keep memory, read as memory too ({here}).
# All known ones by default: {json.dumps(list(conventions.NAMES))}; [] reads none.
# conventions = {json.dumps(list(conventions.NAMES))}

# Hidden folders to index anyway, and extra ignore patterns (gitignore syntax), applied in every root.
# include = [".notes"]
# exclude = ["drafts/"]
"""
