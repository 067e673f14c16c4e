"""A full scan's progress, beside the index (`index.db-scan.json`), for other processes: a server's first search
waits for the keyword phase to finish (or says how far it got), and `specmem doctor` tells a scan in progress from a
stalled or interrupted one. Replaced atomically at most once a second; removed when the scan ends."""

from __future__ import annotations

import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from specmem.indexer.atomic import read_own_file, write_own_file
from specmem.indexer.errors import StateFileError, WriteError
from specmem.indexer.lock import Holder

KEYWORD_PHASES = ("walking", "checking", "indexing")  # until these end, keyword search sees a partial index
WRITE_EVERY = 1.0


@dataclass(frozen=True)
class ScanState:
    pid: int
    host: str
    phase: str
    done: int
    total: int
    started_ms: int
    updated_ms: int

    @property
    def alive(self) -> bool:
        return Holder(self.pid, self.host, self.started_ms, "scan").alive

    @property
    def keyword(self) -> bool:
        """Still in the keyword phase: files are being read and their rows committed."""
        return self.phase in KEYWORD_PHASES

    def describe(self) -> str:
        if self.phase == "walking":
            return "indexing: looking for memory files"
        if self.phase == "checking":
            return f"indexing: {self.done} of {self.total} files checked for changes"
        if self.phase == "indexing":
            return f"indexing: {self.done} of {self.total} files done"
        if self.total:
            return f"{self.phase}: {self.done} of {self.total}"
        return self.phase


def read(path: Path) -> ScanState | None:
    """The recorded state, or None (no scan running, or a garbled file: neither is an error)."""
    try:
        return ScanState(**json.loads(read_own_file(Path(path)) or b""))
    except (OSError, ValueError, TypeError, StateFileError):
        return None


class Tracker:
    """A scan's progress callback that keeps the index's `-scan.json` current; `close()` removes it."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.started_ms = time.time_ns() // 1_000_000
        self.phase = ""
        self.written = 0.0

    def __call__(self, phase: str, done: int, total: int) -> None:
        now = time.monotonic()
        if phase == self.phase and now - self.written < WRITE_EVERY:
            return
        self.phase, self.written = phase, now
        state = ScanState(
            os.getpid(),
            socket.gethostname(),
            phase,
            done,
            total,
            self.started_ms,
            time.time_ns() // 1_000_000,
        )
        try:
            write_own_file(self.path, json.dumps(asdict(state)).encode())
        except StateFileError:
            raise  # a symlink in its place: refused, with what to remove
        except WriteError:
            return  # progress for others is a courtesy; the scan goes on (a full disk)

    def close(self) -> None:
        current = read(self.path)
        if current is not None and current.pid == os.getpid() and current.started_ms == self.started_ms:
            try:
                self.path.unlink()
            except OSError:
                pass
