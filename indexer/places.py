"""The places where a repository keeps assistant memory outside the roots, found by searching the project.

A convention read at any depth (a `CLAUDE.md` or `AGENTS.md` in a package, `.cursor/rules/` in an app, a
monorepo's `docs/adr/`) can be anywhere in a repository: finding it takes a walk of the whole project, which costs
too much for every command (seconds on a large repository), so `specmem init` and every full scan search for them,
and the scan remembers what it found beside the index (`index.db-places.json`). Settings resolve the remembered
places as roots of their own, like the places at the project top, so the watcher, the servers and checkpoints deal
with a handful of folders and files, never with the whole project. The search also counts the markdown it leaves
out, so that `init` and `scan` can say what is not read and which setting reads it: it is the one walk that does.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from specmem.indexer import config as configmod
from specmem.indexer import conventions, files
from specmem.indexer.config import Config
from specmem.indexer.conventions import Convention


@dataclass
class Found:
    """What a search of the project found: the places below its top (convention name, path), and the markdown
    files that no root reads, counted by folder (see `search`)."""

    places: list[tuple[Convention, Path]] = field(default_factory=list)
    unread: Counter[Path] = field(default_factory=Counter)

    def left_out(self, project: Path) -> list[tuple[str, int]]:
        """The markdown no root reads: (folder relative to `project`, `.` for its top; files), most first."""
        shown = (
            (p.relative_to(project).as_posix() if p != project else ".", n) for p, n in self.unread.items()
        )
        return sorted(shown, key=lambda kv: (-kv[1], kv[0]))


def search(project: Path, config: Config) -> Found:
    """Search `project` (its .gitignore, `.specmemignore` and the `exclude` setting honoured; node_modules and
    hidden folders that hold no convention skipped) for the places of the adopted conventions that are read at any
    depth, and count the markdown left out. Folders that are roots are not searched: the scan reads them.

    This is the one walk that says what is not read: `specmem init`, every full scan (and so the watcher's) and
    their reports use it. A file left out counts in the outermost folder above it that holds no root (the folder
    to add to the roots), else in its own folder (`apps/` beside `apps/web/CLAUDE.md`; the project's top); the
    markdown in a hidden folder the walk does not enter counts in that folder."""
    adopted = conventions.named(config.conventions)
    policy = files.Policy(adopted, config.include, config.exclude)
    inside = tuple(r for r in config.roots if r != project and files.within(r, project) and r.is_dir())
    walked = files.walk((project,), exclude=(*inside, config.db_path.parent), policy=policy)
    found = Found()
    seen: set[Path] = set()
    left: Counter[Path] = Counter()  # folder → markdown files no root reads
    for name in walked.found:
        path = Path(name)
        if any(files.within(path, r) for r in config.roots):
            continue  # a root (a folder or one file) already reads it
        hit = conventions.place(path, project, adopted)
        if hit is None:
            left[path.parent] += 1
        elif hit[1] not in seen:
            seen.add(hit[1])
            found.places.append(hit)
    for folder, count in walked.skipped.items():  # hidden folders the walk did not enter
        if not any(files.within(folder, r) for r in config.roots):  # in a root: the scan reports it
            left[folder] += count
    held = (*config.roots, *seen)  # the roots once the places found are read
    for folder, count in left.items():
        found.unread[_outermost(folder, project, held)] += count
    return found


def _outermost(folder: Path, project: Path, roots: tuple[Path, ...]) -> Path:
    """The outermost folder from `project` down to `folder` that holds no root, else `folder` itself."""
    for depth in range(1, len(folder.relative_to(project).parts) + 1):
        candidate = project.joinpath(*folder.relative_to(project).parts[:depth])
        if not any(files.within(root, candidate) for root in roots):
            return candidate
    return folder


def refresh(config: Config) -> tuple[Config, Found | None]:
    """Search the project (when its roots are its own: see Config.searches_project), remember the places found
    for the commands to come, and return `config` with them as roots, and what the search found."""
    if not config.searches_project or not config.project.is_dir():
        return config, None
    own = configmod.with_places(config, ())  # the project's own roots, and the places at its top
    found = search(config.project, own)
    remember(own, found)
    return configmod.with_places(own, found.places), found


def remember(config: Config, found: Found) -> None:
    """Write the places found beside the index (atomically), relative to the project."""
    path = configmod.places_file(config.db_path)
    data = [{"convention": c.name, "path": p.relative_to(config.project).as_posix()} for c, p in found.places]
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump({"places": data}, fh, indent=1)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
