"""Checkpoints: the content of every memory file in a scope, plus the index-only metadata, compressed in the
database. Restoring checks every target first, then rewrites the files and re-indexes them in one transaction;
vectors come from the cache. Whatever happens half-way, the index follows what was written.
"""

from __future__ import annotations

import base64
import json
import os
import re
import subprocess
import zlib
from dataclasses import asdict, dataclass
from pathlib import Path

import apsw

from specmem.indexer import atomic, db, files, signal, store, unfinished
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder
from specmem.indexer.errors import CheckpointError, WriteError
from specmem.indexer.scan import scan

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
SHOWN_PROBLEMS = 5


@dataclass
class CheckpointInfo:
    name: str
    created_at: int
    scope: str | None
    git_branch: str | None
    git_commit: str | None
    file_count: int
    size_bytes: int
    automatic: bool


@dataclass
class RestoreReport:
    name: str
    restored: list[str]
    unchanged: int
    removed: list[str]
    newer_kept: list[str]


def _git(project: Path, *args: str) -> str | None:
    try:
        done = subprocess.run(["git", "-C", str(project), *args], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() or None if done.returncode == 0 else None


def scope_dirs(config: Config, spec_folder: str | None) -> list[tuple[Path, Path]]:
    """(root, folder) pairs a checkpoint covers: whole roots, or one spec folder in each root holding it."""
    if spec_folder is None:
        return [(r, r) for r in config.roots]
    return files.spec_folder_dirs(config.roots, spec_folder)


def _files_in(config: Config, pairs: list[tuple[Path, Path]]) -> dict[Path, Path]:
    walked = files.walk(
        config.roots,
        exclude=(config.db_path.parent,),
        scopes=tuple(f for _, f in pairs),
        policy=files.Policy.of(config),
    )
    return {path: root for path, (root, _) in walked.files.items()}


def create(
    conn: apsw.Connection,
    config: Config,
    name: str,
    *,
    spec_folder: str | None = None,
    folders: list[tuple[Path, Path]] | None = None,
    automatic: bool = False,
) -> CheckpointInfo:
    """Save every memory file in scope and its index-only metadata. Never overwrites a checkpoint.

    The scope is every root, one spec folder (by name), or `folders`: (root, folder) pairs taken from the index
    (a folder that exists, whatever its name), labelled `spec_folder`."""
    if not NAME_RE.match(name):
        raise CheckpointError(
            f"checkpoint name {name!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    pairs = folders if folders is not None else scope_dirs(config, spec_folder)
    entries = []
    size = 0
    for path, root in sorted(_files_in(config, pairs).items()):
        data = path.read_bytes()
        size += len(data)
        row = store.votes(conn, str(path))
        entries.append(
            {
                "root": str(root),
                "rel": path.relative_to(root).as_posix(),
                "data": base64.b64encode(data).decode(),
                "mode": path.stat().st_mode & 0o7777,
                "confidence": row[0] if row else None,
                "access_count": row[1] if row else None,
            }
        )
    covered = [[str(root), folder.relative_to(root).as_posix()] for root, folder in pairs]
    blob = zlib.compress(json.dumps({"scope": spec_folder, "folders": covered, "files": entries}).encode(), 6)
    info = CheckpointInfo(
        name=name,
        created_at=db.now_ms(),
        scope=spec_folder,
        git_branch=_git(config.project, "rev-parse", "--abbrev-ref", "HEAD"),
        git_commit=_git(config.project, "rev-parse", "HEAD"),
        file_count=len(entries),
        size_bytes=size,
        automatic=automatic,
    )
    with db.write_tx(conn):
        if store.has_checkpoint(conn, name):
            raise CheckpointError(
                f"a checkpoint named {name!r} exists; choose another name or delete it first"
            )
        store.add_checkpoint(conn, store.CheckpointRow(**asdict(info)), blob)
        # Checkpoints past the configured count or age go (never the one just made).
        cutoff = db.now_ms() - int(config.checkpoint_max_days * 86_400_000)
        store.retain_checkpoints(conn, cutoff, config.checkpoint_max, keep=name)
    return info


def list_all(conn: apsw.Connection) -> list[CheckpointInfo]:
    return [CheckpointInfo(**r._asdict()) for r in store.checkpoints(conn)]


def delete(conn: apsw.Connection, name: str) -> None:
    with db.write_tx(conn):
        if not store.has_checkpoint(conn, name):
            raise CheckpointError(
                f"no checkpoint named {name!r}; `specmem checkpoint list` (the checkpoint_list tool) shows them"
            )
        store.delete_checkpoint(conn, name)


def _covered(config: Config, saved: dict) -> list[tuple[Path, Path]]:
    """(root, folder) pairs a saved checkpoint covers, whether or not the folders still exist."""
    roots = {str(r): r for r in config.roots}
    if saved["scope"] is None and "folders" not in saved:
        return [(r, r) for r in config.roots]
    if "folders" in saved:  # recorded at creation
        pairs = [(roots[r], roots[r] / rel) for r, rel in saved["folders"] if r in roots]
    else:  # checkpoints of earlier versions: the spec folder in each root its files came from
        pairs = []
        for entry in saved["files"]:
            root = roots.get(entry["root"])
            if root is None:
                continue
            rel = Path(entry["rel"])
            for folder in (Path(saved["scope"]), Path("specs") / saved["scope"]):
                if files.within(rel, folder) and (root, root / folder) not in pairs:
                    pairs.append((root, root / folder))
    return [(r, f) for r, f in pairs if files.within(Path(os.path.abspath(f)), r)]


@dataclass
class _Target:
    path: Path  # as saved (below its root)
    real: Path  # where the bytes go: symlinks inside the roots followed
    data: bytes
    entry: dict


def _plan(config: Config, wanted: dict[Path, dict]) -> tuple[list[_Target], int, list[str]]:
    """What a restore would write, how many files already match, and every reason it cannot be done."""
    targets: list[_Target] = []
    unchanged = 0
    problems: list[str] = []
    seen: set[Path] = set()
    roots = [Path(os.path.realpath(r)) for r in config.roots]
    for path, entry in wanted.items():
        data = base64.b64decode(entry["data"])
        real = Path(os.path.realpath(path))
        if not any(files.within(real, r) for r in roots):
            problems.append(f"{path} leads to {real}, outside the roots (a symlink)")
            continue
        if os.path.isdir(real):
            problems.append(f"{path} is a folder now")
            continue
        blocker = next((p for p in real.parents if os.path.lexists(p) and not os.path.isdir(p)), None)
        if blocker is not None:
            problems.append(f"{blocker} is a file where {path} needs a folder")
            continue
        if real in seen:
            continue  # a symlinked memory and the file it points to: one file
        seen.add(real)
        try:
            if real.exists() and real.read_bytes() == data:
                unchanged += 1
                continue
        except OSError as exc:
            problems.append(atomic.describe(exc, path, "read"))
            continue
        targets.append(_Target(path, real, data, entry))
    return targets, unchanged, problems


def restore(
    conn: apsw.Connection, config: Config, embedder: Embedder, name: str, *, clear_newer: bool = False
) -> RestoreReport:
    """Rewrite the files of a checkpoint, re-index them in one transaction and bring back their metadata.

    Every target is checked first (inside the roots, not a folder, its folders not files); any problem refuses
    the whole restore before a byte is written. Should writing fail half-way (a full disk), the index still
    follows what was written and the error says how far it got."""
    data = store.checkpoint_data(conn, name)
    if data is None:
        raise CheckpointError(
            f"no checkpoint named {name!r}; `specmem checkpoint list` (the checkpoint_list tool) shows them"
        )
    saved = json.loads(zlib.decompress(data))
    report = RestoreReport(name=name, restored=[], unchanged=0, removed=[], newer_kept=[])
    roots = {str(r): r for r in config.roots}
    wanted: dict[Path, dict] = {}
    for entry in saved["files"]:
        root = roots.get(entry["root"])
        if root is None:
            raise CheckpointError(f"the checkpoint covers {entry['root']}, which is no longer a root")
        path = root / entry["rel"]
        if not files.within(Path(os.path.abspath(path)), root):
            raise CheckpointError(f"the checkpoint names {entry['rel']}, outside its root; refusing it")
        wanted[path] = entry
    pairs = _covered(config, saved)
    scopes = tuple(f for _, f in pairs)
    current = _files_in(config, pairs) if pairs else {}
    targets, report.unchanged, problems = _plan(config, wanted)
    if problems:
        more = f" (and {len(problems) - SHOWN_PROBLEMS} more)" if len(problems) > SHOWN_PROBLEMS else ""
        raise CheckpointError(
            f"cannot restore {name!r}: {'; '.join(problems[:SHOWN_PROBLEMS])}{more}. Nothing was changed; "
            "move these out of the way and restore again"
        )
    extra = sorted(set(current) - set(wanted))
    # A symlinked memory is restored in the file it points to, which may lie in another folder.
    scopes += tuple(t.real for t in targets if not any(files.within(t.real, f) for f in scopes))
    key = unfinished.begin(conn, scopes)
    failure: WriteError | None = None
    try:
        for target in targets:
            with atomic.open_folder(target.real.parent, config.roots, create=True) as place:
                place.replace(target.real.name, target.data, mode=target.entry["mode"])
            report.restored.append(str(target.path))
        for path in extra:
            if clear_newer:
                with atomic.open_folder(path.parent, config.roots) as place:
                    place.unlink(path.name)
                report.removed.append(str(path))
            else:
                report.newer_kept.append(str(path))
    except WriteError as exc:
        failure = exc

    def metadata(c: apsw.Connection) -> None:
        unfinished.end(c, key)
        for path, entry in wanted.items():
            if entry["confidence"] is not None:
                store.set_votes(c, str(path), entry["confidence"], entry["access_count"])

    scan(conn, config, embedder, scopes=scopes, embed=False, one_transaction=True, finalize=metadata)
    signal.touch(config.signal_path)
    if failure is not None:
        raise CheckpointError(
            f"restored {len(report.restored)} of {len(targets)} files of {name!r}, then: {failure}. "
            "The index shows the files as they are now; fix that and restore again"
        ) from failure
    return report
