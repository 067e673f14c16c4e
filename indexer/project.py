"""`specmem init`: set a project up for specmem. Plan first (so `--dry-run` shows exactly what would be done),
then create only what is missing: an existing file is never overwritten, and the plan says what it kept."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from specmem.indexer import assistants, atomic, conventions, db, files, places
from specmem.indexer import config as configmod
from specmem.indexer.config import DB_DIRNAME, PROJECT_FILE, Config
from specmem.indexer.conventions import Convention
from specmem.indexer.errors import ConfigError, WriteError
from specmem.indexer.places import Found

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
    # Where the project keeps memory that specmem reads: the roots that exist (with their markdown files), then the
    # conventions' places (at the top and below it), each with its convention (None for a root).
    reads: list[tuple[Convention | None, Path, int]] = field(default_factory=list)
    found: Found | None = None  # what the search of the project found
    hidden: dict[Path, int] = field(default_factory=dict)  # other hidden folders at the top holding markdown
    # The other markdown no root reads, by folder (as a scan reports it: ScanReport.unread, places.search).
    unread: list[tuple[str, int]] = field(default_factory=list)

    @property
    def created(self) -> list[Step]:
        return [s for s in self.steps if s.action == "create"]

    @property
    def places(self) -> list[tuple[Convention, Path]]:
        """The conventions' places this project has."""
        return [(c, p) for c, p, _ in self.reads if c is not None]

    def to_dict(self) -> dict[str, object]:
        return {
            "folder": str(self.folder),
            "roots": self.roots,
            "steps": [{"action": s.action, "path": str(s.path), "why": s.why} for s in self.steps],
            "conventions_found": [{"name": c.name, "tool": c.tool, "path": str(p)} for c, p in self.places],
            "reads": [{"path": str(p), "markdown_files": n} for _, p, n in self.reads],
            "hidden": {str(p): n for p, n in self.hidden.items()},
            "unread": [{"folder": p, "markdown_files": n} for p, n in self.unread],
        }


def plan(folder: Path, roots: list[str] | None = None, *, examples: bool = False) -> InitPlan:
    """What `specmem init` would do in `folder`, with `roots` (default `specs`), changing nothing. The example
    rule and memory are written only where the project keeps no memory yet (none in the roots, no convention's
    place anywhere in it), or when `examples` asks for them."""
    folder = folder.expanduser().absolute()
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"{folder} is a file; give the project's folder")
    listed = [_relative(folder, r) for r in roots] if roots else ["specs"]  # --root: as typed, from here
    result = InitPlan(folder, listed)
    steps = result.steps

    project_file = folder / PROJECT_FILE
    if folder.is_dir():
        _what_it_reads(result)
    result.hidden = _other_hidden(folder, result.places)
    if result.found is not None:  # the hidden folders at the top are listed with the setting that reads them
        result.unread = [(f, n) for f, n in result.found.left_out(folder) if folder / f not in result.hidden]
    if project_file.exists():
        steps.append(Step("keep", project_file, "exists; its settings stay as they are"))
    else:
        steps.append(
            Step(
                "create",
                project_file,
                f"the project's settings: roots = {json.dumps(listed)}",
                _toml(listed, result.places),
            )
        )

    first = (folder / listed[0]).resolve() if not Path(listed[0]).is_absolute() else Path(listed[0])
    memory = sum(n for _, _, n in result.reads)
    if memory and not examples:
        kept = f"the project keeps {memory} memory file{'s' if memory != 1 else ''}; no examples added (--examples adds them)"
        if first.is_dir():
            steps.append(Step("keep", first, kept))
        else:
            steps.append(Step("create", first, f"the folder for new memories; {kept}"))
    else:
        rule = first / "constitutional" / "example-rule.md"
        steps.append(Step("create", rule, "an example rule (a constitutional memory)", EXAMPLE_RULE))
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
    """Create what the plan says to create; a file that appeared since the plan is kept, never overwritten.
    A folder that cannot be written is a WriteError saying which; a symlinked `.specmem` is refused."""
    for step in init.created:
        try:
            if step.content is None:  # a folder for new memories
                step.path.mkdir(parents=True, exist_ok=True)
                continue
            if step.path.parent.name == DB_DIRNAME:
                # The index holds every memory: owner only, as db.connect makes it; never through a symlink.
                with atomic.open_own_folder(step.path.parent) as own:
                    if own.fd is not None:
                        os.fchmod(own.fd, 0o700)
            else:
                step.path.parent.mkdir(parents=True, exist_ok=True)
            created = _create(step.path, step.content)
        except OSError as exc:
            raise WriteError(
                atomic.describe(exc, step.path, "create") + "; nothing more was created"
            ) from None
        if not created:
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


def _what_it_reads(result: InitPlan) -> None:
    """Fill `reads` and `found`: the roots, and the conventions' places at the top and anywhere below it (the
    search a full scan makes), with the markdown left out."""
    folder = result.folder
    roots = tuple(Path(r) if Path(r).is_absolute() else (folder / r).resolve() for r in result.roots)
    own = configmod.with_places(
        Config(project=folder, db_path=folder / DB_DIRNAME / "index.db", roots=roots, searches_project=True),
        (),
    )
    result.found = places.search(folder, own)
    result.reads = [(None, r, _markdown_in(r)) for r in roots if r.is_dir()]
    top = conventions.found_at(folder, conventions.named(own.conventions))
    for convention, place in [*((c, p) for c, p in top if p in own.convention_roots), *result.found.places]:
        result.reads.append((convention, place, _markdown_in(place) if convention.folder else 1))


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

# Folders of memory files (*.md), relative to this file. ["."] reads every markdown file of the project.
roots = {json.dumps(roots)}

# Places where assistants keep memory, read as memory too ({here}); CLAUDE.md, AGENTS.md,
# .cursor/rules/ and decision records (docs/adr/, ...) at any depth.
# All known ones by default: {json.dumps(list(conventions.NAMES))}; [] reads none.
# conventions = {json.dumps(list(conventions.NAMES))}

# Hidden folders to index anyway, and extra ignore patterns (gitignore syntax), applied in every root.
# include = [".notes"]
# exclude = ["drafts/"]
"""
