"""Which files are memory files: walking the roots with .gitignore (nested, negation) and .specmemignore honoured."""

from __future__ import annotations

import functools
import operator
import os
import re
import stat as stat_mod
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pathspec

from specmem.indexer import conventions
from specmem.indexer.conventions import CONVENTIONS, Convention
from specmem.indexer.errors import NotFound, SpecFolderError

if TYPE_CHECKING:
    from specmem.indexer.config import Config

IGNORE_FILES = (".gitignore", ".specmemignore")
SEGMENT_RE = re.compile(r"^[\w][\w .\-]{0,99}$", re.UNICODE)
NEVER_DIRS = {"node_modules"}
NAME_MAX = 255  # bytes in one file or folder name, on every common file system
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
    a leading dot, NUL) are refused. An existing folder is found whatever its name (`(`, `+`, `&`, decomposed
    accents, long names); a folder to be created must have a plain name (SEGMENT_RE)."""
    parts = Path(name).parts if "\x00" not in name else ()
    if (
        not parts
        or Path(name).is_absolute()
        or any(p.startswith(".") or p in ("/", "\\") for p in parts)
        or not _encodable(name)
    ):
        raise SpecFolderError(
            f"spec_folder {name!r} is not a folder name like 003-auth (no '..', no leading '.', no absolute "
            "path, no NUL, UTF-8 text)"
        )
    if any(len(p.encode("utf-8")) > NAME_MAX for p in parts):
        raise SpecFolderError(
            f"spec_folder {name!r} has a folder name over {NAME_MAX} bytes, too long for the file system; "
            "use a shorter name"
        )
    spellings = dict.fromkeys(unicodedata.normalize(form, name) for form in ("NFC", "NFD"))
    found = [
        (r, f) for r in roots for n in (name, *spellings) for f in (r / n, r / "specs" / n) if _is_dir(f)
    ]
    found = list(dict.fromkeys(found))
    if found:
        return found
    if must_exist:
        raise SpecFolderError(f"no spec folder {name!r} under the roots; memory_list shows the folders")
    if any(not SEGMENT_RE.match(p) for p in parts):
        raise SpecFolderError(
            f"spec_folder {name!r} is not a folder name like 003-auth (letters, digits, '-', '_', '.'; "
            "at most 100 characters each)"
        )
    return found


def _is_dir(path: Path) -> bool:
    try:
        return stat_mod.S_ISDIR(os.stat(path).st_mode)
    except (OSError, ValueError):
        return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def storable(path: str) -> bool:
    """Whether a path read from the file system is UTF-8 text, as the index stores paths. A name in another
    encoding (`caf\xe9.md`, Latin-1, as git and archives leave it) arrives with surrogate escapes and is not."""
    return path.isascii() or _encodable(path)


def shown(path: str | Path) -> str:
    """A path as text that can be printed and stored: bytes that are not UTF-8 shown as `\xe9`."""
    return os.fsencode(path).decode("utf-8", "backslashreplace")


NOT_UTF8 = (
    "its name is not UTF-8 (bytes shown as \\xNN), and the index stores names as UTF-8 text; not indexed: rename "
    "it to UTF-8 (e.g. `convmv -f latin1 -t utf8`)"
)


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

    @functools.cached_property
    def suffixes(self) -> frozenset[str]:
        """Every suffix a memory file may have (lower case): a walk through source code tests each name with it."""
        return frozenset(s for c in self.conventions for s in c.suffixes) | {".md"}

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


def within(path: Path | str, folder: Path | str) -> bool:
    """Whether `path` is `folder` or lies below it (by name: symlinks are not resolved). Compares the strings:
    `folder in path.parents` costs a Path object and a comparison per level, and the walk asks this often."""
    p, f = str(path), str(folder)
    return p == f or p.startswith(f if f.endswith(os.sep) else f + os.sep)


class Rules(NamedTuple):
    """One ignore file's rules. `lines`, last line first: (a regular expression matching a path relative to the
    file's folder, with a trailing `/` for a folder; whether a match excludes it); a negated line (`!x`)
    re-includes. `any` matches where at least one line does: most paths match no line, and one search says so
    where a line-by-line search costs one per line (a 75-line .gitignore made the walk five times slower)."""

    any: re.Pattern[str]
    lines: tuple[tuple[re.Pattern[str], bool], ...]


# The rules in force inside one folder: (length of a folder's path prefix, that folder's rules), from the
# repository top down. A path's text after the prefix is its path relative to that folder, as gitignore wants it.
Layers = tuple[tuple[int, Rules], ...]
_NAMED_GROUP = re.compile(r"\(\?P<\w+>")
_ANY_FOLDER = "^(?:.+/)?"  # how pathspec starts a pattern that matches in any folder


def compile_rules(lines: list[str]) -> Rules | None:
    """gitignore lines as rules that match a path itself, never merely a folder above it: the walk does not enter
    an excluded folder, so what is below one never needs matching, and a negated folder (`!b/`) must not
    re-include the files in it (git's rule). pathspec translates the patterns. None when there are none."""
    out: list[tuple[re.Pattern[str], bool]] = []
    for pattern in pathspec.GitIgnoreSpec.from_lines(map(_git_line, lines)).patterns:
        if pattern.include is not None and pattern.regex is not None:
            out.append((re.compile(f"(?:{pattern.regex.pattern})\\Z"), pattern.include))
    if not out:
        return None
    return Rules(_either(out), tuple(reversed(out)))


def _either(rules: list[tuple[re.Pattern[str], bool]]) -> re.Pattern[str]:
    """One expression matching where any rule does. Most lines are names to match in any folder (`^(?:.+/)?X`):
    they share that prefix, so the search looks for a folder boundary once for all of them, not once each."""
    anywhere: list[str] = []
    other: list[str] = []
    for regex, _ in rules:
        # pathspec names a group in every pattern (`ps_d`): the same name twice cannot be compiled together.
        text = _NAMED_GROUP.sub("(?:", regex.pattern.removeprefix("(?:").removesuffix(")\\Z"))
        if text.startswith(_ANY_FOLDER) and not _top_level_or(text):
            anywhere.append(f"(?:{text[len(_ANY_FOLDER) :]})")
        else:
            other.append(f"(?:{text})\\Z")
    if anywhere:
        other.insert(0, f"{_ANY_FOLDER}(?:{'|'.join(anywhere)})\\Z")
    try:
        return re.compile("|".join(other))
    except re.error:
        return re.compile("")  # matches everything: each line decides, as before


def _top_level_or(pattern: str) -> bool:
    """Whether a regular expression is an alternation at its top level (`a|b`): then a prefix is not shared."""
    depth, i, in_class = 0, 0, False
    while i < len(pattern):
        char = pattern[i]
        if char == "\\":
            i += 1
        elif in_class:
            in_class = char != "]"
        elif char == "[":
            in_class = True
            if pattern[i + 1 : i + 2] == "]":
                i += 1  # `[]...]`: a leading `]` is a member
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "|" and depth == 0:
            return True
        i += 1
    return False


def _git_line(line: str) -> str:
    """A trailing `/**` matches everything inside a folder but not the folder itself; pathspec also matches the
    folder, which would hide a file that a deeper ignore file re-includes. `/**/*` says the same thing exactly."""
    stripped = line.rstrip(" ")
    return stripped + "/*" if stripped.endswith("/**") else line


class IgnoreRules:
    """gitignore-style rules for one root, read from ignore files from the repository top down to each folder.

    The walk carries the layers in force down the tree, so deciding about a path costs one match per ignore file
    above it, not a walk back to the repository top (which made a deep tree cost depth³)."""

    def __init__(self, root: Path, policy: Policy = DEFAULT_POLICY) -> None:
        self.root = root
        self.policy = policy
        self.base = next((p for p in (root, *root.parents) if (p / ".git").exists()), root)
        self._rules: dict[Path, Rules | None] = {}
        self._inside: dict[Path, Layers | None] = {}

    def _read(self, folder: Path) -> Rules | None:
        if folder not in self._rules:
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
            self._rules[folder] = compile_rules(lines)
        return self._rules[folder]

    def layers(self, folder: Path, above: Layers) -> Layers:
        """The layers in force inside `folder`: those `above` it plus its own ignore files (the walk, which has
        listed the folder, asks only about a folder holding one)."""
        rules = self._read(folder)
        if rules is None:
            return above
        prefix = str(folder)
        return (*above, (len(prefix) if prefix.endswith(os.sep) else len(prefix) + 1, rules))

    @staticmethod
    def matches(layers: Layers, path: str, is_dir: bool) -> bool:
        """Whether the layers exclude `path` (in the folder they apply to): the deepest ignore file with a matching
        line decides, and in it the last matching line."""
        for prefix_len, rules in reversed(layers):
            rel = path[prefix_len:]
            if os.sep != "/":
                rel = rel.replace(os.sep, "/")
            if is_dir:
                rel += "/"
            if rules.any.search(rel) is None:
                continue
            for regex, exclude in rules.lines:
                if regex.search(rel):
                    return exclude
        return False

    def inside(self, folder: Path) -> Layers | None:
        """The layers in force inside `folder` (the root or a folder below it), or None when it is excluded."""
        if folder in self._inside:
            return self._inside[folder]
        if not within(folder, self.root):
            raise ValueError(f"{folder} is not inside {self.root}")
        # Climb to the nearest folder already known (iteratively: a deep tree must not exhaust the stack).
        chain: list[Path] = []
        current = folder
        while current not in self._inside and current != self.root:
            chain.append(current)
            current = current.parent
        if current == self.root and current not in self._inside:
            up = [self.root, *self.root.parents]
            top: Layers = ()
            for above in reversed(up[: up.index(self.base) + 1]):  # from the repository top down to the root
                top = self.layers(above, top)
            self._inside[self.root] = top
        layers = self._inside[current]
        for below in reversed(chain):
            if layers is not None and (
                self.policy.hidden(self.root, below, True) or self.matches(layers, str(below), is_dir=True)
            ):
                layers = None
            elif layers is not None:
                layers = self.layers(below, layers)
            self._inside[below] = layers
        return layers

    def ignored(self, path: Path, is_dir: bool = False) -> bool:
        """Whether `path` (inside the root) is excluded, by its own name or by an excluded folder above it."""
        if self.policy.hidden(self.root, path, is_dir):
            return True
        if is_dir:
            return self.inside(path) is None
        layers = self.inside(path.parent)
        return layers is None or self.matches(layers, str(path), is_dir=False)

    def excludes(self, path: Path, is_dir: bool) -> bool:
        """Whether an ignore rule excludes `path` itself (its folder's rules in force; hidden folders aside)."""
        layers = self.inside(path.parent) if path != self.root else ()
        return layers is not None and self.matches(layers, str(path), is_dir)


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
    # path → (root, stat); keyed by the path's text: 50,000 Path objects cost a no-op rescan more than its stats
    found: dict[str, tuple[Path, os.stat_result]] = field(default_factory=dict)
    problems: list[tuple[str, str]] = field(default_factory=list)  # (path, message)
    incomplete: list[Path] = field(default_factory=list)  # folders that could not be read: keep their rows
    skipped: dict[Path, int] = field(default_factory=dict)  # hidden folder → markdown files left out there

    @property
    def files(self) -> dict[Path, tuple[Path, os.stat_result]]:
        """The memory files found: path → (root, stat)."""
        return {Path(p): v for p, v in self.found.items()}


def inside_roots(path: Path, roots: Iterable[Path]) -> bool:
    """Whether `path`, with symlinks resolved, lies inside one of the roots."""
    real = path.resolve()
    return any(within(real, root.resolve()) for root in roots)


def user_paths(text: str, project: Path, roots: Iterable[Path]) -> list[Path]:
    """The paths a path named by a user may mean, most likely first: itself when absolute, else relative to the
    current folder, to the project, then to each root, in each of its spellings (not normalised: `..` is resolved
    with the symlinks before it). Refuses text that names no file. Every command and tool that takes a path
    resolves it here."""
    if "\x00" in text:
        raise NotFound("a path cannot contain a NUL character")
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:  # lone surrogates: bytes that were not UTF-8
            raise NotFound("a path must be UTF-8 text; give an id or a path inside the roots") from None
    found: list[Path] = []
    for spelling in spellings(text):
        raw = Path(spelling).expanduser()
        found += [raw] if raw.is_absolute() else [base / raw for base in (Path.cwd(), project, *roots)]
    return list(dict.fromkeys(found))


def spellings(text: str) -> list[str]:
    """A name as given, composed (NFC) and decomposed (NFD): macOS and archives write NFD names, and either
    spelling finds the file."""
    if text.isascii():
        return [text]
    return list(dict.fromkeys([text, unicodedata.normalize("NFC", text), unicodedata.normalize("NFD", text)]))


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
        if not storable(str(root)):
            result.problems.append((shown(root), f"root folder: {NOT_UTF8}"))
            missing_roots.add(root)
            continue
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
        found_root = root_of(scope, roots)
        if found_root is None or found_root in missing_roots:
            continue
        root = found_root
        if not storable(str(scope)):
            result.problems.append((shown(scope), NOT_UTF8))
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
            result.found[str(scope)] = (root, st)
    # Paths and messages are printed and stored: a name in another encoding is shown with `\xNN` escapes.
    result.problems = [(shown(p), shown(m)) for p, m in result.problems]
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
        result.found[str(root)] = (root, st)


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


_BY_NAME = operator.attrgetter("name")


def _listing(
    folder: str, seen_dirs: set[tuple[int, int]], result: WalkResult
) -> list[os.DirEntry[str]] | None:
    """A folder's entries in name order; None (reported) when it cannot be read or was already walked."""
    try:
        st = os.stat(folder)
        key = (st.st_dev, st.st_ino)
        if key in seen_dirs:
            result.problems.append((folder, "symlink loop: this folder was already walked; not followed"))
            return None
        seen_dirs.add(key)
        with os.scandir(folder) as listing:
            return sorted(listing, key=_BY_NAME)
    except OSError as exc:
        result.problems.append(
            (folder, f"cannot read folder ({exc.strerror}); its memories are kept as they were")
        )
        result.incomplete.append(Path(folder))
        return None


def _layers_in(
    folder: str, root: Path, entries: list[os.DirEntry[str]], above: Layers, rules: IgnoreRules
) -> Layers:
    """The ignore rules in force in a folder: those above it, with its own ignore files' on top."""
    if folder == str(root):
        return rules.inside(root) or ()
    if any(e.name in IGNORE_FILES for e in entries):
        return rules.layers(Path(folder), above)
    return above  # no ignore file here: the rules above are those in force


def _leads_out(path: str, roots: tuple[Path, ...], result: WalkResult) -> bool:
    """Whether a symlink (to a folder or a file) leads outside the roots: it is then never followed."""
    target = Path(path).resolve()
    if any(within(target, r) for r in roots):
        return False
    result.problems.append((path, f"symlink to {target}, outside the roots; not indexed"))
    return True


def _enters(
    path: str,
    name: str,
    root: Path,
    root_strs: set[str],
    excluded: tuple[str, ...],
    in_hidden: bool,
    layers: Layers,
    rules: IgnoreRules,
    result: WalkResult,
) -> bool:
    """Whether the walk goes into this folder. A hidden one the policy leaves out is counted in `skipped` when it
    holds markdown, so that it is reported, never dropped in silence."""
    if excluded and any(within(path, x) for x in excluded):
        return False
    if (in_hidden or name.startswith(".") or name in NEVER_DIRS) and rules.policy.hidden(
        root, Path(path), True
    ):
        if name not in NEVER_REPORTED and name not in NEVER_DIRS:
            if not rules.matches(layers, path, is_dir=True) and (count := count_markdown(Path(path))):
                result.skipped[Path(path)] = count
        return False
    if path in root_strs:
        return False  # a nested root is walked on its own
    if layers and rules.matches(layers, path, is_dir=True):
        return False
    if not name.isascii() and not _encodable(name):
        result.problems.append((shown(path), f"folder: {NOT_UTF8}"))
        return False
    return True


def _take(
    path: str,
    folder: str,
    root: Path,
    entry: os.DirEntry[str],
    layers: Layers,
    in_hidden: bool,
    rules: IgnoreRules,
    found: dict[str, tuple[Path, os.stat_result]],
    result: WalkResult,
) -> None:
    """Record a memory file the walk found, unless ignored, already found, or in a hidden folder that the policy
    leaves it out of (counted in `skipped`)."""
    if (layers and rules.matches(layers, path, is_dir=False)) or path in found:
        return
    if in_hidden and rules.policy.hidden(root, Path(path), False):
        where = Path(folder)  # in an entered hidden folder
        result.skipped[where] = result.skipped.get(where, 0) + 1
        return
    if not entry.name.isascii() and not _encodable(entry.name):
        result.problems.append((shown(path), NOT_UTF8))
        return
    try:
        found[path] = (root, entry.stat())
    except OSError as exc:
        result.problems.append((path, f"cannot stat ({exc.strerror})"))


def _walk_dir(
    top: Path,
    root: Path,
    roots: tuple[Path, ...],
    rules: IgnoreRules,
    exclude: tuple[Path, ...],
    seen_dirs: set[tuple[int, int]],
    result: WalkResult,
) -> None:
    """Depth first, in name order, with an explicit stack: no recursion limit on how deep a tree may go.

    Folders travel as text: a Path per folder (and its comparisons with the roots) was most of a no-op rescan at
    50,000 files. A Path is built only where a rule needs one: a hidden folder, an ignore file, a symlink."""
    root_str = str(root)
    root_strs = {str(r) for r in roots}
    excluded = tuple(str(x) for x in exclude)
    policy = rules.policy
    found = result.found
    suffixes = policy.suffixes
    # (folder, the layers in force in its parent); a scope below the root was found not to be ignored.
    pending: list[tuple[str, Layers]] = [(str(top), () if top == root else rules.inside(top.parent) or ())]
    while pending:
        folder, above = pending.pop()
        entries = _listing(folder, seen_dirs, result)
        if entries is None:
            continue
        layers = _layers_in(folder, root, entries, above, rules)
        rel = folder[len(root_str) + 1 :]
        # Files in a hidden folder the walk entered (a convention's place) are checked against the convention.
        in_hidden = rel.startswith(".") or f"{os.sep}." in rel
        subdirs: list[tuple[str, Layers]] = []
        for entry in entries:
            name = entry.name
            try:
                is_link = entry.is_symlink()
                is_dir = entry.is_dir()
                is_file = entry.is_file()
            except OSError as exc:
                result.problems.append((entry.path, f"cannot stat ({exc.strerror})"))
                continue
            if not is_dir and not (
                (is_file or is_link)
                and (
                    is_memory_name(name)
                    or (
                        os.path.splitext(name)[1].lower() in suffixes
                        and policy.is_memory_file(Path(entry.path))
                    )
                )
            ):
                continue
            path = entry.path
            if is_link and (is_dir or is_file) and _leads_out(path, roots, result):
                continue
            if is_dir:
                if _enters(path, name, root, root_strs, excluded, in_hidden, layers, rules, result):
                    subdirs.append((path, layers))
            elif is_file:
                _take(path, folder, root, entry, layers, in_hidden, rules, found, result)
            else:
                result.problems.append((path, "broken symlink; not indexed"))
        pending.extend(reversed(subdirs))
