"""Scanning: walk the roots, detect what changed (size and mtime, then content hash, then moves), prepare each
changed file (parse, chunk) and store its keyword rows at once; embeddings follow (embed.py)."""

from __future__ import annotations

import contextlib
import datetime as dt
import gc
import logging
import os
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

import apsw
import xxhash

from specmem.indexer import (
    atomic,
    citations,
    conventions,
    db,
    files,
    moved,
    places,
    scanstate,
    signal,
    store,
    unfinished,
)
from specmem.indexer.chunk import chunk_file
from specmem.indexer.config import Config
from specmem.indexer.conventions import CONVENTIONS, Convention
from specmem.indexer.embed import Embedder, embed_pending, reset_vectors_if_model_changed, vectors_usable
from specmem.indexer.errors import ModelUnavailable
from specmem.indexer.lock import FileLock
from specmem.indexer.parse import parse
from specmem.indexer.store import FileStat, Prepared

log = logging.getLogger("specmem.scan")
Progress = Callable[[str, int, int], None]
FILES_PER_BATCH = 200
# Bytes of changed files kept from the hash check for their batch; past this they are read again there.
KEEP_READ_BYTES = 32 * 1024 * 1024
WRITE_LOCK_TIMEOUT = 120.0
SETTLE_ATTEMPTS = 4
SETTLE_DELAY = 0.05
# The coarsest file timestamps in use (FAT: 2 s; HFS+, ext3 and some network filesystems: 1 s).
RACY_NS = 2_000_000_000
# An mtime this far ahead of the clock is reported (a little skew from a network filesystem is not).
FUTURE_SLACK_NS = 60_000_000_000
# Bump when parsing or chunking changes what a file's rows would be: the next scan re-indexes every file.
INDEX_FORMAT = (
    "4"  # 3: citations of code (indexer/citations.py); 4: convention places shown relative to the project
)


@dataclass
class ScanReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    moved: int = 0
    removed: int = 0
    embedded_chunks: int = 0
    reused_chunks: int = 0
    pending_embeddings: int = 0
    files_seen: int = 0
    citations_changed: int = 0  # citations whose status changed because a cited file changed
    unsettled: list[str] = field(default_factory=list)
    warnings: list[tuple[str, str]] = field(default_factory=list)
    problems: list[tuple[str, str]] = field(default_factory=list)
    # Hidden folders holding markdown that were left out (path, files): `include` in specmem.toml takes them.
    skipped: list[tuple[str, int]] = field(default_factory=list)
    # A full scan of a project's own roots: the markdown no root reads, by folder (`.`: the top), most first
    # (indexer/places.py says which folder counts a file); `roots = ["."]` in specmem.toml would read it all.
    unread: list[tuple[str, int]] = field(default_factory=list)
    per_root: dict[str, int] = field(default_factory=dict)  # memory files seen under each root
    embedding_error: str | None = None
    keyword_seconds: float = 0.0
    embed_seconds: float = 0.0
    seconds: float = 0.0

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        data["warnings"] = [{"path": p, "message": m} for p, m in self.warnings]
        data["problems"] = [{"path": p, "message": m} for p, m in self.problems]
        data["skipped"] = [{"path": p, "markdown_files": n} for p, n in self.skipped]
        data["unread"] = [{"folder": p, "markdown_files": n} for p, n in self.unread]
        return data


def read_head(path: Path, limit: int) -> tuple[bytes, int | None]:
    """The file's bytes, at most `limit` of them; the second value is the real size when it was cut. Opened
    non-blocking and read only as a regular file: a FIFO swapped in since the walk cannot hang the scan."""
    data, size = atomic.read_regular(path, limit + 1)
    return (data[:limit], size) if len(data) > limit else (data, None)


def digest_of(data: bytes, truncated_from: int | None) -> str:
    digest = xxhash.xxh3_128_hexdigest(data)
    return f"{digest}:{truncated_from}" if truncated_from is not None else digest


def prepare(
    path: Path,
    root: Path,
    stat: FileStat,
    data: bytes,
    truncated_from: int | None,
    embedder: Embedder,
    adopted: tuple[Convention, ...] = CONVENTIONS,
    base: Path | None = None,
) -> Prepared:
    """Parse and chunk one file. Its path is shown relative to `base` (the project, for a convention's place:
    `apps/web/CLAUDE.md`, scoped to `apps/web`), else to its root."""
    rel = store.relative(path, root, base)
    parsed = parse(data, rel, truncated_from=truncated_from)
    tier, context_type = conventions.defaults(path, parsed.meta, adopted)
    if tier and not parsed.tier_given:
        parsed.tier = tier
    parsed.context_type = parsed.context_type or context_type
    chunks, chunk_warnings = chunk_file(parsed, embedder.count_tokens, embedder.max_tokens)
    warnings = parsed.warnings + chunk_warnings
    ahead = stat.mtime_ns - time.time_ns()
    if ahead > FUTURE_SLACK_NS:  # store_memory clamps its time to now
        when = dt.datetime.fromtimestamp(stat.mtime_ns / 1e9).isoformat(sep=" ", timespec="seconds")
        warnings.append(
            f"modified in the future ({when}, {ahead / 86_400e9:.1f} days ahead); counted as modified when it was "
            "indexed: fix the clock that wrote it, or `touch` the file"
        )
    return Prepared(path, root, stat, digest_of(data, truncated_from), parsed, chunks, warnings, base)


def read_settled(path: Path, limit: int, st: FileStat) -> tuple[bytes, int | None, FileStat, bool]:
    """Read a file that may be being written: retry until its stat holds still across the read.

    Returns (data, truncated_from, stat of the data, settled). A file that never settles, or that was modified
    within the timestamp granularity of the read (git's "racy" rule: a filesystem with 1 or 2 s timestamps gives
    a second write in the same tick the same mtime), is marked so that its next look reads it again."""
    read_from = time.time_ns()
    for attempt in range(SETTLE_ATTEMPTS):
        data, truncated_from = read_head(path, limit)
        after = FileStat.of(path.stat())
        if after == st:
            racy = after.mtime_ns >= read_from - RACY_NS
            return data, truncated_from, after.recheck() if racy else after, True
        st = after
        if attempt < SETTLE_ATTEMPTS - 1:
            time.sleep(SETTLE_DELAY)
            read_from = time.time_ns()
    return data, truncated_from, st.recheck(), False


@dataclass
class ScanRun:
    """One scan: what it covers, how, and its report as it goes. `scan` builds it; each step takes it."""

    conn: apsw.Connection
    config: Config
    embedder: Embedder
    roots: tuple[Path, ...]
    scopes: tuple[Path, ...] | None = None  # files or folders; None: every root
    force: bool = False  # re-index unchanged files too
    embed: bool = True  # compute embeddings after the keyword rows
    progress: Progress | None = None
    lock_timeout: float = WRITE_LOCK_TIMEOUT
    one_transaction: bool = False  # every change in one transaction
    finalize: Callable[[apsw.Connection], None] | None = None  # runs inside the last transaction
    should_stop: Callable[[], bool] | None = None  # asked between batches
    cited: tuple[Path, ...] = ()  # cited files whose citations to check again (the watcher names them)
    report: ScanReport = field(default_factory=ScanReport)

    def stopping(self) -> bool:
        return self.should_stop is not None and self.should_stop()

    def tell(self, phase: str, done: int, total: int) -> None:
        if self.progress:
            self.progress(phase, done, total)


class _Changed(NamedTuple):
    """A file to index (its path as text: a first index of 50,000 files holds them all); `data` is None until its
    batch reads it."""

    name: str
    root: Path
    stat: FileStat
    data: bytes | None
    truncated_from: int | None
    memory_id: int | None


@dataclass
class Plan:
    """What a scan changes, decided before anything is written: `classify` makes it, `apply` carries it out.

    Paths stay text: a no-op rescan of 50,000 files must not build 100,000 Path objects."""

    walked: files.WalkResult
    existing: dict[str, store.Indexed]  # the rows under the scan's roots or scopes, by path
    policy: files.Policy
    changed: list[_Changed] = field(default_factory=list)  # to index, in walk order
    stat_only: list[tuple[int, FileStat]] = field(default_factory=list)  # same content, new stat
    unreadable: set[str] = field(default_factory=set)  # kept as they are
    vanished: set[str] = field(default_factory=set)  # deleted since the walk
    gone: dict[str, store.Indexed] = field(default_factory=dict)  # rows whose file is gone (moves claim them)
    kept_bytes: int = 0  # bytes of changed files kept from the hash check for their batch

    @property
    def nothing_to_write(self) -> bool:
        return not (self.changed or self.stat_only or self.gone)

    def gone_by_digest(self) -> dict[str, list[tuple[str, int]]]:
        """Gone rows by content hash: where a new file with the same content moved from."""
        out: dict[str, list[tuple[str, int]]] = defaultdict(list)
        for name, row in self.gone.items():
            out[row.content_hash].append((name, row.id))
        return out


def scan(
    conn: apsw.Connection,
    config: Config,
    embedder: Embedder,
    *,
    roots: tuple[Path, ...] | None = None,
    scopes: tuple[Path, ...] | None = None,
    force: bool = False,
    embed: bool = True,
    progress: Progress | None = None,
    lock_timeout: float = WRITE_LOCK_TIMEOUT,
    one_transaction: bool = False,
    finalize: Callable[[apsw.Connection], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    announce: bool = True,
    cited: tuple[Path, ...] = (),
) -> ScanReport:
    """Bring the index in line with the files under the roots (or only under `scopes`: files or folders).

    Holds the database's write lock while it classifies files and commits keyword rows, so scans from the CLI,
    the servers and the watcher never interleave. Never deletes rows of folders or files it could not read.
    `one_transaction` commits every change in one transaction; `finalize` runs inside the last one.
    `should_stop` is asked between batches: a stopped scan keeps what it committed and the next one goes on.
    A full scan records its progress beside the index for other processes; `announce=False` does not (a watcher's
    periodic check of an index that is complete: searches need not wait for it).
    The citations of code files that changed are checked again: of every cited file in a full scan, else of
    those in `cited` (the watcher names them)."""
    started = time.perf_counter()
    reset_vectors_if_model_changed(conn, embedder.model_id)
    # A full scan tells other processes how far it is (a server's first search waits for its keyword phase).
    tracker = scanstate.Tracker(config.scan_state_path) if scopes is None and announce else None
    try:
        unread: list[tuple[str, int]] = []
        if roots is None and scopes is None and config.searches_project:
            # A full scan looks for the conventions' places anywhere in the project first (and remembers them).
            if progress:
                progress("walking", 0, 0)
            config, found = places.refresh(config)
            unread = found.left_out(config.project) if found else []
        run = ScanRun(
            conn,
            config,
            embedder,
            roots or config.roots,
            scopes,
            force,
            embed,
            _both(tracker, progress),
            lock_timeout,
            one_transaction,
            finalize,
            should_stop,
            cited,
        )
        run.report.unread = unread
        _scan(run)
    finally:
        if tracker is not None:
            tracker.close()
    run.report.seconds = time.perf_counter() - started
    return run.report


def _both(first: Progress | None, second: Progress | None) -> Progress | None:
    if first is None or second is None:
        return first or second

    def both(phase: str, done: int, total: int) -> None:
        first(phase, done, total)
        second(phase, done, total)

    return both


def _scan(run: ScanRun) -> None:
    """The keyword phase under the write lock (classify, then apply, then the citations of changed code), then
    the embeddings."""
    with FileLock(run.config.write_lock_path, "scan", reentrant=True) as write_lock:
        write_lock.acquire(run.lock_timeout)
        if run.scopes is None:  # a project moved with its index: rows follow, nothing is read again
            moved.rebase(run.conn, run.config)
        # What a killed writer changed on disk but did not index is indexed now, whatever this scan's scopes.
        abandoned, left = unfinished.abandoned(run.conn)
        if abandoned:
            run.scopes = None if run.scopes is None else (*run.scopes, *left)
            run.finalize = unfinished.dropping(abandoned, run.finalize)
        kw_started = time.perf_counter()
        if db.get_config(run.conn, "index_format") != INDEX_FORMAT:
            run.force, run.scopes = True, None  # every file's rows must be rebuilt, not only those in scope
        plan = classify(run)
        if plan is not None:  # else stopped while classifying: nothing written yet
            apply(run, plan)
            run.report.keyword_seconds = time.perf_counter() - kw_started
        if not run.stopping():
            _check_citations(run)
    report = run.report
    if run.embed and not run.stopping():
        emb_started = time.perf_counter()
        try:
            embedded, reused = embed_pending(
                run.conn,
                run.embedder,
                run.config.signal_path,
                progress=run.progress,
                should_stop=run.should_stop,
            )
            report.embedded_chunks = embedded
            report.reused_chunks += reused
        except ModelUnavailable as exc:
            report.embedding_error = str(exc)
        report.embed_seconds = time.perf_counter() - emb_started
    report.pending_embeddings = store.pending_count(run.conn)


# -- classify: walk, stat and hash, what is gone ---------------------------------------------------------------


def classify(run: ScanRun) -> Plan | None:
    """Walk the scan's roots or scopes and decide, cheapest test first, what each file needs: nothing (same
    stat, or same content), a new stat, or indexing; and which rows' files are gone. Writes nothing; None when
    stopped meanwhile.

    A file with no row (or a forced one) is read only when its batch is prepared, so memory follows the batch,
    not the corpus; a changed file read here to compare its hash keeps its bytes while they fit in
    KEEP_READ_BYTES."""
    run.tell("walking", 0, 0)
    policy = files.Policy.of(run.config)
    with _collector_paused():
        walked = files.walk(run.roots, exclude=(run.config.db_path.parent,), scopes=run.scopes, policy=policy)
        # (A scope whose name is not UTF-8 has no rows; the walk reported it.)
        stored = None if run.scopes is None else tuple(s for s in run.scopes if files.storable(str(s)))
        existing = store.existing(run.conn, run.roots, stored)
    report = run.report
    report.problems.extend(walked.problems)
    report.skipped.extend((str(folder), count) for folder, count in walked.skipped.items())
    report.files_seen = len(walked.found)
    for root, _ in walked.found.values():
        report.per_root[str(root)] = report.per_root.get(str(root), 0) + 1
    plan = Plan(walked, existing, policy)
    total = len(walked.found)
    for done, (name, (root, os_stat)) in enumerate(walked.found.items(), 1):
        _classify_file(run, plan, name, root, os_stat)
        if done % 200 == 0:
            run.tell("checking", done, total)
            if run.stopping():
                return None
    if total % 200:
        run.tell("checking", total, total)
    plan.gone = {
        name: row
        for name, row in existing.items()
        if (name not in walked.found or name in plan.vanished)
        and name not in plan.unreadable
        and not any(files.within(Path(name), folder) for folder in walked.incomplete)
    }
    if run.scopes is None:
        # Rows of a root that is no longer configured, or that a root symlink no longer points to: readers
        # already ignore them (db.serve_only); a full scan removes them, or keeps their id if the file moved in.
        plan.gone.update(store.outside(run.conn, run.roots))
    return plan


def _classify_file(run: ScanRun, plan: Plan, name: str, root: Path, os_stat: os.stat_result) -> None:
    row = plan.existing.get(name)
    st = FileStat.of(os_stat)
    if row and not run.force and row.stat == st:
        run.report.unchanged += 1
        return
    if not row or run.force:
        plan.changed.append(_Changed(name, root, st, None, None, row.id if row else None))
        return
    try:
        read = _read(Path(name), run.config.max_file_bytes, st, run.report)
    except FileNotFoundError:
        plan.vanished.add(name)  # deleted since the walk: its row goes with the others that are gone
        return
    if read is None:
        plan.unreadable.add(name)
        return
    data, truncated_from, st = read
    if digest_of(data, truncated_from) == row.content_hash:
        if st != row.stat:
            plan.stat_only.append((row.id, st))
        run.report.unchanged += 1
    elif plan.kept_bytes + len(data) <= KEEP_READ_BYTES:
        plan.kept_bytes += len(data)
        plan.changed.append(_Changed(name, root, st, data, truncated_from, row.id))
    else:  # read again in its batch, from the stat of the walk (not one marked for a recheck)
        plan.changed.append(_Changed(name, root, FileStat.of(os_stat), None, None, row.id))


# -- apply: prepare and write a batch at a time ----------------------------------------------------------------


def apply(run: ScanRun, plan: Plan) -> None:
    """Index the plan's changed files a batch at a time (read, parse, chunk outside any transaction; one write
    transaction per batch, then `.db-updated`), record the new stats, and remove the gone rows that no move
    claimed (in the last batch, after every batch has claimed its moves)."""
    conn, report = run.conn, run.report
    vec_model = run.embedder.model_id if vectors_usable(conn, run.embedder.model_id) else None
    gone_by_digest = plan.gone_by_digest()
    # One per scan: a file cited from every batch is read and asked of git once. None on an engine that keeps no
    # citations (PostgreSQL, for now).
    cite_cache = citations.Cache() if citations.supported(conn) else None
    claimed: set[int] = set()
    stopped = False
    count = len(plan.changed)
    step = max(count, 1) if run.one_transaction else FILES_PER_BATCH
    last_start = ((max(count, 1) - 1) // step) * step
    if plan.nothing_to_write and run.finalize is not None:
        with db.write_tx(conn):
            run.finalize(conn)
    for start in range(0, 0 if plan.nothing_to_write else max(count, 1), step):
        if start and run.stopping():
            stopped = True
            break  # the batches committed so far stay; the next scan finds the rest changed
        prepared = [
            found
            for changed in plan.changed[start : start + step]
            if (found := _prepare(run, plan, changed, gone_by_digest, claimed)) is not None
        ]
        cites = citations.prepare([p for p, _, _ in prepared], run.config, cite_cache) if cite_cache else None
        with db.write_tx(conn):
            stored = store.store_memories(conn, [(prep, mid) for prep, mid, _ in prepared], vec_model)
            for (prep, _, kind), (stored_id, reused) in zip(prepared, stored, strict=True):
                citations.save_of(conn, stored_id, cites, str(prep.path))
                report.reused_chunks += reused
                setattr(report, kind, getattr(report, kind) + 1)
                report.warnings.extend((str(prep.path), w) for w in prep.warnings)
            citations.save_looks_of(conn, cites)
            if start == 0:
                for mid, st in plan.stat_only:
                    store.update_stat(conn, mid, st)
            if start == last_start:  # after every batch has claimed the gone rows its moves came from
                store.delete_memories(conn, [row.id for row in plan.gone.values()])
                report.removed = len(plan.gone)
                if run.finalize is not None:
                    run.finalize(conn)
        signal.touch(run.config.signal_path)
        run.tell("indexing", min(start + step, count), count)
    if run.force and not stopped and db.get_config(conn, "index_format") != INDEX_FORMAT:
        with db.write_tx(conn):
            db.set_config(conn, "index_format", INDEX_FORMAT)


def _check_citations(run: ScanRun) -> None:
    """Check the citations of cited files that changed (every cited file in a full scan), after the memories."""
    conn, config, report = run.conn, run.config, run.report
    if not citations.supported(conn):
        return
    adopted = citations.adopt_commits(conn, config) if run.scopes is None else 0
    if run.scopes is None or run.cited:
        changed = report.added or report.updated or report.moved or report.removed
        only = None if run.scopes is None else [str(p) for p in run.cited]
        report.citations_changed = citations.refresh(conn, config, only, tidy=bool(changed))
    if adopted or report.citations_changed:
        signal.touch(config.signal_path)


def _prepare(
    run: ScanRun,
    plan: Plan,
    changed: _Changed,
    gone_by_digest: dict[str, list[tuple[str, int]]],
    claimed: set[int],
) -> tuple[Prepared, int | None, str] | None:
    """A changed file read (unless its bytes were kept), parsed and chunked, with the row it replaces and how it
    counts (added, updated, moved); None when it cannot be indexed now (reported)."""
    name, root, st, data, truncated_from, mid = changed
    path = Path(name)
    # Read and prepared here, a batch at a time: a pool of processes did not pay on two cores (see
    # specs/001-indexer/memory/first-index-in-batches.md).
    if data is None:
        try:
            read = _read(path, run.config.max_file_bytes, st, run.report)
        except FileNotFoundError:
            if mid is not None:  # deleted since the walk: its row goes with the others that are gone
                plan.gone[name] = plan.existing[name]
                gone_by_digest[plan.gone[name].content_hash].append((name, mid))
            return None
        if read is None:
            return None
        data, truncated_from, st = read
    try:
        base = run.config.project if root in run.config.convention_roots else None
        prep = prepare(path, root, st, data, truncated_from, run.embedder, plan.policy.conventions, base)
    except Exception as exc:  # noqa: BLE001 - a bug one file triggers must not stop every other file
        log.exception("cannot index %s", path)
        run.report.problems.append(
            (
                str(path),
                f"cannot be indexed ({type(exc).__name__}: {exc}); this is a bug in specmem, please "
                "report it with the file; its memory is kept as it was and retried on its next change",
            )
        )
        return None
    kind = "updated" if mid is not None else "added"
    if mid is None and gone_by_digest.get(prep.digest):
        old_path, mid = gone_by_digest[prep.digest].pop()
        del plan.gone[old_path]
        kind = "moved"
    elif mid is None and run.scopes is not None:
        # The move's other side may lie outside these scopes (the watcher saw the new name first).
        mid = _moved_from_elsewhere(run.conn, prep.digest, plan.walked.found, claimed)
        kind = "moved" if mid is not None else kind
    return prep, mid, kind


def _read(
    path: Path, limit: int, st: FileStat, report: ScanReport
) -> tuple[bytes, int | None, FileStat] | None:
    """A file's bytes and the stat they go with; None (a problem reported) when it cannot be read. Raises
    FileNotFoundError when it was deleted."""
    try:
        data, truncated_from, st, settled = read_settled(path, limit, st)
    except FileNotFoundError:
        raise
    except OSError as exc:
        report.problems.append((str(path), f"cannot read ({exc.strerror}); its memory is kept as it was"))
        return None
    except atomic.NotRegular:
        report.problems.append((str(path), "not a regular file now (a FIFO, socket or device); not read"))
        return None
    if not settled:
        report.unsettled.append(str(path))
    return data, truncated_from, st


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The walk and the stored rows keep a few objects per file (100,000s at 50,000 files) and make no cycles:
    the garbage collector, counting them, would run full collections over everything (a tenth of a no-op
    rescan). Re-enabled only if it was on (another thread may have paused it too)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _moved_from_elsewhere(
    conn: apsw.Connection, digest: str, found: dict[str, tuple[Path, os.stat_result]], claimed: set[int]
) -> int | None:
    """The id of an indexed memory with this content whose file no longer exists: the source of a move."""
    for mid, path in store.with_content(conn, digest):
        if mid not in claimed and path not in found and not os.path.lexists(path):
            claimed.add(mid)
            return int(mid)
    return None
