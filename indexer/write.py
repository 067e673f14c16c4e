"""Writing memory files: the file first (atomically), then the index follows through a scoped scan.

A new file never overwrites another: its name is claimed with a hard link from a finished temporary file, which
fails if the name exists. An update rewrites only the frontmatter lines of the keys it changes; everything else
(body, key order, comments, unknown keys, line endings) stays byte for byte. `save` is the write workflow: a
draft (draft.py) written, or, when the spec folder already says the same, skipped or merged into the duplicate.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Literal

import apsw

from specmem.indexer import atomic, checkpoints, db, files, store, tiers, unfinished
from specmem.indexer.config import Config
from specmem.indexer.draft import (
    Draft,
    Duplicate,
    OnDuplicate,
    clean,
    content_key,
    metadata,
    validate_fields,
    yaml_value,
)
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import NotFound, SpecmemError, WriteError
from specmem.indexer.parse import parse, split_lines
from specmem.indexer.scan import ScanReport, scan

UPDATE_ATTEMPTS = 20  # reads and replaces tried while another program keeps writing the file
# Frontmatter keys the write tools manage, with the spellings the parser accepts (first = the one written).
KEYS = {
    "title": ("title",),
    "importance_tier": ("importance_tier", "importanceTier"),
    "context_type": ("context_type", "contextType"),
    "trigger_phrases": ("trigger_phrases", "triggerPhrases"),
    "tags": ("tags",),
    "cites_checked": ("cites_checked",),  # set when a memory's citations are confirmed (indexer/citations.py)
}


def spec_memory_dir(config: Config, spec_folder: str) -> Path:
    """`<spec folder>/memory`, in the root that already holds the spec folder (else the first root)."""
    found = files.spec_folder_dirs(config.roots, spec_folder, must_exist=False)
    _, folder = found[0] if found else (config.roots[0], config.roots[0] / spec_folder)
    return folder / "memory"


def slug(title: str) -> str:
    ascii_title = unicodedata.normalize("NFKD", title).encode("ascii", "ignore").decode()
    text = re.sub(r"[^a-z0-9]+", "-", ascii_title.lower()).strip("-")
    return text[:60].rstrip("-") or "memory"


def index_now(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    paths: tuple[Path, ...],
    finalize: Callable[[apsw.Connection], None] | None = None,
) -> ScanReport:
    return scan(conn, config, embedder, scopes=paths, embed=False, finalize=finalize)


def write_memory(
    conn: apsw.Connection, config: Config, embedder: Embedder, draft: Draft, *, today: dt.date | None = None
) -> tuple[int, Path]:
    """Create a new memory file and index it; returns (id, path)."""
    data = draft.encoded(config.max_file_bytes)
    folder = spec_memory_dir(config, draft.spec_folder)
    stem = f"{(today or dt.date.today()).isoformat()}-{slug(draft.title)}"
    names = (f"{stem}.md" if n == 1 else f"{stem}-{n}.md" for n in range(1, 10_000))
    key = unfinished.begin(conn, (folder,))
    try:
        place = atomic.open_folder(folder, config.roots, create=True)
        try:
            name = place.create(names, data)
            if name is None:
                raise WriteError(f"too many files named {stem}*.md in {folder}; nothing was written")
        except BaseException:
            place.discard_created()
            place.close()
            raise
    except SpecmemError:
        unfinished.cancel(conn, key)
        raise
    with place:
        path = folder / name
        written = place.lstat(name)
        try:
            report = index_now(conn, config, embedder, (path,), finalize=lambda c: unfinished.end(c, key))
            mid = store.memory_id_at(conn, str(path))
            if mid is None:
                why = "; ".join(m for p, m in report.problems if files.within(path, Path(p))) or (
                    "its folder is excluded by .gitignore or .specmemignore, or leads out of the roots"
                )
                raise WriteError(f"{path} would not be indexed ({why}); choose another spec folder")
        except BaseException as exc:
            # The write did not complete: take back the file (if it is still the one written here).
            try:
                if written is not None:
                    place.unlink_if(name, written)
                place.discard_created()
                unfinished.cancel(conn, key)
            except SpecmemError as undo:
                raise WriteError(
                    f"{path} was written but not indexed ({exc}), and could not be removed ({undo}); "
                    "the next scan indexes it"
                ) from exc
            if isinstance(exc, SpecmemError):
                raise WriteError(f"nothing was written: {exc}") from exc
            raise
    return mid, path


# -- updating frontmatter in place ------------------------------------------------------------------------------


def update_frontmatter(text: str, changes: dict[str, Any]) -> str:
    """`text` with the given frontmatter keys set, touching no other byte. Keys: those of KEYS."""
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines(keepends=True)
    if lines and lines[0].rstrip("\r\n") == "+++":
        raise WriteError(
            "TOML frontmatter (+++) is not updated in place; edit the file by hand or convert it"
        )
    if not lines or lines[0].rstrip("\r\n") != "---":
        block = "".join(f"{KEYS[k][0]}: {yaml_value(v)}{nl}" for k, v in changes.items() if v is not None)
        return f"---{nl}{block}---{nl}{text}"
    end = next((i for i in range(1, len(lines)) if lines[i].rstrip("\r\n") in ("---", "...")), None)
    if end is None:
        raise WriteError("the frontmatter is never closed; fix the file before updating it")
    for key, value in changes.items():
        span = _key_span(lines, end, KEYS[key])
        if span is None:
            if value is None:
                continue
            lines.insert(end, f"{KEYS[key][0]}: {yaml_value(value)}{nl}")
            end += 1
            continue
        first, stop, name = span
        if value is None:
            del lines[first:stop]
            end -= stop - first
            continue
        new = _render_key(name, value, lines[first:stop], nl)
        lines[first:stop] = new
        end += len(new) - (stop - first)
    return "".join(lines)


def _key_span(lines: list[str], end: int, names: tuple[str, ...]) -> tuple[int, int, str] | None:
    """Lines [first, stop) holding a top-level key (its line and its indented or list continuation lines)."""
    for i in range(1, end):
        m = re.match(r"^([A-Za-z_][\w]*)\s*:", lines[i])
        if m and m.group(1) in names:
            stop = i + 1
            while stop < end and (lines[stop][:1] in (" ", "\t") or lines[stop].startswith("- ")):
                stop += 1
            return i, stop, m.group(1)
    return None


def _render_key(name: str, value: Any, old: list[str], nl: str) -> list[str]:
    """New lines for a key, in the old style: block lists stay block lists, an inline comment is kept."""
    if isinstance(value, list) and len(old) > 1:
        item = re.match(r"^(\s*-\s*)", old[1])
        prefix = item.group(1) if item else "  - "
        return [f"{name}:{nl}"] + [f"{prefix}{yaml_value(v)}{nl}" for v in value]
    comment = re.search(r"\s+#[^'\"\n]*$", old[0].rstrip("\r\n")) if len(old) == 1 else None
    return [f"{name}: {yaml_value(value)}{comment.group(0) if comment else ''}{nl}"]


def _set_keys(raw: bytes, changes: dict[str, Any], name: str) -> tuple[list[str], bytes]:
    """The changed keys and the new bytes of a memory file (its other bytes untouched)."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise WriteError(f"{name} is not UTF-8 text; it cannot be updated in place") from None
    bom = "\ufeff" if text.startswith("\ufeff") else ""
    text = text[len(bom) :]
    before = metadata(raw, name)
    wanted = {k: v for k, v in changes.items() if v is not None and before.get(k) != v}
    if not wanted:
        return [], raw
    updated = (bom + update_frontmatter(text, wanted)).encode("utf-8")
    after = metadata(updated, name)
    if any(after[k] != v for k, v in wanted.items()):
        raise WriteError("the updated frontmatter would not read back as asked; the file was left unchanged")
    return sorted(wanted), updated


def update_memory(
    conn: apsw.Connection, config: Config, embedder: Embedder, path: Path, changes: dict[str, Any]
) -> list[str]:
    """Set frontmatter keys of one memory file (atomically) and re-index it; returns the keys that changed.

    The file is replaced only if it still holds what was read (else read again, a few times): an editor writing
    at the same moment loses nothing. A symlinked memory is updated in the file it points to; a hard-linked one
    in place, so that every name keeps seeing it."""
    validate_fields(
        changes.get("title"),
        changes.get("importance_tier"),
        {k: v for k, v in changes.items() if isinstance(v, str)},
    )
    for key in ("trigger_phrases", "tags"):
        for item in changes.get(key) or []:
            clean(key, item)
    path = Path(path)
    return rewrite_memory(conn, config, embedder, path, lambda raw: _set_keys(raw, changes, path.name))


Rewrite = Callable[[bytes], tuple[list[str], bytes]]


def rewrite_memory(
    conn: apsw.Connection, config: Config, embedder: Embedder, path: Path, rewrite: Rewrite
) -> list[str]:
    """Replace one memory file's content by `rewrite(current bytes)` → (what changed, new bytes), atomically,
    and re-index it. The file is replaced only if it still holds what was read (else read again, a few times),
    and what an editor appended meanwhile to the old file is carried over by rewriting it too."""
    key = unfinished.begin(conn, (path,))
    try:
        changed, place, previous = _replace(config, path, rewrite)
    except SpecmemError:
        unfinished.cancel(conn, key)
        raise
    try:
        try:
            index_now(conn, config, embedder, (path,), finalize=lambda c: unfinished.end(c, key))
        except SpecmemError as exc:
            raise WriteError(
                f"{path} was updated on disk ({', '.join(changed) or 'no change'}), but the index could not "
                f"follow: {exc}; the next scan (or the watcher) indexes it"
            ) from exc
        # An editor that opened the file just before it was replaced may have written to the old one since.
        if previous is not None and previous.settle(lambda data: rewrite(data)[1]):
            index_now(conn, config, embedder, (path,))
    finally:
        if previous is not None:
            previous.close()
        if place is not None:
            place.close()
    return changed


def _replace(
    config: Config, path: Path, rewrite: Rewrite
) -> tuple[list[str], atomic.Folder | None, atomic.Previous | None]:
    """Replace the file with its rewritten content, reading it again while another program keeps writing it."""
    for _ in range(UPDATE_ATTEMPTS):
        real = Path(os.path.realpath(path))
        place = atomic.open_folder(real.parent, config.roots)
        try:
            raw = place.read(real.name)
            changed, updated = rewrite(raw)
            if not changed:
                place.close()
                return [], None, None
            return changed, place, place.replace(real.name, updated, expected=raw)
        except atomic.Changed:
            place.close()
        except BaseException:
            place.close()
            raise
    raise WriteError(
        f"{path} kept changing while being updated (another program is writing it); nothing was changed: "
        "try again once it is saved"
    )


def delete_files(
    conn: apsw.Connection, config: Config, embedder: Embedder, paths: list[Path], scopes: tuple[Path, ...]
) -> ScanReport:
    """Remove memory files and re-index their scopes (the rows go in one transaction with their chunks).

    A file is removed through its folder, reached from a root without following symlinks: a folder swapped for
    a symlink never leads the delete outside the roots. A symlinked memory loses the link, not its target."""
    key = unfinished.begin(conn, scopes)
    removed: list[Path] = []
    try:
        for path in paths:
            with atomic.open_folder(path.parent, config.roots) as place:
                place.unlink(path.name)
            removed.append(path)
    except SpecmemError as exc:
        index_now(conn, config, embedder, scopes, finalize=lambda c: unfinished.end(c, key))
        done = f"{len(removed)} of {len(paths)} files were deleted" if removed else "nothing was deleted"
        raise WriteError(f"{done}: {exc}") from exc
    try:
        return index_now(conn, config, embedder, scopes, finalize=lambda c: unfinished.end(c, key))
    except SpecmemError as exc:
        raise WriteError(
            f"{len(paths)} files were deleted, but the index could not follow: {exc}; the next scan removes them"
        ) from exc


def delete_memory(
    conn: apsw.Connection, config: Config, embedder: Embedder, path: Path
) -> tuple[list[Path], str]:
    """Delete one memory file after an automatic checkpoint of its spec folder (the first folder below its root,
    whatever its name); returns (deleted files, the checkpoint that undoes it)."""
    path = Path(os.path.abspath(path))
    root = files.root_of(path, config.roots)
    if root is None:
        raise WriteError(f"{path} is outside the memory roots; give a memory inside them")
    rel = path.relative_to(root)
    first = rel.parts[0] if len(rel.parts) > 1 else None
    name = _auto_name()
    checkpoints.create(
        conn,
        config,
        name,
        spec_folder=first,
        folders=[(root, root / first if first else root)],
        automatic=True,
    )
    delete_files(conn, config, embedder, [path], (path,))
    return [path], name


def delete_spec_folder(
    conn: apsw.Connection, config: Config, embedder: Embedder, spec_folder: str
) -> tuple[list[Path], str]:
    """Delete every memory of a spec folder (in each root holding it) after an automatic checkpoint of it."""
    pairs = checkpoints.scope_dirs(config, spec_folder)
    folders = tuple(f for _, f in pairs)
    walked = files.walk(
        config.roots, exclude=(config.db_path.parent,), scopes=folders, policy=files.Policy.of(config)
    )
    targets = sorted(walked.files)
    name = _auto_name()
    checkpoints.create(conn, config, name, spec_folder=spec_folder, folders=pairs, automatic=True)
    delete_files(conn, config, embedder, targets, folders)
    return targets, name


def _auto_name() -> str:
    return f"auto-delete-{db.now_ms()}-{os.getpid()}"


# -- rewriting a memory with a draft (a duplicate updated) ------------------------------------------------


def replace_body(
    conn: apsw.Connection, config: Config, embedder: Embedder, path: Path, draft: Draft
) -> list[str]:
    """Rewrite an existing memory with a draft: its body becomes the draft's and its title the draft's; trigger
    phrases and tags are merged, the tier is the more important of the two, every other key and comment of
    the frontmatter stays. Returns what changed. The caller checkpoints the file first."""
    draft.validate()

    def rewrite(raw: bytes) -> tuple[list[str], bytes]:
        bom = "\ufeff" if raw.startswith(b"\xef\xbb\xbf") else ""
        try:
            text = raw.decode("utf-8")[len(bom) :]
        except UnicodeDecodeError:
            raise WriteError(f"{path} is not UTF-8 text; it cannot be updated in place") from None
        before = parse(raw, PurePosixPath(path.name))
        current = {
            "title": before.title,
            "importance_tier": before.tier,
            "context_type": before.context_type,
            "trigger_phrases": before.trigger_phrases,
            "tags": before.tags,
        }
        wanted = {
            "title": draft.title,
            "importance_tier": min(before.tier, draft.tier, key=tiers.rank),
            "context_type": before.context_type or draft.context_type,
            "trigger_phrases": list(dict.fromkeys([*before.trigger_phrases, *draft.trigger_phrases])),
            "tags": list(dict.fromkeys([*before.tags, *draft.tags])),
        }
        changes = {k: v for k, v in wanted.items() if v is not None and v != current[k]}
        nl = "\r\n" if "\r\n" in text else "\n"
        lines = split_lines(text)
        head = "".join(line + nl for line in lines[: before.body_start])
        body = draft.body
        new_body = nl.join(split_lines(body.rstrip("\n"))) + nl
        if changes:
            head = update_frontmatter(head, changes)
        body_changed = content_key("\n".join(lines[before.body_start :])) != content_key(body)
        return sorted(changes) + (["body"] if body_changed else []), (bom + head + new_body).encode("utf-8")

    return rewrite_memory(conn, config, embedder, path, rewrite)


# -- the write workflow -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Outcome:
    """What `save` did with a draft: written, an existing memory updated, or nothing (a duplicate, skipped)."""

    id: int
    path: str
    action: Literal["written", "updated", "skipped"]
    duplicates: list[Duplicate]
    changed: list[str] = field(default_factory=list)  # updated: what changed
    warnings: list[str] = field(default_factory=list)
    checkpoint: str | None = None  # updated: restore it to undo


def save(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    draft: Draft,
    found: list[Duplicate],
    on_duplicate: OnDuplicate | None = None,
) -> Outcome:
    """Write a draft, given the memories of its spec folder that already say the same (`found`, strongest first:
    server/duplicates.py). `on_duplicate` decides: "skip" returns the strongest duplicate and writes nothing;
    "update" checkpoints the duplicate's folder, then rewrites it with the draft (`replace_body`); "write"
    writes a new file, with a warning per duplicate. By default an exact duplicate (same content) is skipped
    and anything else written."""
    action = on_duplicate or ("skip" if any(d.kind == "same content" for d in found) else "write")
    if found and action == "skip":
        return Outcome(found[0].id, found[0].path, "skipped", found)
    if found and action == "update":
        return _update(conn, config, embedder, draft, found)
    mid, path = write_memory(conn, config, embedder, draft)
    warnings = [
        f"{d.kind}: memory {d.id} ({d.title}) may already say this; "
        'update it with on_duplicate="update" instead of keeping two'
        for d in found
    ]
    return Outcome(mid, str(path), "written", found, warnings=warnings)


def _update(
    conn: apsw.Connection, config: Config, embedder: Embedder, draft: Draft, found: list[Duplicate]
) -> Outcome:
    """Rewrite the strongest duplicate with the draft, after an automatic checkpoint of its spec folder (the
    first folder below its root)."""
    target = found[0]
    path = Path(target.path)
    root = files.root_of(path, config.roots)
    if root is None or not files.inside_roots(path, config.roots):
        raise NotFound(f"{path} is outside the configured roots; it is not served")
    rel = path.relative_to(root)
    name = f"auto-update-{db.now_ms()}-{os.getpid()}"
    checkpoints.create(
        conn, config, name, spec_folder=rel.parts[0] if len(rel.parts) > 1 else None, automatic=True
    )
    changed = replace_body(conn, config, embedder, path, draft)
    return Outcome(target.id, str(path), "updated", found, changed=changed, checkpoint=name)
