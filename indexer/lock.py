"""Advisory lock files: the kernel releases them when their holder dies, so a crash never leaves one stuck.

`<index>-watcher.lock` (`index.db-watcher.lock`) is held for a watcher's whole life (one watcher per database);
`<index>-write.lock` is held while one writer classifies files and commits their keyword rows, so a CLI scan, a
server and the watcher never interleave.
"""

from __future__ import annotations

import errno
import json
import os
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from specmem.indexer.atomic import (
    describe,
    hostname,
    open_own_file,
    pid_alive,
    read_own_file,
    write_own_file,
)
from specmem.indexer.errors import DatabaseError, LockTimeout, SpecmemError, StateFileError

if TYPE_CHECKING:
    from specmem.indexer.config import Config

if sys.platform == "win32":  # pragma: no cover - exercised on Windows only
    import msvcrt

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, 0, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
            return True
        except OSError:
            return False

    def _unlock(fd: int) -> None:
        os.lseek(fd, 0, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)


WATCHER_ROLES = ("watcher", "server")  # `specmem watch`, or a `specmem serve` hosting the watcher


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    since_ms: int
    role: str

    @property
    def alive(self) -> bool:
        """Whether the recorded process still runs (only meaningful on this host)."""
        return self.host != hostname() or pid_alive(self.pid)

    def describe(self) -> str:
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.since_ms / 1000))
        return f"{self.role} pid {self.pid} on {self.host}, since {started}"


_HELD = threading.local()  # the re-entrant locks this thread holds: path → how many FileLocks share it


def _held_here() -> dict[str, int]:
    held: dict[str, int] | None = getattr(_HELD, "paths", None)
    if held is None:
        held = _HELD.paths = {}
    return held


class FileLock:
    """An exclusive advisory lock on one file. Each acquisition opens its own descriptor, so two threads of one
    process exclude each other just as two processes do. A `reentrant` lock taken again by the thread that holds
    it (a write that indexes what it wrote, under the write lock it took for both) is granted at once."""

    def __init__(self, path: Path, role: str, *, reentrant: bool = False) -> None:
        self.path = Path(path)
        self.role = role
        self.reentrant = reentrant
        self._fd: int | None = None
        self._nested = False  # granted because this thread already held it
        self._mutex = threading.Lock()

    @property
    def held(self) -> bool:
        return self._fd is not None or self._nested

    @property
    def holder(self) -> Holder | None:
        """This lock's own record while held."""
        return read_holder(self.path) if self._fd is not None else None

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it; never waits. A failure (a full disk) leaves nothing taken."""
        if self.reentrant and self._nested_take():
            return True
        with self._mutex:
            if self._fd is not None:
                return True
            record = {
                "pid": os.getpid(),
                "host": hostname(),
                "since_ms": time.time_ns() // 1_000_000,
                "role": self.role,
            }
            try:
                # Never through a symlink (a repository may commit `.specmem/write.lock -> ~/.bashrc`).
                fd = open_own_file(self.path, os.O_RDWR | os.O_CREAT)
            except OSError as exc:
                raise DatabaseError(describe(exc, self.path, "open the lock file")) from exc
            try:
                if not _try_lock(fd):
                    os.close(fd)
                    return False
                if not _same_file(fd, self.path):
                    # Deleted or replaced between our open and our lock: this descriptor locks a file nobody
                    # else will open. Try again on the file that is there now.
                    _unlock(fd)
                    os.close(fd)
                    return self._try_again()
                try:
                    os.ftruncate(fd, 0)
                    os.lseek(fd, 0, os.SEEK_SET)
                    data = json.dumps(record).encode()
                    if os.write(fd, data) != len(data):  # a short write: the disk filled up
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
                except BaseException:
                    _unlock(fd)
                    raise
            except OSError as exc:
                os.close(fd)
                raise DatabaseError(describe(exc, self.path, "record the lock holder in")) from None
            except BaseException:
                os.close(fd)
                raise
            self._fd = fd
            if self.reentrant:
                _held_here()[str(self.path)] = 1
            return True

    def _nested_take(self) -> bool:
        held = _held_here()
        if self._nested or self._fd is not None:
            return True
        if held.get(str(self.path), 0) > 0:
            held[str(self.path)] += 1
            self._nested = True
            return True
        return False

    def _try_again(self) -> bool:
        self._mutex.release()
        try:
            return self.try_acquire()
        finally:
            self._mutex.acquire()

    def still_ours(self) -> bool:
        """True while the lock file at the path is the one this lock holds. A lock file deleted or replaced under
        a holder lets a second process take a "lock" on the new file: holders that keep the lock for long (a
        watcher) check this between batches and re-take it (`retake`)."""
        with self._mutex:
            return self._fd is not None and _same_file(self._fd, self.path)

    def retake(self) -> bool:
        """Give up a lock whose file was deleted or replaced and take the one at the path now; False when another
        process holds that one."""
        with self._mutex:
            if self._fd is not None:
                fd, self._fd = self._fd, None
                _unlock(fd)
                os.close(fd)
        return self.try_acquire()

    def acquire(self, timeout: float) -> None:
        """Wait up to `timeout` seconds for the lock; raise LockTimeout naming the holder."""
        deadline = time.monotonic() + timeout
        delay = 0.002
        while not self.try_acquire():
            if time.monotonic() >= deadline:
                holder = read_holder(self.path)
                who = holder.describe() if holder else "another process"
                raise LockTimeout(
                    f"{self.path} stayed held by {who} for {timeout:.0f} s; is that process stuck?"
                )
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def release(self) -> None:
        if self._nested:
            self._nested = False
            _held_here()[str(self.path)] -= 1
            return
        with self._mutex:
            if self._fd is None:
                return
            if self.reentrant:
                _held_here().pop(str(self.path), None)
            fd, self._fd = self._fd, None
            try:
                os.ftruncate(fd, 0)  # a clean exit leaves no holder record behind
                _unlock(fd)
            finally:
                os.close(fd)

    def __enter__(self) -> FileLock:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _same_file(fd: int, path: Path) -> bool:
    """True when `path` names the file open on `fd` (same device and inode; a symlink there is not it)."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    held = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (held.st_dev, held.st_ino)


def read_holder(path: Path) -> Holder | None:
    """Who holds (or last held) the lock at `path`; None when unknown. Garbled content is not an error."""
    try:
        data = json.loads(read_own_file(Path(path)) or b"")
        return Holder(int(data["pid"]), str(data["host"]), int(data["since_ms"]), str(data.get("role", "?")))
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SpecmemError):
        return None


def current_holder(path: Path) -> Holder | None:
    """The live holder of the lock at `path`, or None when nobody holds it (a dead holder's record is ignored)."""
    holder = read_holder(path)
    return holder if holder is not None and holder.alive else None


@dataclass(frozen=True)
class WatcherInfo:
    """Who keeps a database live, since when, and what its last batch did."""

    role: str
    pid: int
    host: str
    since_ms: int
    batches: int
    last_batch_ms: int | None
    last_batch: str | None


def write_watcher_status(
    path: Path, holder: Holder, batches: int, last_batch_ms: int | None, summary: str
) -> None:
    """Replace the watcher's status file atomically (readers never see half of it)."""
    record = {
        "pid": holder.pid,
        "host": holder.host,
        "since_ms": holder.since_ms,
        "batches": batches,
        "last_batch_ms": last_batch_ms,
        "last_batch": summary,
    }
    try:
        write_own_file(Path(path), json.dumps(record).encode())
    except StateFileError:
        raise  # a symlink or a FIFO in its place: said, never followed
    except SpecmemError:
        pass  # the status is informative: a full disk must not stop the watcher


def watcher_holder(config: Config) -> Holder | None:
    """The live holder of the config's watcher lock, or None: the lock file's; on a shared (PostgreSQL) index, the
    holder of the project's advisory lock on any machine."""
    if config.db_url:
        from specmem.indexer import pg_watch

        return pg_watch.watcher_holder(config)
    return current_holder(config.watcher_lock_path)


def watcher_info(holder: Holder | None, status_path: Path) -> WatcherInfo | None:
    """The live watcher of a database (`holder`, from watcher_holder) with its last batch, or None when no
    process watches it."""
    if holder is None or holder.role not in WATCHER_ROLES:
        return None
    try:
        data = json.loads(read_own_file(Path(status_path)) or b"")
        if int(data["pid"]) != holder.pid or int(data["since_ms"]) != holder.since_ms:
            data = {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError, SpecmemError):
        data = {}
    return WatcherInfo(
        role=holder.role,
        pid=holder.pid,
        host=holder.host,
        since_ms=holder.since_ms,
        batches=int(data.get("batches", 0)),
        last_batch_ms=data.get("last_batch_ms"),
        last_batch=data.get("last_batch"),
    )
