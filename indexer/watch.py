"""The live watcher: filesystem events, coalesced per path, applied in one write batch, embeddings behind.

Files that memories cite (code, anywhere in their repository) are not watched through events: their stat is
compared every ROOT_CHECK seconds, only those files (a folder watch each would cost a thread and an inotify
instance per folder, and the repository around them is none of specmem's business); a change is a batch too.

Start-up queues a full reconcile (the scan's fast path) as the first batch, so nothing that changed while no
watcher ran is missed; the observer is scheduled before it, so nothing that changes during it is missed either.
A safety net repeats that reconcile periodically (`reconcile_interval`), so a change whose event was lost (a
watch dropped by the OS or by watchdog, an overflowing event queue) is indexed within a bounded time all the same.
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import apsw
from watchdog.events import (
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
    FileAttribEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer
from watchdog.observers.api import BaseObserver, ObservedWatch
from watchdog.observers.polling import PollingObserver

from specmem.indexer import citations, cited, db, files
from specmem.indexer.batches import Batch, Batches
from specmem.indexer.config import Config
from specmem.indexer.embed import Embedder, background_thread, embed_pending
from specmem.indexer.errors import DatabaseError, ModelUnavailable, SpecmemError, WatcherBusy
from specmem.indexer.lock import FileLock, Holder, read_holder, write_watcher_status
from specmem.indexer.scan import ScanReport, scan

if TYPE_CHECKING:
    from specmem.indexer.pg_watch import WatcherLock

log = logging.getLogger("specmem.watch")

DEBOUNCE = 0.15  # quiet time after the last event before a batch is applied
MAX_DELAY = 1.0  # a steady stream of events still gets applied this often
ROOT_CHECK = 1.0  # how often the roots themselves are checked (deleted, recreated, replaced)
RETRY_MAX = 30.0  # back-off ceiling after a failed batch
TAKEOVER_RETRY = 2.0  # how often a server that does not watch tries the watcher lock
EMBED_STOP_WAIT = 0.5  # on stop, how long to wait for the embedding thread to notice
# The periodic reconcile: every RECONCILE_MIN seconds, less often where it costs more (it then takes at most
# 1/RECONCILE_FACTOR of the time), and at least every RECONCILE_MAX seconds.
RECONCILE_MIN = 30.0
RECONCILE_MAX = 300.0
RECONCILE_FACTOR = 100
EVENTS = [
    FileCreatedEvent,
    FileDeletedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileClosedEvent,
    FileAttribEvent,
    DirCreatedEvent,
    DirDeletedEvent,
    DirMovedEvent,
]


@dataclass
class WatchStatus:
    started_ms: int = 0
    batches: int = 0
    last_batch_ms: int | None = None
    last_report: ScanReport | None = None
    embedded_chunks: int = 0
    errors: list[str] = field(default_factory=list)
    periodic_checks: int = 0  # full reconciles of the safety net
    missed: int = 0  # changes the safety net found that no event had reported


class _Handler(FileSystemEventHandler):
    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        self.watcher.notice(
            [Path(os.fsdecode(p)) for p in paths if p],
            is_dir=event.is_directory,
            folder_gone=event.is_directory and event.event_type == "deleted",
        )


def watcher_lock(config: Config, role: str) -> FileLock | WatcherLock:
    """The lock that elects one watcher: a lock file beside the index; on a shared (PostgreSQL) index, an
    advisory lock per project, so one watcher per project runs across every machine."""
    if config.db_url:
        from specmem.indexer.pg_watch import WatcherLock

        return WatcherLock(config, role)
    return FileLock(config.watcher_lock_path, role)


class Watcher:
    """Keeps one database in line with the files under its roots until stopped.

    `start()` takes the database's watcher lock (raising WatcherBusy if another process holds it), schedules
    the observer and returns; batches and embeddings run in two background threads."""

    def __init__(
        self,
        config: Config,
        embedder: Embedder,
        *,
        debounce: float = DEBOUNCE,
        max_delay: float = MAX_DELAY,
        polling: bool = False,
        polling_interval: float = 1.0,
        embed: bool = True,
        on_batch: Callable[[ScanReport], None] | None = None,
        on_embedded: Callable[[int], None] | None = None,
        role: str = "watcher",
        reconcile_every: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        observer: Callable[[], BaseObserver] | None = None,
    ) -> None:
        self.config = config
        self.embedder = embedder
        # The batching policy (indexer/batches.py) reads this clock; tests give a fake one, and a fake observer.
        self._clock = clock
        self._make_observer = observer
        self.polling = polling
        self.polling_interval = polling_interval
        self.embed = embed
        self.on_batch = on_batch
        self.on_embedded = on_embedded
        self.status = WatchStatus()
        self.lock = watcher_lock(config, role)
        self._cond = threading.Condition()
        self.batches = Batches(debounce, max_delay)  # what waits to be applied; under _cond
        self._cited: dict[str, object] = {}  # cited file → its stat at the last look (None: no file)
        self._stopping = threading.Event()
        self._embed_wanted = threading.Event()
        self._observer: BaseObserver | None = None
        self._watches: dict[Path, tuple[ObservedWatch, tuple[int, int]]] = {}
        self._parent_watches: dict[Path, ObservedWatch] = {}
        self._unwatchable: dict[Path, tuple[int, int]] = {}  # roots too deep to watch (a new folder is tried)
        self._threads: list[threading.Thread] = []
        self._db_dir = config.db_path.parent
        self.policy = files.Policy.of(config)
        self._busy = False  # a batch or an embedding pass is running
        self._embedding = False
        self._root_changed = False
        self._rewatch: set[Path] = set()  # roots whose folder watches must be rebuilt (a folder went away)
        self._db_id: tuple[int, int] | None = None  # the database file the batch connection has open
        self._embed_db_id: tuple[int, int] | None = None
        self.yielded: str | None = None  # why this watcher stopped by itself (another took its lock file)
        self.reconcile_every = reconcile_every  # None: reconcile_interval() adapts it to the roots' size

    # -- life cycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Take the lock, schedule the observer, queue the start-up reconcile and start the worker threads."""
        if not self.lock.try_acquire():
            holder = self._holder_now()
            who = holder.describe() if holder else "another process"
            raise WatcherBusy(
                f"{self.config.index_name} is already watched by {who}; it keeps the index live, "
                "so there is nothing to do (stop that process first to watch from here)"
            )
        # watchdog 7 warns when a moved folder's inotify watch is registered again under its new path; the watch
        # is replaced and events keep coming (tests/indexer/test_watch.py edits files inside moved folders): noise. Set
        # here, when watching starts, not on import (importing a module changes no process state).
        warnings.filterwarnings(
            "ignore", message="Callback with id .* already exists", category=RuntimeWarning
        )
        try:
            self.status.started_ms = db.now_ms()
            if self._make_observer is not None:
                self._observer = self._make_observer()
            elif self.polling:
                self._observer = PollingObserver(timeout=self.polling_interval)
            else:
                self._observer = Observer()
            self._observer.start()
            self._check_roots()
            self._queue_full()
            for target, name in ((self._apply_loop, "specmem-apply"), (self._embed_loop, "specmem-embed")):
                thread = threading.Thread(target=target, name=name, daemon=True)
                thread.start()
                self._threads.append(thread)
        except BaseException:
            self._shutdown_observer()
            self.lock.release()
            raise

    def stop(self, timeout: float = 30.0) -> None:
        """Stop within a second or two: the keyword batch being applied is committed (a long reconcile stops
        after its current 200 files), the embedding in progress is dropped before its commit (its chunks stay
        pending for the next run); then stop watching and release the lock."""
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._embed_wanted.set()
        self._shutdown_observer()
        for thread in self._threads:
            # The embedding thread may be inside the model (loading it, or one slice of chunks), which cannot be
            # interrupted; it writes nothing once stopping is set, so it is not waited for.
            thread.join(EMBED_STOP_WAIT if thread.name == "specmem-embed" else timeout)
        self._threads.clear()
        self.lock.release()

    def _shutdown_observer(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            if self._observer.is_alive():
                self._observer.join(5)
            self._observer = None

    @property
    def running(self) -> bool:
        return bool(self._threads) and not self._stopping.is_set()

    @property
    def settling(self) -> bool:
        """Started, and its start-up reconcile has neither been applied nor failed yet."""
        return self.running and self.status.batches == 0 and not self.status.errors

    def idle(self) -> bool:
        """No event waiting, no batch being applied, no embedding running or wanted."""
        with self._cond:
            quiet = not self.batches.waiting and not self._busy
        return quiet and not self._embedding and not self._embed_wanted.is_set()

    # -- events ---------------------------------------------------------------------------------------------

    def notice(self, paths: list[Path], *, is_dir: bool, folder_gone: bool = False) -> None:
        """Record paths that changed; cheap, called on the observer's thread.

        `folder_gone`: a folder was deleted, or moved to where its move could not be paired. watchdog then drops
        the folder's watches, and those are also the watches of the same folder under its new name when it was
        moved into a folder created a moment before (mkdir archive && mv 007-x archive/): its root's watches are
        rebuilt and the root reconciled, so no later edit in there goes unseen."""
        wanted: list[Path] = []
        full_roots = False
        for path in paths:
            if path.name in files.IGNORE_FILES:
                full_roots = True  # an ignore rule changed: which files count may have changed anywhere
                continue
            if path in self.config.roots:
                self._root_changed = True
            root = files.root_of(path, self.config.roots)
            if root is not None and folder_gone and path != root:
                with self._cond:
                    self._rewatch.add(root)
            if root is None or self._noise(path, root, is_dir):
                continue
            wanted.append(path)
        if not wanted and not full_roots:
            return
        with self._cond:
            self.batches.add(wanted, self._clock(), full=full_roots)
            self._cond.notify_all()

    _root_changed = False

    def _noise(self, path: Path, root: Path, is_dir: bool) -> bool:
        """Events that can never change the index: non-memory files, hidden or skipped folders, our database."""
        if not is_dir and not self.policy.is_memory_file(path):
            return True
        if self.policy.hidden(root, path, is_dir):
            # A hidden folder moved to a visible name arrives as a move event whose other side is visible.
            return True
        return self._db_dir != root and files.within(self._db_dir, root) and files.within(path, self._db_dir)

    def _queue_full(self) -> None:
        with self._cond:
            self.batches.add_full(self._clock())
            self._cond.notify_all()

    def _queue(self, paths: set[Path]) -> None:
        with self._cond:
            self.batches.add(paths, self._clock())
            self._cond.notify_all()

    # -- roots ----------------------------------------------------------------------------------------------

    def _check_roots(self) -> None:
        """Watch roots that appeared, re-watch roots that were replaced, and reconcile those."""
        assert self._observer is not None
        for root in self.config.roots:
            try:
                st = os.stat(root)
                ident: tuple[int, int] | None = (st.st_dev, st.st_ino) if root.is_dir() else None
            except OSError:
                ident = None
            current = self._watches.get(root)
            if current and current[1] == ident and self._alive(current[0]):
                continue  # (a deleted root's emitter stops: a new folder may reuse the old inode number)
            if current:
                try:
                    self._observer.unschedule(current[0])
                except (KeyError, OSError):
                    pass  # its emitter already stopped when the folder was deleted
                del self._watches[root]
                log.info(
                    "root %s %s", root, "was replaced; watching the new folder" if ident else "was deleted"
                )
            self._watch_parents(root)
            if ident is None or self._unwatchable.get(root) == ident:
                continue
            try:
                watch = self._observer.schedule(
                    _Handler(self), str(root), recursive=True, event_filter=EVENTS
                )
            except OSError as exc:
                log.warning("cannot watch %s (%s); will retry", root, exc.strerror or exc)
                continue
            except RecursionError:
                # watchdog adds a watch per folder while walking the tree with os.walk, which recurses on
                # Python 3.11: a tree about 1,000 folders deep cannot be watched. Said once; scans still index it.
                log.warning(
                    "%s holds folders too deep for the filesystem watcher to follow on this Python; changes in "
                    "this root are indexed by scans (memory_index_scan, specmem scan, a server's start), not live",
                    root,
                )
                self._unwatchable[root] = ident
                continue
            self._watches[root] = (watch, ident)
            if current is not None or self.status.batches:
                self._queue({root})

    def _rewatch_roots(self) -> set[Path]:
        """Rebuild the folder watches of the roots where a folder went away (see `notice`); returns those roots,
        to be reconciled with the batch (anything that changed while they were rebuilt is found by that)."""
        with self._cond:
            roots, self._rewatch = self._rewatch, set()
        if self._observer is None:
            return set()
        for root in roots:
            current = self._watches.pop(root, None)
            if current is not None:
                try:
                    self._observer.unschedule(current[0])
                except (KeyError, OSError):
                    pass
        if roots:
            self._check_roots()  # schedules them again, walking the folders as they are now
        return roots

    def _alive(self, watch: ObservedWatch) -> bool:
        assert self._observer is not None
        return any(e.watch == watch and e.is_alive() for e in self._observer.emitters)

    def _watch_parents(self, root: Path) -> None:
        """Ignore files above a root (up to the repository top) and the root's own appearance are seen too."""
        assert self._observer is not None
        base = files.IgnoreRules(root).base
        if not files.within(root.parent, base):
            base = (
                root.parent
            )  # outside a repository: at least the folder holding the root (or the root file)
        folder = root.parent
        while files.within(folder, base):
            if folder not in self._parent_watches and folder.is_dir():
                try:
                    self._parent_watches[folder] = self._observer.schedule(
                        _Handler(self), str(folder), recursive=False, event_filter=EVENTS
                    )
                except OSError as exc:
                    log.debug("cannot watch %s: %s", folder, exc)
            if folder == base or folder.parent == folder:
                break
            folder = folder.parent

    # -- batches --------------------------------------------------------------------------------------------

    def _take_batch(self) -> Batch | None:
        """Wait for events and then for a quiet moment (indexer/batches.py says when); None when stopping. Idle
        waits also check the roots and the cited files."""
        while True:
            check_roots = False
            with self._cond:
                if self._stopping.is_set():
                    return None
                wait = self.batches.due(self._clock())
                if wait == 0:
                    self._busy = True
                    return self.batches.take()
                if wait is not None:
                    self._cond.wait(wait)
                else:
                    self._cond.wait(ROOT_CHECK)
                    check_roots = not (self.batches.pending or self.batches.full or self._stopping.is_set())
            if check_roots:
                self._checks(self._check_roots, self._check_db, self._check_lock, self._check_cited)

    def _checks(self, *checks: Callable[[], None]) -> None:
        """Run the between-batch checks; one that fails is said and retried at the next idle moment, never the
        end of the apply thread (a watcher that stays up but indexes nothing is worse than one that stops)."""
        for check in checks:
            try:
                check()
            except Exception as exc:  # noqa: BLE001 - said and retried
                self._error(f"{check.__name__.strip('_').replace('_', ' ')}: {exc}")

    def _apply_loop(self) -> None:
        conn = None
        backoff = 0.5
        while True:
            batch = self._take_batch()
            if batch is None:
                break
            full, paths, cited, periodic = batch.full, batch.paths, batch.cited, batch.periodic
            self._checks(self._check_lock)  # a busy stream of edits never reaches the idle checks
            if self._stopping.is_set():  # yielded to the watcher that took the lock file (it reconciles all)
                with self._cond:
                    self._busy = False
                break
            try:
                conn, reopened = self._connection(conn, "_db_id")
                full = full or reopened  # a new database is filled from all the files
                if self._root_changed:
                    self._root_changed = False
                    self._check_roots()
                paths |= self._rewatch_roots()
                report = scan(
                    conn,
                    self.config,
                    self.embedder,
                    scopes=None if full else tuple(paths),
                    embed=False,
                    should_stop=self._stopping.is_set,
                    announce=not periodic,
                    cited=tuple(cited),
                )
                self._cited = citations.cited_stats(conn)
                backoff = 0.5
            except Exception as exc:  # noqa: BLE001 - a failed batch is retried, never fatal
                log.error(
                    "could not apply %s change(s): %s; retrying in %.1f s", len(paths) or "all", exc, backoff
                )
                self.status.errors = [*self.status.errors[-9:], str(exc)]
                with self._cond:
                    self._busy = False
                    self.batches.retry(Batch(full, paths, cited), self._clock())
                self._stopping.wait(backoff)
                backoff = min(backoff * 2, RETRY_MAX)
                if conn is not None and isinstance(exc, DatabaseError):
                    conn.close()
                    conn = None
                continue
            if full:
                self.batches.next_reconcile = self._clock() + self.reconcile_interval(report.seconds)
            if periodic and self._after_periodic(report, events=bool(paths)):
                if self.embed:
                    self._embed_wanted.set()  # (also the safety net of an embedding pass that failed)
                with self._cond:
                    self._busy = False
                continue  # a quiet check is no batch: the last batch shown stays the last change applied
            self.status.batches += 1
            self.status.last_batch_ms = db.now_ms()
            self.status.last_report = report
            self._publish(report)
            for path, message in report.problems:
                log.warning("%s: %s", path, message)
            if report.unsettled:
                log.debug("still being written, reading again: %s", ", ".join(report.unsettled))
                self._queue({Path(p) for p in report.unsettled})
            if self.embed:
                self._embed_wanted.set()
            with self._cond:
                self._busy = False
            if self.on_batch:
                self.on_batch(report)
        if conn is not None:
            conn.close()

    def reconcile_interval(self, seconds: float) -> float:
        """Seconds from one full reconcile to the safety net's next, given how long the last one took."""
        if self.reconcile_every is not None:
            return self.reconcile_every
        return min(max(RECONCILE_FACTOR * seconds, RECONCILE_MIN), RECONCILE_MAX)

    def _after_periodic(self, report: ScanReport, *, events: bool) -> bool:
        """After the safety net's reconcile: True when it found nothing to do. Changes it found that no event
        reported mean events were lost: say so, and watch the roots afresh (a lost watch would lose the next
        change too)."""
        self.status.periodic_checks += 1
        found = report.added + report.updated + report.moved + report.removed
        if not found and not events and not report.unsettled and not report.problems:
            return True
        if not found or events:  # (with events in the batch, they may have been the cause)
            return False
        self.status.missed += found
        log.warning(
            "the periodic check indexed %d change(s) that no filesystem event had reported; watching %s afresh",
            found,
            ", ".join(str(r) for r in self.config.roots),
        )
        with self._cond:
            self._rewatch |= set(self.config.roots)
        self._rewatch_roots()
        return False

    def _check_cited(self) -> None:
        """Queue the cited files whose stat changed since the last look (a stat each: no event, no folder watch)."""
        changed = {Path(f) for f, st in self._cited.items() if cited.stat_of(f) != st}
        if changed:
            for f in changed:
                self._cited[str(f)] = cited.stat_of(str(f))
            with self._cond:
                self.batches.add_cited(changed, self._clock())
                self._cond.notify_all()

    def _connection(self, conn: apsw.Connection | None, slot: str) -> tuple[apsw.Connection, bool]:
        """The loop's writer connection, reopened when the database file was deleted or replaced (else every
        later batch would go into a file nobody reads). True when it was reopened."""
        path = self.config.db_path
        if conn is not None and db.file_id(path) == getattr(self, slot) and not db.cut_short(path):
            return conn, False
        reopened = conn is not None
        if conn is not None:
            log.warning("the index %s was deleted, replaced or cut short; rebuilding it from the files", path)
            conn.close()
        while True:
            before = db.file_id(self.config.db_path)
            conn = db.open_writer(self.config)
            opened = db.file_id(self.config.db_path)
            if before is None or opened == before:  # (else it was replaced while being opened: again)
                setattr(self, slot, opened)
                return conn, reopened
            conn.close()

    def _check_db(self) -> None:
        """Between batches: a deleted, replaced or cut short database is rebuilt at once, not at the next change."""
        path = self.config.db_path
        if self._db_id is not None and (db.file_id(path) != self._db_id or db.cut_short(path)):
            self._queue_full()

    def _check_lock(self) -> None:
        """Between batches: a watcher lock file deleted or replaced under us (a cleanup of `.specmem/`) would let
        a second watcher start beside this one. Take the lock file that is there now; if another watcher took it,
        yield to it (stop); if a folder or a symlink stands there, nobody can take it: keep going and say why."""
        if self.lock.still_ours():
            return
        try:
            taken = self.lock.retake()
        except SpecmemError as exc:
            self._error(
                f"cannot take the watcher lock again ({exc}); this watcher keeps the index live meanwhile"
            )
            return
        if taken:
            log.warning(
                "the watcher lock %s was lost (deleted, replaced, or its session ended); took it again",
                self.lock.path,
            )
            return
        holder = self._holder_now()
        self.yielded = (
            f"the watcher lock {self.lock.path} was lost (deleted, replaced, or its session ended) and "
            f"{holder.describe() if holder else 'another process'} took it; this watcher stops, so that one "
            "watcher keeps this index"
        )
        self._error(self.yielded)
        self._stopping.set()
        with self._cond:
            self._cond.notify_all()
        self._embed_wanted.set()

    def _holder_now(self) -> Holder | None:
        """Who holds the watcher lock now (the lock file's record; on a shared index, the lock's session)."""
        if isinstance(self.lock, FileLock):
            return read_holder(self.lock.path)
        return self.lock.current()

    def _error(self, message: str) -> None:
        """Say a problem once (until it changes) and keep it in the status."""
        if message not in self.status.errors:
            log.warning("%s", message)
            self.status.errors = [*self.status.errors[-9:], message]

    def _publish(self, report: ScanReport) -> None:
        """Tell `specmem stats` and `memory_health` what this watcher did last."""
        holder = self.lock.holder
        if holder is None:
            return
        summary = (
            f"{report.added} added, {report.updated} updated, {report.moved} moved, {report.removed} removed, "
            f"{report.unchanged} unchanged"
        )
        write_watcher_status(
            self.config.watcher_status_path, holder, self.status.batches, self.status.last_batch_ms, summary
        )

    def _embed_loop(self) -> None:
        conn = None
        # Batches make edits searchable by keyword; embeddings follow on whatever CPU the searches leave.
        background_thread()
        if self.embed:
            try:
                _ = self.embedder.dim  # load the model now, so the first edit does not wait for it
            except ModelUnavailable as exc:
                log.warning("embeddings unavailable (%s); keyword search keeps working", exc)
                self.status.errors = [*self.status.errors[-9:], str(exc)]
        while not self._stopping.is_set():
            self._embed_wanted.wait()
            if self._stopping.is_set():
                break
            self._embed_wanted.clear()
            self._embedding = True
            try:
                conn, _ = self._connection(conn, "_embed_db_id")
                embedded, _ = embed_pending(
                    conn, self.embedder, self.config.signal_path, should_stop=self._stopping.is_set
                )
                self.status.embedded_chunks += embedded
                if embedded and self.on_embedded:
                    self.on_embedded(embedded)
            except ModelUnavailable as exc:
                if str(exc) not in self.status.errors:
                    log.warning("embeddings unavailable (%s); keyword search keeps working", exc)
                    self.status.errors = [*self.status.errors[-9:], str(exc)]
            except Exception as exc:  # noqa: BLE001 - retried with the next batch
                log.error("embedding failed: %s; will retry after the next change", exc)
                self.status.errors = [*self.status.errors[-9:], str(exc)]
                if conn is not None and isinstance(exc, DatabaseError):
                    conn.close()
                    conn = None
            finally:
                self._embedding = False
        if conn is not None:
            conn.close()


class WatchHost:
    """Runs a watcher inside another process (a server) when the database's watcher lock is free.

    Tries at once, then every `retry` seconds (a non-blocking lock attempt: no scan, no file read), so when the
    watching process exits or dies, one of the waiting servers takes over within seconds."""

    def __init__(self, config: Config, embedder: Embedder, *, retry: float = TAKEOVER_RETRY) -> None:
        self.watcher = Watcher(config, embedder, role="server")
        self.retry = retry
        self._stop = threading.Event()
        self._tried = threading.Event()
        self._thread = threading.Thread(target=self._run, name="specmem-watch-host", daemon=True)

    def start(self) -> None:
        self._thread.start()

    @property
    def watching(self) -> bool:
        return self.watcher.running

    @property
    def settling(self) -> bool:
        """Before its first try of the lock, or watching with the start-up reconcile not applied yet: the index
        this server reads is about to be brought up to date."""
        return (not self._tried.is_set() and not self._stop.is_set()) or self.watcher.settling

    def _run(self) -> None:
        told = False
        said: set[str] = set()  # a refusal (a symlinked lock) is logged once, then retried quietly
        while not self._stop.is_set():
            try:
                self.watcher.start()
            except WatcherBusy:
                self._tried.set()
                self._stop.wait(self.retry)
                continue
            except (OSError, SpecmemError) as exc:
                cause = exc if isinstance(exc, OSError) else exc.__cause__
                if isinstance(cause, OSError) and cause.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
                    if not told:  # an index this process may only read: say so once, then keep trying quietly
                        log.warning(
                            "%s is not writable here (%s): this server only reads the index, and a process that "
                            "may write it keeps it live",
                            self.watcher.config.db_path.parent,
                            cause.strerror,
                        )
                        told = True
                elif isinstance(exc, SpecmemError):
                    if str(exc) not in said:
                        said.add(str(exc))
                        log.warning(
                            "could not start the watcher (%s); retrying every %.0f s", exc, self.retry
                        )
                else:
                    log.exception("could not start the watcher; retrying in %.0f s", self.retry)
                self._tried.set()
                self._stop.wait(self.retry)
                continue
            except Exception:  # noqa: BLE001 - e.g. the database folder cannot be created; try again later
                self._tried.set()
                log.exception("could not start the watcher; retrying in %.0f s", self.retry)
                self._stop.wait(self.retry)
                continue
            self._tried.set()
            log.info("this server now watches %s", self.watcher.config.db_path)
            while self.watcher.running and not self._stop.wait(self.retry):
                pass
            if self._stop.is_set():
                return
            # It yielded to another watcher (its lock file was deleted and taken): wait to take over again.
            self.watcher.stop()
            self.watcher = Watcher(self.watcher.config, self.watcher.embedder, role="server")

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
        if self.watcher.running:
            self.watcher.stop()
