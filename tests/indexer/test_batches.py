"""The watcher's batching policy with a fake clock, and the watcher driven through a fake observer (the model:
watchfiles' tests/conftest.py): when a batch is due is decided by the test's clock, not by the machine's speed.
What real filesystem events do is tested with a real watchdog observer in test_watch.py."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from watchdog.events import (
    DirDeletedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileModifiedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers.api import ObservedWatch

from specmem.indexer import config
from specmem.indexer.batches import Batches
from specmem.indexer.embed import Embedder
from specmem.indexer.scan import ScanReport
from specmem.indexer.watch import DEBOUNCE, MAX_DELAY, Watcher
from tests.helpers import hits, memory, wait_for, write

START = 1000.0  # a monotonic clock is far from zero


class FakeClock:
    """A monotonic clock that moves only when the test says so."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeEmitter:
    def __init__(self, watch: ObservedWatch) -> None:
        self.watch = watch

    def is_alive(self) -> bool:
        return True


class FakeObserver:
    """Takes the watcher's schedules like watchdog's observer and delivers the events the test emits to the
    handlers watching their folder; no thread, no inotify."""

    def __init__(self) -> None:
        self.handlers: dict[ObservedWatch, FileSystemEventHandler] = {}

    def start(self) -> None:
        pass

    def stop(self) -> None:
        pass

    def is_alive(self) -> bool:
        return False

    def join(self, timeout: float | None = None) -> None:
        pass

    def schedule(self, handler: FileSystemEventHandler, path: str, *, recursive: bool, event_filter=None):
        watch = ObservedWatch(path, recursive=recursive, event_filter=event_filter)
        self.handlers[watch] = handler
        return watch

    def unschedule(self, watch: ObservedWatch) -> None:
        del self.handlers[watch]

    @property
    def emitters(self) -> list[FakeEmitter]:
        return [FakeEmitter(w) for w in self.handlers]

    def emit(self, event: FileSystemEvent) -> None:
        for watch, handler in list(self.handlers.items()):
            folder = Path(watch.path)
            path = Path(str(event.src_path))
            if path.parent == folder or (watch.is_recursive and folder in path.parents):
                handler.dispatch(event)


# -- the policy ------------------------------------------------------------------------------------------------


@pytest.fixture
def batches() -> Batches:
    return Batches(debounce=DEBOUNCE, max_delay=MAX_DELAY)


def test_events_on_one_path_are_one_change_applied_after_a_quiet_moment(batches):
    a, b = Path("/r/a.md"), Path("/r/b.md")
    assert batches.due(START) is None
    batches.add([a], START)
    batches.add([a], START + 0.05)
    batches.add([b], START + 0.1)
    assert batches.due(START + 0.1) == pytest.approx(DEBOUNCE)  # quiet time counts from the last event
    assert batches.due(START + 0.1 + DEBOUNCE * 0.99) > 0
    assert batches.due(START + 0.1 + DEBOUNCE) == 0
    batch = batches.take()
    assert (batch.full, batch.paths, batch.cited, batch.periodic) == (False, {a, b}, set(), False)
    assert batches.due(START + 5) is None and not batches.waiting


def test_a_steady_stream_is_applied_every_max_delay(batches):
    t = START
    while t < START + MAX_DELAY - DEBOUNCE / 2:
        batches.add([Path(f"/r/{t}.md")], t)
        assert batches.due(t) > 0, "never quiet, and the first event is younger than MAX_DELAY"
        t += DEBOUNCE / 2
    assert batches.due(START + MAX_DELAY) == 0
    assert len(batches.take().paths) == math.ceil((MAX_DELAY - DEBOUNCE / 2) / (DEBOUNCE / 2))
    batches.add([Path("/r/next.md")], START + MAX_DELAY + 0.01)  # a new batch: its own first event
    assert batches.due(START + MAX_DELAY + 0.01) == pytest.approx(DEBOUNCE)


def test_a_full_reconcile_is_due_at_once_and_takes_the_paths_waiting(batches):
    a = Path("/r/a.md")
    batches.add([a], START)
    batches.add_full(START + 0.01)
    assert batches.due(START + 0.01) == 0
    batch = batches.take()
    assert batch.full and batch.paths == {a} and not batch.periodic


def test_an_ignore_file_change_is_a_full_batch_that_waits_for_quiet(batches):
    batches.add([], START, full=True)
    assert batches.due(START) == pytest.approx(DEBOUNCE)
    assert batches.take().full


def test_cited_files_need_no_quiet_time(batches):
    code = Path("/src/cache.py")
    batches.add_cited({code}, START)
    assert batches.due(START) == 0
    batch = batches.take()
    assert batch.cited == {code} and not batch.full and not batch.paths


def test_the_safety_net_reconciles_on_time_even_during_a_stream(batches):
    batches.next_reconcile = START + 30
    assert batches.due(START + 29.9) is None
    assert batches.due(START + 30) == 0
    batch = batches.take()
    assert batch.full and batch.periodic
    # During a stream of events: the reconcile is due at its time, and takes the events with it.
    batches.next_reconcile = START + 60
    batches.add([Path("/r/a.md")], START + 59.95)
    assert batches.due(START + 60) == 0
    batch = batches.take()
    assert batch.full and batch.periodic and batch.paths == {Path("/r/a.md")}


def test_a_full_reconcile_already_waiting_is_not_the_safety_nets(batches):
    batches.next_reconcile = START + 30
    batches.add([], START + 29.9, full=True)  # an ignore file changed just before
    assert batches.due(START + 30) > 0  # still waits for quiet: it is an event's batch
    assert not batches.take().periodic


def test_a_failed_batch_goes_back_with_what_came_since(batches):
    a, b, code = Path("/r/a.md"), Path("/r/b.md"), Path("/src/x.py")
    batches.add([a], START)
    batches.add_cited({code}, START)
    failed = batches.take()
    batches.add([b], START + 0.5)
    batches.retry(failed, START + 0.6)
    assert batches.due(START + 0.6) == pytest.approx(DEBOUNCE)  # (the watcher also waits its back-off)
    batch = batches.take()
    assert batch.paths == {a, b} and batch.cited == {code} and not batch.full


# -- the watcher, through a fake observer and the fake clock ------------------------------------------------------


@pytest.fixture
def driven(specs: Path, cfg: config.Config, hash_embedder: Embedder) -> Iterator[Callable[..., Watcher]]:
    """Start a watcher on `specs` with a fake observer and the fake clock; stopped after the test."""
    started: list[Watcher] = []

    def start(clock: FakeClock, observer: FakeObserver, reports: list[ScanReport], **kw) -> Watcher:
        watcher = Watcher(
            cfg, hash_embedder, clock=clock, observer=lambda: observer, on_batch=reports.append, **kw
        )
        watcher.start()
        started.append(watcher)
        # (on_batch is called last: wait for the report, not for the count)
        wait_for(lambda: len(reports) == 1 and watcher.idle(), what="the start-up reconcile")
        return watcher

    yield start
    for watcher in started:
        watcher.stop()


def test_events_reach_the_index_when_the_clock_says_the_batch_is_due(driven, specs, cfg, conn):
    clock, observer, reports = FakeClock(), FakeObserver(), []
    watcher = driven(clock, observer, reports, embed=False)
    a = write(specs / "001-a" / "memory" / "a.md", memory("A", "the aardvark"))
    observer.emit(FileCreatedEvent(str(a)))
    observer.emit(FileModifiedEvent(str(a)))
    observer.emit(FileClosedEvent(str(a)))
    notes = write(specs / "001-a" / "memory" / "notes.txt", "not a memory")
    observer.emit(FileCreatedEvent(str(notes)))  # noise: never a batch
    hidden = write(specs / ".drafts" / "h.md", memory("H", "hidden"))
    observer.emit(FileCreatedEvent(str(hidden)))
    clock.advance(DEBOUNCE / 2)
    b = write(specs / "001-a" / "memory" / "b.md", memory("B", "the badger"))
    observer.emit(FileCreatedEvent(str(b)))
    # (Read while the apply thread waits: nothing is due, so nothing changes them.)
    assert watcher.batches.pending == {a, b} and not watcher.batches.full
    assert watcher.batches.due(clock()) == pytest.approx(DEBOUNCE)
    # However long the machine takes, nothing is applied before the clock says so.
    clock.advance(DEBOUNCE * 0.9)
    assert watcher.status.batches == 1 and hits(conn, "aardvark") == set()
    clock.advance(DEBOUNCE)
    wait_for(lambda: len(reports) == 2, what="the batch of a and b")
    assert (reports[-1].added, reports[-1].files_seen) == (2, 2)
    assert hits(conn, "aardvark") == {"001-a/memory/a.md"} and hits(conn, "badger") == {"001-a/memory/b.md"}


def test_a_stream_of_events_is_applied_after_max_delay(driven, specs, conn):
    clock, observer, reports = FakeClock(), FakeObserver(), []
    watcher = driven(clock, observer, reports, embed=False)
    path = specs / "001-a" / "memory" / "log.md"
    for n in range(math.ceil(MAX_DELAY / (DEBOUNCE / 2))):
        write(path, memory("Log", f"entry number {n}"))
        observer.emit(FileModifiedEvent(str(path)))
        assert watcher.status.batches == 1, "applied while the edits never paused"
        clock.advance(DEBOUNCE / 2)
    wait_for(lambda: len(reports) == 2, what="the batch after MAX_DELAY")
    assert reports[-1].added == 1


def test_moves_and_folder_deletions_reach_both_sides(driven, specs, conn):
    clock, observer, reports = FakeClock(), FakeObserver(), []
    old = write(specs / "001-a" / "memory" / "old.md", memory("Moved", "the marmot"))
    watcher = driven(clock, observer, reports, embed=False)
    assert hits(conn, "marmot") == {"001-a/memory/old.md"}
    new = specs / "002-b" / "memory" / "new.md"
    new.parent.mkdir(parents=True)
    old.rename(new)
    observer.emit(FileMovedEvent(str(old), str(new)))
    assert watcher.batches.pending == {old, new}
    clock.advance(DEBOUNCE)
    wait_for(lambda: len(reports) == 2, what="the move")
    assert reports[-1].moved == 1 and hits(conn, "marmot") == {"002-b/memory/new.md"}
    # A folder deleted: its root's watches are rebuilt with the next batch.
    gone = specs / "002-b"
    for f in gone.rglob("*.md"):
        f.unlink()
    observer.emit(DirDeletedEvent(str(gone)))
    scheduled = len(observer.handlers)
    clock.advance(DEBOUNCE)
    wait_for(lambda: len(reports) == 3, what="the deletion")
    assert reports[-1].removed == 1 and hits(conn, "marmot") == set()
    assert len(observer.handlers) == scheduled  # the root's watch was replaced, not lost or doubled


def test_the_safety_net_finds_a_change_whose_event_was_lost(driven, specs, conn):
    clock, observer, reports = FakeClock(), FakeObserver(), []
    watcher = driven(clock, observer, reports, embed=False, reconcile_every=30.0)
    clock.advance(30)
    wait_for(lambda: watcher.status.periodic_checks == 1, what="the first periodic check")
    assert len(reports) == 1 and watcher.status.missed == 0  # a quiet check is no batch
    write(specs / "001-a" / "memory" / "lost.md", memory("Lost", "the lemming"))  # no event emitted
    clock.advance(29)
    assert watcher.status.periodic_checks == 1
    clock.advance(1)
    wait_for(lambda: len(reports) == 2, what="the second periodic check, which finds the change")
    assert watcher.status.periodic_checks == 2 and watcher.status.missed == 1
    assert reports[-1].added == 1 and hits(conn, "lemming") == {"001-a/memory/lost.md"}
