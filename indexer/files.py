"""Which files are memory files: walking the roots with .gitignore (nested, negation) and .specmemignore honoured."""

from __future__ import annotations

import functools
import os
import re
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pathspec

from specmem.indexer import conventions
from specmem.indexer.conventions import CONVENTIONS, Convention
from specmem.indexer.errors import SpecFolderError

if TYPE_CHECKING:
    from specmem.indexer.config import Config

IGNORE_FILES = (".gitignore", ".specmemignore")
SEGMENT_RE = re.compile(r"^[\w][\w .\-]{0,99}$", re.UNICODE)
NEVER_DIRS = {"node_modules"}
# Hidden folders of tools and version control: skipped without a report, since they never hold memory.
NEVER_REPORTED = {".git", ".hg", ".svn", ".specmem", ".venv", ".tox", ".nox", ".cache"}
NEVER_REPORTED |= {".mypy_cache", ".pytest_cache", ".ruff_cache", ".idea", ".vscode", ".obsidian-trash"}
COUNT_LIMIT = 5000  # entries looked at when counting the markdown in a skipped hidden folder


def is_memory_name(name: str) -> bool:
    """`*.md`, but never a hidden file: editors' temporary, backup and lock files all start with `.` or `#`
    or do not end in `.md` (`x.md~`, `.x.md.swp`, `#x.md#`, `.#x.md`, `x.md___jb_tmp___`)."""
    return name.lower().endswith(".md") and not name.startswith((".", "#")) and len(name) > 3


def spec_folder_dirs(
    roots: tuple[Path, ...], name: str, *, must_exist: bool = True
) -> list[tuple[Path, Path]]:
    """(root, folder) for each root holding spec folder `name` as `<root>/<name>` or `<root>/specs/<name>`.

    The one place that turns a client's spec folder name into folders: names that are paths (`..`, absolute,
    a leading dot, NUL) are refused."""
    parts = Path(name).parts if "\x00" not in name else ()
    if not parts or Path(name).is_absolute() or any(not SEGMENT_RE.match(p) for p in parts):
        raise SpecFolderError(
            f"spec_folder {name!r} is not a folder name like 003-auth (letters, digits, '-', '_', '.'; "
            "no '..', no leading '.', no absolute path, no NUL)"
        )
    found = [(r, f) for r in roots for f in (r / name, r / "specs" / name) if f.is_dir()]
    if must_exist and not found:
        raise SpecFolderError(f"no spec folder {name!r} under the roots; memory_list shows the folders")
    return found


def is_skipped_dir(name: str) -> bool:
    return name.startswith(".") or name in NEVER_DIRS


@dataclass(frozen=True)
class Policy:
    """What a walk takes besides plain `*.md` files outside hidden folders: the places of the memory conventions
    adopted (so their hidden folders are entered), hidden folders the settings include, extra ignore patterns,
    and roots that are single files (a convention's file at the project top, such as CLAUDE.md)."""

    conventions: tuple[Convention, ...] = CONVENTIONS
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    file_roots: frozenset[Path] = frozenset()

    @classmethod
    def of(cls, config: Config) -> Policy:
        return cls(
            conventions.named(config.conventions),
            config.include,
            config.exclude,
            frozenset(config.file_roots),
        )

    @functools.cached_property
    def _included(self) -> pathspec.GitIgnoreSpec | None:
        return pathspec.GitIgnoreSpec.from_lines(self.include) if self.include else None

    def included(self, rel: tuple[str, ...], is_dir: bool) -> bool:
        """Whether the settings' `include` patterns name this path (relative to its root) or a folder above it."""
        spec = self._included
        return spec is not None and spec.match_file("/".join(rel) + ("/" if is_dir else ""))

    def is_memory_file(self, path: Path) -> bool:
        """`*.md` (not hidden), or a file its convention reads (Cursor's `*.mdc` rules)."""
        if is_memory_name(path.name):
            return True
        return not path.name.startswith((".", "#")) and conventions.extra_suffix(path, self.conventions)

    def hidden(self, root: Path, path: Path, is_dir: bool) -> bool:
        """Whether `path` (inside `root`) is left out for lying in node_modules or a hidden folder that is
        neither an adopted convention's place nor included by the settings."""
        rel = path.relative_to(root).parts
        folders = rel if is_dir else rel[:-1]
        if any(p in NEVER_DIRS for p in folders):
            return True
        if not any(p.startswith(".") for p in folders) or self.included(rel, is_dir):
            return False
        if is_dir:
            return not conventions.enters(path, self.conventions)
        return conventions.match(path, self.conventions) is None


DEFAULT_POLICY = Policy()


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class IgnoreRules:
    """gitignore-style rules for one root, read from ignore files from the repository top down to each folder."""

    def __init__(self, root: Path, policy: Policy = DEFAULT_POLICY) -> None:
        self.root = root
        self.policy = policy
        self.base = next((p for p in (root, *root.parents) if (p / ".git").exists()), root)
        self._specs: dict[Path, pathspec.GitIgnoreSpec | None] = {}

    def _spec(self, folder: Path) -> pathspec.GitIgnoreSpec | None:
        if folder not in self._specs:
            lines: list[str] = []
            for name in IGNORE_FILES:
                try:
                    lines += (folder / name).read_text(encoding="utf-8", errors="replace").splitlines()
                except OSError:
                    pass
            if folder == self.root:
                lines += (
                    self.policy.exclude
                )  # the settings' extra patterns, as if in the root's .specmemignore
            self._specs[folder] = pathspec.GitIgnoreSpec.from_lines(lines) if lines else None
        return self._specs[folder]

    def excludes(self, path: Path, is_dir: bool) -> bool:
        """Whether `path` itself is ignored by the rules of the folders above it (deepest file wins)."""
        folder = path.parent
        while within(folder, self.base):
            spec = self._spec(folder)
            if spec is not None:
                rel = path.relative_to(folder).as_posix() + ("/" if is_dir else "")
                result = spec.check_file(rel).include
                if result is not None:
                    return bool(result)
            if folder == self.base:
                break
            folder = folder.parent
        return False

    def ignored(self, path: Path, is_dir: bool = False) -> bool:
        """Whether `path` (inside the root) is excluded, by its own name or by an excluded folder above it."""
        if self.policy.hidden(self.root, path, is_dir):
            return True
        rel_parts = path.relative_to(self.root).parts
        current = self.root
        for i, _ in enumerate(rel_parts):
            current = current / rel_parts[i]
            last = i == len(rel_parts) - 1
            if self.excludes(current, is_dir or not last):
                return True
        return False


def skip_reason(path: Path, roots: tuple[Path, ...], policy: Policy = DEFAULT_POLICY) -> str | None:
    """Why the walk leaves out `path` (a file inside the roots), in words that say how to include it."""
    root = root_of(path, roots)
    if root is None:
        return "it lies outside the memory roots"
    if root in policy.file_roots:
        return None
    rules = IgnoreRules(root, policy)
    current = root
    for part in path.relative_to(root).parts[:-1]:
        current = current / part
        if part in NEVER_DIRS:
            return f"it lies in {current}, and node_modules folders are never indexed"
        if rules.excludes(current, True):
            return (
                f"an ignore rule (.gitignore, .specmemignore, `exclude` in specmem.toml) excludes {current}"
            )
    if policy.hidden(root, path, False):
        hidden = next(p for p in (path.parent, *path.parents) if p.name.startswith("."))
        rel = hidden.relative_to(root).as_posix()
        return (
            f"it lies in the hidden folder {hidden}, which is not a memory convention's place; "
            f'to index it, add include = ["{rel}"] to specmem.toml'
        )
    if rules.excludes(path, False):
        return "an ignore rule (.gitignore, .specmemignore, `exclude` in specmem.toml) excludes it"
    if not policy.is_memory_file(path):
        return "it is not a memory file (*.md, not hidden)"
    return None


@dataclass
class WalkResult:
    files: dict[Path, tuple[Path, os.stat_result]] = field(default_factory=dict)  # path → (root, stat)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    incomplete: list[Path] = field(default_factory=list)  # folders that could not be read: keep their rows
    skipped: dict[Path, int] = field(default_factory=dict)  # hidden folder → markdown files left out there


def root_of(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """The innermost root holding `path`, or None when it lies outside every root."""
    holding = [r for r in roots if within(path, r)]
    return max(holding, key=lambda r: len(r.parts)) if holding else None


def walk(
    roots: tuple[Path, ...],
    *,
    exclude: tuple[Path, ...] = (),
    scopes: tuple[Path, ...] | None = None,
    policy: Policy = DEFAULT_POLICY,
) -> WalkResult:
    """Every memory file under the roots, or only under `scopes` (files or folders inside the roots).

    Unreadable folders and symlink loops are reported, never fatal. A scope that no longer exists yields nothing
    (its memories are gone); a scope that cannot be read is listed as incomplete (its memories are kept).
    Hidden folders holding markdown that the policy leaves out are counted in `skipped`, never dropped silently."""
    result = WalkResult()
    missing_roots: set[Path] = set()
    for root in roots:
        if root in policy.file_roots:
            continue  # one file; when it is gone, its memory is gone
        if not root.is_dir():
            result.problems.append(
                (str(root), "root folder does not exist or is not a folder; nothing scanned")
            )
            result.incomplete.append(root)
            missing_roots.add(root)
    rules_of: dict[Path, IgnoreRules] = {}
    seen_dirs: set[tuple[int, int]] = set()
    for scope in _scope_list(roots, scopes):
        root = root_of(scope, roots)
        if root is None or root in missing_roots:
            continue
        if root in policy.file_roots:
            _file_root(root, roots, result)
            continue
        # Only folders strictly inside this root are left out (a root may itself lie inside the database's folder).
        inside = tuple(x for x in exclude if x != root and within(x, root))
        if any(within(scope, x) for x in inside):
            continue
        rules = rules_of.setdefault(root, IgnoreRules(root, policy))
        if scope == root:
            _walk_dir(root, root, roots, rules, inside, seen_dirs, result)
            continue
        try:
            st = os.stat(scope)
        except (FileNotFoundError, NotADirectoryError):
            continue  # gone: nothing to find here
        except OSError as exc:
            result.problems.append(
                (str(scope), f"cannot stat ({exc.strerror}); its memories are kept as they were")
            )
            result.incomplete.append(scope)
            continue
        is_dir = stat_mod.S_ISDIR(st.st_mode)
        if rules.ignored(scope, is_dir=is_dir) or _escapes(scope, roots, result):
            continue
        if is_dir:
            _walk_dir(scope, root, roots, rules, inside, seen_dirs, result)
        elif stat_mod.S_ISREG(st.st_mode) and policy.is_memory_file(scope):
            result.files[scope] = (root, st)
    return result


def _file_root(root: Path, roots: tuple[Path, ...], result: WalkResult) -> None:
    """A root that is one file: taken when it is a regular file (a symlink only to a file inside the roots)."""
    try:
        st = os.stat(root)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as exc:
        result.problems.append((str(root), f"cannot stat ({exc.strerror}); its memory is kept as it was"))
        result.incomplete.append(root)
        return
    if stat_mod.S_ISREG(st.st_mode) and not _escapes(root, roots, result):
        result.files[root] = (root, st)


def count_markdown(folder: Path) -> int:
    """Markdown files under a folder the walk skips (bounded: a huge folder is only partly counted)."""
    count = seen = 0
    stack = [folder]
    while stack and seen < COUNT_LIMIT:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    seen += 1
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(Path(entry.path))
                    elif entry.name.lower().endswith((".md", ".mdc")) and not entry.name.startswith(
                        (".", "#")
                    ):
                        count += 1
        except OSError:
            continue
    return count


def _scope_list(roots: tuple[Path, ...], scopes: tuple[Path, ...] | None) -> list[Path]:
    """Scopes without those inside another folder scope; a folder scope brings the nested roots inside it."""
    if scopes is None:
        return list(roots)
    wanted = set(scopes)
    wanted |= {r for r in roots for s in scopes if r != s and within(r, s)}
    ordered = sorted(wanted, key=lambda p: len(p.parts))
    kept: list[Path] = []
    kept_set: set[Path] = set()
    for scope in ordered:
        # Ancestors only (O(depth)): a burst of a thousand file scopes must not cost a million comparisons.
        inside = [a for a in scope.parents if a in kept_set]
        if not any(root_of(a, roots) == root_of(scope, roots) for a in inside):
            kept.append(scope)
            kept_set.add(scope)
    return kept


def _escapes(path: Path, roots: tuple[Path, ...], result: WalkResult) -> bool:
    """A symlink leading outside the roots is never followed."""
    if not path.is_symlink():
        return False
    target = path.resolve()
    if any(within(target, r) for r in roots):
        return False
    result.problems.append((str(path), f"symlink to {target}, outside the roots; not indexed"))
    return True


def _walk_dir(
    folder: Path,
    root: Path,
    roots: tuple[Path, ...],
    rules: IgnoreRules,
    exclude: tuple[Path, ...],
    seen_dirs: set[tuple[int, int]],
    result: WalkResult,
) -> None:
    try:
        st = folder.stat()
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            result.problems.append(
                (str(folder), "symlink loop: this folder was already walked; not followed")
            )
            return
        seen_dirs.add(key)
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError as exc:
        result.problems.append(
            (str(folder), f"cannot read folder ({exc.strerror}); its memories are kept as they were")
        )
        result.incomplete.append(folder)
        return
    for entry in entries:
        path = Path(entry.path)
        try:
            is_link = entry.is_symlink()
            is_dir = entry.is_dir()
            is_file = entry.is_file()
        except OSError as exc:
            result.problems.append((str(path), f"cannot stat ({exc.strerror})"))
            continue
        if is_link and (is_dir or is_file):
            target = path.resolve()
            if not any(within(target, r) for r in roots):
                if is_dir or is_memory_name(entry.name):
                    result.problems.append(
                        (str(path), f"symlink to {target}, outside the roots; not indexed")
                    )
                continue
        if is_dir:
            if any(within(path, x) for x in exclude):
                continue
            if rules.policy.hidden(root, path, True):
                if entry.name not in NEVER_REPORTED and entry.name not in NEVER_DIRS:
                    if not rules.excludes(path, True) and (count := count_markdown(path)):
                        result.skipped[path] = count
                continue
            if rules.ignored(path, is_dir=True):
                continue
            if path != root and path in roots:
                continue  # a nested root is walked on its own
            _walk_dir(path, root, roots, rules, exclude, seen_dirs, result)
        elif is_file and rules.policy.is_memory_file(path):
            if rules.excludes(path, False) or path in result.files:
                continue
            if rules.policy.hidden(root, path, False):
                result.skipped[folder] = result.skipped.get(folder, 0) + 1  # in an entered hidden folder
                continue
            try:
                result.files[path] = (root, path.stat())
            except OSError as exc:
                result.problems.append((str(path), f"cannot stat ({exc.strerror})"))
        elif is_link and not is_dir and not is_file and rules.policy.is_memory_file(path):
            result.problems.append((str(path), "broken symlink; not indexed"))
