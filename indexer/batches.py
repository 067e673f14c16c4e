"""When the watcher applies a batch: the policy, apart from threads, files and the clock.

Changes are coalesced per path. A batch is due once the events have been quiet for `debounce` seconds, and at the
latest `max_delay` seconds after the first of them, so a steady stream of edits is still applied that often. A full
reconcile and a cited file whose stat changed need no quiet time (nothing is being written). The safety net's full
reconcile is due at `next_reconcile`, even during a stream of events. Every time is passed in by the caller (the
watcher's clock), so tests drive the policy with a fake clock (tests/indexer/test_batches.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Batch:
    """One write batch: everything (`full`) or these paths, and the cited files whose stat changed."""

    full: bool
    paths: set[Path]
    cited: set[Path]
    periodic: bool = False  # the safety net's reconcile, not an event's


@dataclass
class Batches:
    """What waits to be applied, and since when. Not thread-safe: the watcher holds its lock around every call."""

    debounce: float
    max_delay: float
    pending: set[Path] = field(default_factory=set)
    cited: set[Path] = field(default_factory=set)
    full: bool = False
    periodic: bool = False
    first: float = 0.0  # when the first change of the waiting batch came
    last: float = -math.inf  # when the last one came (-inf: no quiet time needed)
    next_reconcile: float = math.inf  # when the safety net's reconcile is due (set after each full one)

    @property
    def waiting(self) -> bool:
        return bool(self.pending or self.full or self.cited)

    def add(self, paths: set[Path] | list[Path], now: float, *, full: bool = False) -> None:
        """Paths an event named (`full`: an ignore file changed, so every file may count differently)."""
        if not self.pending and not self.full:
            self.first = now
        self.last = now
        self.pending.update(paths)
        self.full = self.full or full

    def add_full(self, now: float) -> None:
        """A full reconcile, due at once (start-up, a database replaced under the watcher)."""
        if not self.pending and not self.full:
            self.first = now
        self.last = -math.inf
        self.full = True

    def add_cited(self, paths: set[Path], now: float) -> None:
        """Cited files whose stat changed: written a while ago, so due at once."""
        if not self.pending and not self.full and not self.cited:
            self.first = now
        self.last = -math.inf
        self.cited |= paths

    def due(self, now: float) -> float | None:
        """Seconds until the waiting batch is due (0: now), or None when nothing waits. Queues the safety net's
        reconcile when its time has come (checked here, not only when idle: a stream of events must not put it
        off)."""
        if not self.full and now >= self.next_reconcile:
            self.periodic = True
            self.full = True
            self.first = self.first if self.pending or self.cited else now
            self.last = -math.inf
        if not self.waiting:
            return None
        return max(0.0, min(self.last + self.debounce, self.first + self.max_delay) - now)

    def take(self) -> Batch:
        """The waiting batch, emptied out of here."""
        batch = Batch(self.full, self.pending, self.cited, periodic=self.periodic and self.full)
        self.full, self.pending, self.cited, self.periodic = False, set(), set(), False
        return batch

    def retry(self, batch: Batch, now: float) -> None:
        """Put a batch that failed back, to go with whatever came since (the watcher waits its back-off)."""
        self.full = self.full or batch.full
        self.pending |= batch.paths
        self.cited |= batch.cited
        self.last = now
