"""Folders of markdown in the project that no root reads (`docs/`, `.specify/templates/`): `specmem init` and
`specmem scan` list them with the setting that takes them in, so nothing is left out in silence."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from specmem.indexer import files
from specmem.indexer.config import Config

# Roots chosen for one run (an option, SPECMEM_ROOTS, a remembered `scan DIR`) are taken as meant: the folder
# around them is not the user's project to search (it may be their home folder).
CHOSEN = ("option", "env", "remembered")


def folders(
    project: Path, roots: Sequence[Path], policy: files.Policy, *, exclude: Sequence[Path] = ()
) -> dict[Path, int]:
    """Each outermost folder under `project` that holds markdown and no root, with its number of markdown files.
    The walk is a scan's (ignore files, node_modules and `.git` left out); markdown files at the project's top
    level are not counted (a README is no memory folder)."""
    if not project.is_dir():
        return {}
    roots = tuple(roots)
    walked = files.walk((project,), exclude=tuple(exclude), policy=policy)
    out: Counter[Path] = Counter()
    for name in walked.found:
        path = Path(name)
        if files.root_of(path, roots) is None and (folder := _outermost(path.parent, project, roots)):
            out[folder] += 1
    for folder, count in walked.skipped.items():  # hidden folders the walk did not enter
        if files.root_of(folder, roots) is None and (outer := _outermost(folder, project, roots)):
            out[outer] += count
    return dict(sorted(out.items()))


def _outermost(folder: Path, project: Path, roots: tuple[Path, ...]) -> Path | None:
    """The outermost folder from `project` down to `folder` that holds no root, or None."""
    if folder == project:
        return None
    for depth in range(1, len(folder.relative_to(project).parts) + 1):
        candidate = project.joinpath(*folder.relative_to(project).parts[:depth])
        if not any(files.within(root, candidate) for root in roots):
            return candidate
    return None


def of(config: Config) -> dict[Path, int]:
    """The folders of markdown the configured roots leave out, when the roots are the project's own (its
    `specmem.toml` or the default); roots chosen for one run are taken as meant."""
    if config.sources.get("roots", "").startswith(CHOSEN):
        return {}
    return folders(config.project, config.roots, files.Policy.of(config), exclude=(config.db_path.parent,))
