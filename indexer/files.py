"""Which files are memory files: walking the roots with .gitignore (nested, negation) and .specmemignore honoured."""

from __future__ import annotations

import os
import re
import stat as stat_mod
from dataclasses import dataclass, field
from pathlib import Path

import pathspec

from specmem.indexer.errors import SpecFolderError

IGNORE_FILES = (".gitignore", ".specmemignore")
SEGMENT_RE = re.compile(r"^[\w][\w .\-]{0,99}$", re.UNICODE)
NEVER_DIRS = {"node_modules"}


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


def within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


class IgnoreRules:
    """gitignore-style rules for one root, read from ignore files from the repository top down to each folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
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
        rel_parts = path.relative_to(self.root).parts
        current = self.root
        for i, part in enumerate(rel_parts):
            current = current / part
            last = i == len(rel_parts) - 1
            if (not last or is_dir) and is_skipped_dir(part):
                return True
            if self.excludes(current, is_dir or not last):
                return True
        return False


def skip_reason(path: Path, roots: tuple[Path, ...]) -> str | None:
    """Why the walk leaves out `path` (a file inside the roots), in words that say how to include it."""
    root = root_of(path, roots)
    if root is None:
        return "it lies outside the memory roots"
    rules = IgnoreRules(root)
    current = root
    for part in path.relative_to(root).parts[:-1]:
        current = current / part
        if is_skipped_dir(part):
            return f"it lies in {current}, a folder that is never indexed (hidden folders and node_modules)"
        if rules.excludes(current, True):
            return f"an ignore rule (.gitignore, .specmemignore) excludes {current}"
    if rules.excludes(path, False):
        return "an ignore rule (.gitignore, .specmemignore) excludes it"
    if not is_memory_name(path.name):
        return "it is not a memory file (*.md, not hidden)"
    return None


@dataclass
class WalkResult:
    files: dict[Path, tuple[Path, os.stat_result]] = field(default_factory=dict)  # path → (root, stat)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    incomplete: list[Path] = field(default_factory=list)  # folders that could not be read: keep their rows


def root_of(path: Path, roots: tuple[Path, ...]) -> Path | None:
    """The innermost root holding `path`, or None when it lies outside every root."""
    holding = [r for r in roots if within(path, r)]
    return max(holding, key=lambda r: len(r.parts)) if holding else None


def walk(
    roots: tuple[Path, ...], *, exclude: tuple[Path, ...] = (), scopes: tuple[Path, ...] | None = None
) -> WalkResult:
    """Every memory file under the roots, or only under `scopes` (files or folders inside the roots).

    Unreadable folders and symlink loops are reported, never fatal. A scope that no longer exists yields nothing
    (its memories are gone); a scope that cannot be read is listed as incomplete (its memories are kept)."""
    result = WalkResult()
    missing_roots: set[Path] = set()
    for root in roots:
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
        # Only folders strictly inside this root are left out (a root may itself lie inside the database's folder).
        inside = tuple(x for x in exclude if x != root and within(x, root))
        if any(within(scope, x) for x in inside):
            continue
        rules = rules_of.setdefault(root, IgnoreRules(root))
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
        elif stat_mod.S_ISREG(st.st_mode) and is_memory_name(scope.name):
            result.files[scope] = (root, st)
    return result


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
            if is_skipped_dir(entry.name) or any(within(path, x) for x in exclude):
                continue
            if rules.ignored(path, is_dir=True):
                continue
            if path != root and path in roots:
                continue  # a nested root is walked on its own
            _walk_dir(path, root, roots, rules, exclude, seen_dirs, result)
        elif is_file and is_memory_name(entry.name):
            if rules.excludes(path, False) or path in result.files:
                continue
            try:
                result.files[path] = (root, path.stat())
            except OSError as exc:
                result.problems.append((str(path), f"cannot stat ({exc.strerror})"))
        elif is_link and not is_dir and not is_file and is_memory_name(entry.name):
            result.problems.append((str(path), "broken symlink; not indexed"))
