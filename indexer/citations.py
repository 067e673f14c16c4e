"""Citations of code: resolved in the repository, baselined, and checked against the working tree. It decides what
the `citations` and `cited_files` tables hold; their SQL is in the storage seam (indexer/store.py writes them,
server/reads.py reads them for server/citations.py). Call the writing functions inside `db.write_tx` where they
say so.

1. `prepare` (outside any transaction, once per batch of memories being indexed): each memory's citations
   (cites.py) resolved from its folder, then from the repository top; the baseline read from git (the cited file
   at the commit that last changed the memory, when the memory is committed as it is on disk) or else from the
   working tree; and each span's status now.
2. `save` (in the batch's transaction): a memory's citations replace its old ones.
3. `refresh` (after the batches): cited files whose stat changed are read and hashed, like memory files; only
   those whose content changed have their citations checked again. Memories baselined from the working tree that
   were committed since get their git baseline.

A citation never leads out of its repository: a path that climbs out of it, or a symlink that points out of it,
is refused with a warning on the memory and never read. See specs/009-citations/spec.md.
"""

from __future__ import annotations

import json
import os
import posixpath
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Protocol, cast

import apsw
import xxhash

from specmem.indexer import db, gitrepo, spans, store
from specmem.indexer.cited import Baseline, Look, is_binary, judge, lines_of, look
from specmem.indexer.cites import Cite, anchor_text, extract
from specmem.indexer.config import Config
from specmem.indexer.errors import WriteError
from specmem.indexer.files import within
from specmem.indexer.parse import ParsedFile, parse
from specmem.indexer.spans import Now, Status, Then
from specmem.indexer.store import CitationRecord, FileStat

WORKTREE = "worktree"
GIT_STAMP_KEY = "citations_git_stamps"


class Source(Protocol):
    """What baselining needs of a memory being indexed (store.Prepared has it)."""

    path: Path
    digest: str
    parsed: ParsedFile
    warnings: list[str]


@dataclass
class _Source:
    path: Path
    digest: str
    parsed: ParsedFile
    warnings: list[str]


@dataclass
class Row:
    """One citation, ready to store."""

    seq: int
    cite: Cite
    path: str  # relative to the repository top, with `/`
    file: str  # absolute
    baseline: Baseline
    now: Now


@dataclass
class Batch:
    rows: dict[str, list[Row]] = field(default_factory=dict)  # memory path → its citations
    looks: dict[str, Look] = field(default_factory=dict)  # cited file → as read


CACHED_CHARS = 64 * 1024 * 1024  # cited files' text one scan keeps between its batches


@dataclass
class Cache:
    """What the batches of one scan share: repositories and what git said, resolved paths, and the cited files
    as read (up to CACHED_CHARS of text), so that a file cited from every batch is read once."""

    tops: dict[Path, tuple[Path, bool]] = field(default_factory=dict)
    repos: dict[Path, gitrepo.Repo] = field(default_factory=dict)
    real: dict[str, str] = field(default_factory=dict)
    looks: dict[str, Look] = field(default_factory=dict)
    chars: int = 0

    def realpath(self, path: str) -> str:
        found = self.real.get(path)
        if found is None:
            found = self.real[path] = os.path.realpath(path)
        return found

    def look(self, file: str, top: Path, limit: int) -> Look:
        found = self.looks.get(file)
        if found is None:
            found = look(file, str(top), limit, real=self.realpath(file), real_top=str(top))
            size = sum(map(len, found.lines or ()))
            if self.chars + size <= CACHED_CHARS:
                self.looks[file] = found
                self.chars += size
        return found

    def repo(self, top: Path) -> gitrepo.Repo:
        if top not in self.repos:
            self.repos[top] = gitrepo.Repo(top)
        return self.repos[top]


# -- resolving and baselining (outside any transaction) -----------------------------------------------------------


@dataclass
class _Memory:
    prep: Source
    cites: list[Cite]
    top: Path  # the repository top (realpath), or the project folder outside git
    folder: str  # the memory's folder relative to the top
    git: bool


def _top(folder: Path, config: Config, cache: dict[Path, tuple[Path, bool]]) -> tuple[Path, bool]:
    """The repository holding a memory's (real) folder and whether it is a git work tree; outside git, the
    project folder (or the folder itself when it lies outside the project)."""
    if folder not in cache:
        found = gitrepo.top_of(folder)
        if found is not None:
            cache[folder] = (found, True)
        else:
            project = Path(os.path.realpath(config.project))
            cache[folder] = (project if within(folder, project) else folder, False)
    return cache[folder]


def _candidates(cite: Cite, folder: str) -> list[str]:
    """Where a citation may point, relative to the repository top, in the order tried (see Cite); paths that
    climb out of the repository are left out."""
    raw = cite.path.replace("\\", "/")
    if raw.startswith("/"):
        found = [raw.lstrip("/")]
    elif cite.kind == "link":
        found = [posixpath.join(folder, raw), raw]
    else:
        found = [raw, posixpath.join(folder, raw)]
    out = []
    for candidate in found:
        norm = posixpath.normpath(candidate)
        if norm in (".", "") or norm == ".." or norm.startswith("../") or norm.startswith("/"):
            continue
        out.append(norm)
    return list(dict.fromkeys(out))


def _read_memory(path: Path, digest: str, limit: int) -> bytes | None:
    """The memory file's bytes, if they are still those indexed (else it changed since: no git baseline)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read(limit + 1)
    except OSError:
        return None
    if len(data) > limit or xxhash.xxh3_128_hexdigest(data) != digest:
        return None
    return data


def prepare(preps: Sequence[Source], config: Config, cache: Cache | None = None) -> Batch:
    """Each memory's citations, resolved, baselined and checked. Warnings about them are added to the memory's.
    `cache`: shared by the batches of one scan."""
    out = Batch()
    cache = cache or Cache()
    memories: list[_Memory] = []
    for prep in preps:
        out.rows[str(prep.path)] = []
        if prep.parsed.binary:
            continue
        cites, warnings = extract(prep.parsed)
        prep.warnings.extend(warnings)
        if not cites:
            continue
        real_folder = Path(cache.realpath(str(prep.path.parent)))
        top, git = _top(real_folder, config, cache.tops)
        folder = real_folder.relative_to(top).as_posix() if real_folder != top else ""
        memories.append(_Memory(prep, cites, top, folder, git))
    by_top: dict[Path, list[_Memory]] = defaultdict(list)
    for memory in memories:
        by_top[memory.top].append(memory)
    for top, group in by_top.items():
        _prepare_repo(top, group, config, out, cache)
    return out


def _prepare_repo(top: Path, group: list[_Memory], config: Config, out: Batch, cache: Cache) -> None:
    repo = cache.repo(top) if group[0].git else None
    now_ms = db.now_ms()
    commits: dict[str, gitrepo.Commit] = {}
    if repo is not None:
        on_disk = {}
        for m in group:
            data = _read_memory(m.prep.path, m.prep.digest, config.max_file_bytes)
            if data is not None:
                on_disk[posixpath.join(m.folder, m.prep.path.name)] = data
        commits = repo.commits_of(on_disk)
    # What each memory's baseline is, and which files of which commits that needs.
    sources: dict[int, gitrepo.Commit | None] = {
        id(m): commits.get(posixpath.join(m.folder, m.prep.path.name)) for m in group
    }
    candidates = {id(cite): _candidates(cite, m.folder) for m in group for cite in m.cites}
    wanted = {
        (c.sha, cand)
        for m in group
        if (c := sources[id(m)]) is not None
        for cite in m.cites
        for cand in candidates[id(cite)]
    }
    sizes = repo.sizes(wanted) if repo is not None and wanted else {}
    small = [obj for obj, size in sizes.items() if size is not None and size <= config.max_file_bytes]
    blobs = repo.read(small) if repo is not None and small else {}
    then_lines: dict[tuple[str, str], list[str]] = {}
    for m in group:
        commit = sources[id(m)]
        rows: list[Row] = []
        for cite in m.cites:
            found = candidates[id(cite)]
            row = _resolve(
                cite, found, m, top, commit, sizes, blobs, then_lines, config, out, cache, now_ms, len(rows)
            )
            if row is not None:
                rows.append(row)
        out.rows[str(m.prep.path)] = rows


def _resolve(
    cite: Cite,
    candidates: list[str],
    m: _Memory,
    top: Path,
    commit: gitrepo.Commit | None,
    sizes: dict[tuple[str, str], int | None],
    blobs: dict[tuple[str, str], bytes],
    then_lines: dict[tuple[str, str], list[str]],
    config: Config,
    out: Batch,
    cache: Cache,
    now_ms: int,
    seq: int,
) -> Row | None:
    where = "in the frontmatter" if cite.kind == "frontmatter" else f"line {cite.line}"
    if not candidates:
        m.prep.warnings.append(
            f"citation {cite.target!r} ({where}) leads outside the repository {top}; it is not read"
        )
        return None

    def exists(rel: str) -> bool:
        if commit is not None:
            return sizes.get((commit.sha, rel)) is not None
        full = top / rel
        return os.path.lexists(full) and not os.path.isdir(full)

    chosen = next((c for c in candidates if exists(c)), None)
    if chosen is None:
        if not cite.explicit:
            return None  # a path in prose that names no file
        chosen = candidates[0]
    file = f"{top}/{chosen}"
    if not within(cache.realpath(file), str(top)):
        m.prep.warnings.append(
            f"citation {cite.target!r} ({where}) leads outside the repository {top} through a symlink; it is not "
            "read"
        )
        return None
    current = out.looks.get(file)
    if current is None:
        current = out.looks[file] = cache.look(file, top, config.max_file_bytes)
    if commit is not None:
        baseline = _from_git(cite, commit, chosen, sizes, blobs, then_lines, config)
    else:
        baseline = _from_worktree(cite, current, now_ms)
    return Row(seq, cite, chosen, file, baseline, judge(baseline, current, chosen))


def _span(cite: Cite, lines: list[str], source: str, at_ms: int) -> Baseline:
    start, end = (None, None) if is_binary(lines) else (cite.start, cite.end)
    then = spans.take(lines, start, end)
    if then is None:
        why = f"lines {cite.start}-{cite.end} were past the end of the file ({len(lines)} lines) when the memory was written"
        return Baseline(source, at_ms, None, ("missing", why))
    return Baseline(source, at_ms, then)


def _from_git(
    cite: Cite,
    commit: gitrepo.Commit,
    rel: str,
    sizes: dict[tuple[str, str], int | None],
    blobs: dict[tuple[str, str], bytes],
    then_lines: dict[tuple[str, str], list[str]],
    config: Config,
) -> Baseline:
    source = f"git {commit.sha}"
    size = sizes.get((commit.sha, rel))
    if size is None:
        return Baseline(
            source, commit.time_ms, None, ("changed", "the file was not in the commit of the memory")
        )
    if (commit.sha, rel) not in blobs:
        why = f"{size / 1e6:.1f} MB in git, over the {config.max_file_bytes / 1e6:.1f} MB limit; not read"
        return Baseline(source, commit.time_ms, None, ("unchecked", why))
    key = (commit.sha, rel)
    if key not in then_lines:
        then_lines[key] = lines_of(blobs[key])
    return _span(cite, then_lines[key], source, commit.time_ms)


def _from_worktree(cite: Cite, current: Look, now_ms: int) -> Baseline:
    if current.lines is None:
        why = "the file was not there when the memory was indexed" if current.missing else current.problem
        return Baseline(WORKTREE, now_ms, None, ("changed" if current.missing else "unchecked", why or ""))
    return _span(cite, current.lines, WORKTREE, now_ms)


# -- storing (inside write_tx) --------------------------------------------------------------------------------------


def _then_json(then: Then | None) -> str | None:
    if then is None:
        return None
    return json.dumps(
        {
            "start": then.start,
            "end": then.end,
            "digest": then.digest,
            "lines": then.lines,
            "before": then.before,
            "after": then.after,
        },
        ensure_ascii=False,
    )


def _then_of(text: str | None) -> Then | None:
    if text is None:
        return None
    d = json.loads(text)
    return Then(d["start"], d["end"], d["digest"], d["lines"], d["before"], d["after"])


def _record(row: Row) -> CitationRecord:
    b, n, c = row.baseline, row.now, row.cite
    why = b.why or (None, None)
    return CitationRecord(
        row.seq,
        c.line,
        c.target,
        row.path,
        row.file,
        c.start,
        c.end,
        b.source,
        b.at_ms,
        _then_json(b.then),
        why[0],
        why[1],
        n.status,
        n.start,
        n.end,
        n.diff,
        n.note,
    )


def supported(conn: apsw.Connection) -> bool:
    """Whether the index keeps citations (an engine without the tables, PostgreSQL for now, skips them)."""
    return db.has_table(conn, "citations")


def save(conn: apsw.Connection, memory_id: int, rows: list[Row]) -> None:
    """Replace one memory's citations. Call inside write_tx."""
    store.store_citations(conn, memory_id, [_record(row) for row in rows])


def save_of(conn: apsw.Connection, memory_id: int, batch: Batch | None, path: str) -> None:
    """`save` the citations of the memory at `path` prepared in `batch`; nothing when there is no batch (an
    engine that keeps no citations). Call inside write_tx."""
    if batch is not None:
        save(conn, memory_id, batch.rows[path])


def save_looks_of(conn: apsw.Connection, batch: Batch | None) -> None:
    """`save_looks` of a batch, if any. Call inside write_tx."""
    if batch is not None:
        save_looks(conn, batch.looks)


def save_looks(conn: apsw.Connection, looks: dict[str, Look]) -> None:
    """Record the stat and hash of cited files just read, so the next look can skip them. Call inside write_tx."""
    store.record_cited_files(
        conn, [(file, seen.stat or FileStat(-1, -1), seen.digest) for file, seen in looks.items()]
    )


# -- refreshing (after a scan's batches) ------------------------------------------------------------------------------


def refresh(
    conn: apsw.Connection, config: Config, files: Iterable[str] | None = None, *, tidy: bool = False
) -> int:
    """Check the citations of cited files whose content changed (all cited files, or only `files`); `tidy` also
    drops the records of files no memory cites any more. Returns how many citations changed status."""
    recorded = store.cited_files(conn, None if files is None else list(dict.fromkeys(str(f) for f in files)))
    seen: dict[str, Look] = {}
    stat_only: dict[str, Look] = {}
    for file in _stat_changed(recorded):
        top = _top_of_row(conn, file)
        if top is None:
            continue
        current = look(file, top, config.max_file_bytes)
        if current.digest is not None and current.digest == store.cited_file_hash(conn, file):
            stat_only[file] = current
        else:
            seen[file] = current
    changed = 0
    if seen or stat_only or tidy:
        updates = _recheck(conn, seen)
        with db.write_tx(conn):
            store.update_citation_states(
                conn, [(cid, n.status, n.start, n.end, n.diff, n.note) for cid, n in updates]
            )
            changed = len(updates)
            save_looks(conn, {**stat_only, **seen})
            if tidy:
                store.forget_uncited_files(conn)
    return changed


def _stat_changed(rows: Iterable[tuple[str, int, int, int, int]]) -> list[str]:
    """The cited files whose stat is not the one recorded. This is the whole cost of a no-op rescan's citations:
    a stat per cited file, compared field by field without building an object
    (specs/009-citations/memory/rescan-cost.md)."""
    changed = []
    stat = os.stat
    for file, size, mtime_ns, ctime_ns, inode in rows:
        try:
            st = stat(file)
        except OSError:
            if size != -1:  # -1: there was no file then either
                changed.append(file)
            continue
        if (
            st.st_mtime_ns != mtime_ns
            or st.st_size != size
            or st.st_ctime_ns != ctime_ns
            or st.st_ino != inode
        ):
            changed.append(file)
    return changed


def _top_of_row(conn: apsw.Connection, file: str) -> str | None:
    """The repository top of a cited file: its absolute path less its path in the repository."""
    rel = store.cited_path(conn, file)
    if rel is None:
        return None
    return file[: len(file) - len(rel) - 1] if file.endswith("/" + rel) else None


def _recheck(conn: apsw.Connection, seen: dict[str, Look]) -> list[tuple[int, Now]]:
    updates: list[tuple[int, Now]] = []
    for file, current in seen.items():
        for cid, row in store.citations_of_file(conn, file):
            why = (cast(Status, row.span_status), row.span_note or "") if row.span_status else None
            baseline = Baseline(row.baseline, row.baseline_at, _then_of(row.span), why)
            now = judge(baseline, current, row.path)
            if (now.status, now.start, now.end, now.diff, now.note) != (
                row.status,
                row.now_start,
                row.now_end,
                row.diff,
                row.note,
            ):
                updates.append((cid, now))
    return updates


def memory_rows(conn: apsw.Connection, memory_id: int) -> list[CitationRecord]:
    """One memory's citations as stored (what a re-baseline rewrites)."""
    return [row for _, row in store.citations_of_memory(conn, memory_id)]


# -- memories committed since they were indexed ---------------------------------------------------------------------


def adopt_commits(conn: apsw.Connection, config: Config) -> int:
    """Memories baselined from the working tree that have been committed (as they are on disk) since: their
    citations now take the baseline a rebuild would give them. Asks git only when its index or HEAD changed since
    the last look. Returns how many memories changed baseline."""
    rows = store.worktree_baselined(conn, WORKTREE)
    if not rows:
        return 0
    tops: dict[Path, tuple[Path, bool]] = {}
    by_top: dict[Path, list[tuple[int, str, str]]] = defaultdict(list)
    for row in rows:
        top, git = _top(Path(os.path.realpath(Path(row[1]).parent)), config, tops)
        if git:
            by_top[top].append(row)
    before = json.loads(db.get_config(conn, GIT_STAMP_KEY) or "{}")
    stamps = {str(top): gitrepo.stamp(top) for top in by_top}
    moved = [top for top in by_top if stamps[str(top)] != before.get(str(top))]
    if not moved:
        return 0
    sources: list[Source] = []
    ids: dict[str, int] = {}
    for top in moved:
        for memory_id, name, digest in by_top[top]:
            path = Path(name)
            data = _read_memory(path, digest, config.max_file_bytes)
            if data is None:
                continue  # changed on disk since: the next scan re-indexes it anyway
            sources.append(_Source(path, digest, parse(data, PurePosixPath(path.name)), []))
            ids[str(path)] = memory_id
    batch = prepare(sources, config)
    adopted = {
        name: rows_
        for name, rows_ in batch.rows.items()
        if rows_ and all(r.baseline.source != WORKTREE for r in rows_)
    }
    with db.write_tx(conn):
        for name, rows_ in adopted.items():
            save(conn, ids[name], rows_)
        save_looks(conn, batch.looks)
        db.set_config(conn, GIT_STAMP_KEY, json.dumps({**before, **stamps}))
    return len(adopted)


# -- confirming a memory against the code as it is now ----------------------------------------------------------------

CHECKED_KEY = "cites_checked"


def confirming(rows: list[CitationRecord], when: str) -> Callable[[bytes], tuple[list[str], bytes]]:
    """A rewrite of a memory file (for write.rewrite_memory) recording that it still holds for the code as it is:
    the line anchors of moved or changed citations point where those lines are now, and `cites_checked: <when>`
    is set in the frontmatter. The changed file is baselined anew when it is indexed (and when it is committed)."""
    from specmem.indexer.write import update_frontmatter

    def rewrite(raw: bytes) -> tuple[list[str], bytes]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise WriteError(
                "the memory is not UTF-8 text; its citations cannot be confirmed in place"
            ) from None
        bom = "\ufeff" if text.startswith("\ufeff") else ""
        lines = text[len(bom) :].splitlines(keepends=True)
        changed: list[str] = []
        for row in rows:
            if (
                row.start_line is None
                or row.now_start is None
                or row.now_end is None
                or row.status not in ("moved", "changed")
            ):
                continue
            if (row.now_start, row.now_end) == (row.start_line, row.end_line):
                continue
            new = anchor_text(row.target, row.now_start, row.now_end)
            i = row.line - 1
            if new != row.target and 0 <= i < len(lines) and row.target in lines[i]:
                lines[i] = lines[i].replace(row.target, new, 1)
                changed.append(f"{row.target} → {new}")
        updated = update_frontmatter("".join(lines), {CHECKED_KEY: when})
        return [*changed, CHECKED_KEY], (bom + updated).encode("utf-8")

    return rewrite


def cited_stats(conn: apsw.Connection) -> dict[str, object]:
    """Every cited file with its stat at the last look (None where there was no file): what the watcher polls."""
    if not supported(conn):
        return {}
    return {
        file: None if size == -1 else FileStat(size, mtime_ns, ctime_ns, inode)
        for file, size, mtime_ns, ctime_ns, inode in store.cited_files(conn)
    }
