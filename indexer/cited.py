"""A cited file as it is now, read safely (`look`), and a citation's status from its baseline (`judge`). Part of
the citations of code (indexer/citations.py; specs/009-citations/spec.md)."""

from __future__ import annotations

import errno
import os
import stat as stat_mod
import time
from dataclasses import dataclass

import xxhash

from specmem.indexer import spans
from specmem.indexer.files import within
from specmem.indexer.parse import decode, split_lines
from specmem.indexer.spans import Now, Status, Then
from specmem.indexer.store import FileStat

RACY_NS = 2_000_000_000  # as scan.py: a file modified this recently is read again at its next look
_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)


@dataclass
class Look:
    """A cited file as it is now: its stat and lines, or why it was not read (`missing`: there is no file)."""

    stat: FileStat | None = None
    digest: str | None = None
    lines: list[str] | None = None
    problem: str | None = None
    missing: bool = False


@dataclass
class Baseline:
    """A span as the memory saw it: `then` (None when there was nothing to keep, and `why` says what to report
    while the file exists)."""

    source: str  # "git <sha>" or "worktree"
    at_ms: int
    then: Then | None
    why: tuple[Status, str] | None = None


def lines_of(data: bytes) -> list[str]:
    """A file's lines for comparison; a binary file is one line naming its hash (compared as a whole)."""
    text, _, binary = decode(data)
    if binary:
        return [f"\x00binary file {xxhash.xxh3_128_hexdigest(data)}"]
    lines = split_lines(text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


def is_binary(lines: list[str] | None) -> bool:
    return lines is not None and len(lines) == 1 and lines[0].startswith("\x00binary file ")


def look(file: str, top: str, limit: int, *, real: str | None = None, real_top: str | None = None) -> Look:
    """Read a cited file safely: only a regular file inside the repository (symlinks resolved first), at most
    `limit` bytes, opened without blocking (a FIFO is refused, never waited on). `real` and `real_top`: the
    resolved paths, when the caller has them."""
    real = real or os.path.realpath(file)
    if not within(real, real_top or os.path.realpath(top)):
        return Look(problem="it now leads outside the repository through a symlink; not read")
    try:
        fd = os.open(real, _FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return Look(missing=True)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return Look(problem="a symlink was swapped in while it was read; not read")
        return Look(problem=f"cannot be read ({exc.strerror})")
    try:
        st = os.fstat(fd)
        fs = FileStat.of(st)
        if not stat_mod.S_ISREG(st.st_mode):
            kind = "a folder" if stat_mod.S_ISDIR(st.st_mode) else "a FIFO, socket or device"
            return Look(stat=fs, problem=f"not a regular file ({kind}); not read")
        if st.st_size > limit:
            return Look(
                stat=fs,
                problem=f"{st.st_size / 1e6:.1f} MB, over the {limit / 1e6:.1f} MB limit (SPECMEM_MAX_FILE_BYTES); "
                "not read",
            )
        started = time.time_ns()
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        after = FileStat.of(os.fstat(fd))
    except OSError as exc:
        return Look(problem=f"cannot be read ({exc.strerror})")
    finally:
        os.close(fd)
    if len(data) > limit:
        return Look(stat=after, problem=f"grew over the {limit / 1e6:.1f} MB limit while read; not read")
    if after != fs or after.mtime_ns >= started - RACY_NS:
        # Written during the read, or within the clock's granularity: read it again next time.
        after = after.recheck()
    return Look(stat=after, digest=xxhash.xxh3_128_hexdigest(data), lines=lines_of(data))


def judge(baseline: Baseline, now: Look, path: str) -> Now:
    """The citation's status from its baseline and the file as it is now."""
    if now.missing:
        return Now("missing", note="the file is gone")
    if now.problem is not None or now.lines is None:
        return Now("unchecked", note=now.problem)
    if baseline.then is None:
        status, note = baseline.why or ("unchecked", "no baseline")
        return Now(status, note=note)
    then = baseline.then
    if is_binary(now.lines):
        then = Then(None, None, then.digest, None, [], [])  # compared as a whole, by hash
    found = spans.compare(then, now.lines, path)
    if is_binary(now.lines) and found.status != "current":
        return Now(found.status, note="a binary file: compared as a whole, no diff")
    return found


def stat_of(file: str) -> FileStat | None:
    """A file's stat (None: there is none), as the watcher and a rescan compare it."""
    try:
        return FileStat.of(os.stat(file))
    except OSError:
        return None
