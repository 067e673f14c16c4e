"""The one atomic file write. Every file specmem writes goes through here: memory files (new, updated, restored,
deleted), `index.db-updated` and the watcher's status file. And the one way to open specmem's own files (locks,
status and progress files, the remembered scans, the ONNX cache's stamps): `open_own_file`, never through a symlink.

- The data goes to a temporary file in the target folder first and is fsynced: an unnamed one (O_TMPFILE) where
  the system has it, else a dot name carrying this host and process (`.x.md.<host>-<pid>-<n>.specmem-tmp`).
- A new file's name is claimed with a hard link, which never replaces anything. An existing file is replaced with
  a rename, right after checking that it still holds what the caller read; a file with several hard links is
  rewritten in place instead, so that its other names keep seeing it.
- Everything happens relative to a folder descriptor reached from a root through real folders only (O_NOFOLLOW
  at every step), so a symlink swapped in at any moment cannot send a write outside the roots.
- A file is opened non-blocking and must be a regular file on its descriptor: a FIFO or a device at a memory's
  path is refused at once instead of hanging the reader.
- specmem's own files sit in a folder that is itself no symlink, and are opened with O_NOFOLLOW: a repository
  that commits `.specmem/write.lock -> ~/.bashrc` (or another user's link in a shared folder) is refused with
  StateFileError instead of having its target truncated.

A failure removes the temporary file (and the folders this write created) and raises WriteError saying what to do.
The temporary files of writers that died (kill -9) are removed by the next write into the same folder.
"""

from __future__ import annotations

import errno
import itertools
import os
import re
import stat as stat_mod
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Self

from specmem.indexer.errors import StateFileError, WriteError

TMP_SUFFIX = ".specmem-tmp"
_TMP_RE = re.compile(r"^\..*\.(?P<host>[0-9a-f]{8})-(?P<pid>\d+)-\d+" + re.escape(TMP_SUFFIX) + "$")
# Temporary names of earlier versions: `.<name>.<pid>.<thread id>.<n>.tmp`.
_OLD_TMP_RE = re.compile(r"^\..+\.(?P<pid>\d{1,7})\.\d{8,}\.\d+\.tmp$")
DISK_FULL = "the disk is full; free some space and try again"
STALE_SECONDS = 3600  # another host's temporary file this old belongs to a writer that is gone
ATTEMPTS = 5  # resolutions tried while a folder on the way keeps being swapped for a symlink

_COUNTER = itertools.count()
_DIR_FD = {os.open, os.link, os.mkdir, os.rename, os.unlink, os.stat} <= os.supports_dir_fd
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_TMPFILE = getattr(os, "O_TMPFILE", 0)
_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a FIFO opened for reading must not wait for a writer
OWN_FILE_LIMIT = 1 << 20  # specmem's own small files (locks, status, progress): a bigger one is not ours
_no_tmpfile: set[int] = set()  # devices whose file system refused O_TMPFILE


class Changed(WriteError):
    """The file is no longer what the caller read (another program wrote it); nothing was written."""


class NotRegular(WriteError):
    """A memory's path holds something other than a regular file (a FIFO, a socket, a device)."""


def kind(st: os.stat_result | None) -> str:
    """What a file that is not regular is, in words (`a FIFO (named pipe)`)."""
    kinds = {
        stat_mod.S_IFIFO: "a FIFO (named pipe)",
        stat_mod.S_IFSOCK: "a socket",
        stat_mod.S_IFCHR: "a character device",
        stat_mod.S_IFBLK: "a block device",
        stat_mod.S_IFDIR: "a folder",
    }
    return kinds.get(stat_mod.S_IFMT(st.st_mode), "not a regular file") if st else "not a regular file"


def not_regular(path: Path | str, st: os.stat_result | None = None) -> str:
    """What to say about a memory's path that holds something other than a regular file."""
    return (
        f"{path} is {kind(st)}, not a regular file; specmem reads and writes only regular files: "
        "replace it with one"
    )


def hostname() -> str:
    """This machine's name. socket (and hashlib in `_host`) are imported when first needed: a CLI search never
    names a temporary file or takes a lock, and the two imports were ~5 ms of its start."""
    import socket

    return socket.gethostname()


def _host() -> str:
    import hashlib

    return hashlib.sha1(hostname().encode()).hexdigest()[:8]


def describe(exc: OSError, path: Path | str, doing: str) -> str:
    """One line for a failed system call on `path`, saying what to do about it."""
    advice = {
        errno.ENOSPC: DISK_FULL,
        errno.EDQUOT: "the disk quota is used up; free some space and try again",
        errno.ENAMETOOLONG: "the name is too long for the file system; use a shorter title or folder name",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied; check the folder's permissions",
        errno.EPERM: "permission denied; check the folder's permissions",
        errno.ELOOP: "a symlink is in the way",
        errno.ENOTDIR: "a file is in the way where a folder should be",
        errno.EISDIR: "a folder is in the way where a file should be",
    }.get(exc.errno or 0, exc.strerror or str(exc))
    return f"cannot {doing} {path}: {advice}"


class _Descriptor:
    """Something holding one open descriptor (or None), closed once; a context manager."""

    fd: int | None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class Folder(_Descriptor):
    """A folder opened by descriptor. Open with `open_folder`; use as a context manager."""

    def __init__(self, path: Path, fd: int | None, created: list[Path]) -> None:
        self.path = path  # the real path (no symlinks)
        self.fd = fd  # None where the system has no *at() calls: then operations go by path
        self.created = created  # folders this open made, outermost first

    def _at(self, name: str) -> str:
        return name if self.fd is not None else str(self.path / name)

    # -- reading ------------------------------------------------------------------------------------------------

    def lstat(self, name: str) -> os.stat_result | None:
        try:
            return os.stat(self._at(name), dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None

    def read(self, name: str) -> bytes:
        """The file's bytes, never through a symlink (Changed if one was swapped in)."""
        fd = self._open(name, os.O_RDONLY)
        try:
            return _read_all(fd)
        finally:
            os.close(fd)

    def _open(self, name: str, flags: int) -> int:
        """A descriptor on the regular file `name`: never through a symlink, never waiting on a FIFO."""
        try:
            fd = os.open(self._at(name), flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise Changed(f"{self.path / name} became a symlink while being written; try again") from None
            if exc.errno == errno.ENXIO:  # a FIFO with no reader, opened for writing; or a socket
                raise NotRegular(not_regular(self.path / name, self.lstat(name))) from None
            raise WriteError(describe(exc, self.path / name, "open")) from None
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise NotRegular(not_regular(self.path / name, st))
        return fd

    def open_own(self, name: str, flags: int, mode: int = 0o600) -> int:
        """A descriptor on one of specmem's own files in this folder (see `open_own_file`)."""
        path = self.path / name
        if not _NOFOLLOW:  # pragma: no cover - Windows: checked by name first
            st = self.lstat(name)
            if st is not None and stat_mod.S_ISLNK(st.st_mode):
                raise StateFileError(own_link(path))
        try:
            fd = os.open(self._at(name), flags | _NOFOLLOW | _NONBLOCK | _CLOEXEC, mode, dir_fd=self.fd)
        except OSError as exc:
            st = (
                self.lstat(name)
                if exc.errno in (errno.ELOOP, errno.EMLINK, errno.ENXIO, errno.EISDIR)
                else None
            )
            if st is not None and stat_mod.S_ISLNK(st.st_mode):
                raise StateFileError(own_link(path)) from None
            if st is not None:
                raise StateFileError(own_not_regular(path, st)) from None
            raise
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            os.close(fd)
            raise StateFileError(own_not_regular(path, st))
        return fd

    # -- writing ------------------------------------------------------------------------------------------------

    def create(self, names: Iterable[str], data: bytes) -> str | None:
        """Write `data` under the first of `names` that does not exist yet; None when all exist."""
        self.sweep()
        names = iter(names)
        first = next(names, None)
        if first is None:
            return None
        tmp = _Tmp(self, first, data, None)
        try:
            for name in itertools.chain((first,), names):
                try:
                    tmp.link(name)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise WriteError(
                        describe(exc, self.path / name, "create") + "; nothing was written"
                    ) from None
                self.sync()
                return name
            return None
        finally:
            tmp.discard()

    def replace(
        self,
        name: str,
        data: bytes,
        *,
        mode: int | None = None,
        expected: bytes | None = None,
        durable: bool = True,
    ) -> Previous:
        """Set a file's content (creating it if missing). The file's permissions are kept (or set to `mode`); a
        file with several hard links is rewritten in place, keeping them.

        With `expected`, the file must still hold exactly those bytes when it is replaced, else Changed is raised
        and nothing is written. The returned Previous (close it) then catches what another program still wrote
        to the replaced file after that last look (see Previous.settle)."""
        self.sweep()
        path = self.path / name
        st = self.lstat(name)
        if st is not None and stat_mod.S_ISLNK(st.st_mode):
            raise Changed(f"{path} became a symlink while being written; try again")
        if st is not None and stat_mod.S_ISDIR(st.st_mode):
            raise WriteError(f"{path} is a folder, not a file; move it away and try again")
        if st is not None and not stat_mod.S_ISREG(st.st_mode):
            raise WriteError(f"{path} is not a regular file; refusing to replace it")
        if st is None and expected is not None:
            raise Changed(f"{path} was removed by another program while being updated; nothing was written")
        if st is not None and st.st_nlink > 1:
            self._rewrite_in_place(name, data, mode, expected)
            return Previous(self, name, None, expected, data)
        old = self._open(name, os.O_RDONLY) if expected is not None else None
        try:
            if old is not None and _read_all(old) != expected:
                raise Changed(
                    f"{path} changed while being updated (another program wrote it); nothing was written"
                )
            keep = mode if mode is not None else (st.st_mode & 0o7777 if st is not None else None)
            tmp = _Tmp(self, name, data, keep, durable)
            try:
                tmp_name = tmp.named()
                if old is not None:
                    # The last look, right before the rename: same file, same bytes.
                    now = self.lstat(name)
                    if (
                        now is None
                        or (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino)  # type: ignore[union-attr]
                        or os.pread(old, len(expected) + 1, 0) != expected  # type: ignore[arg-type]
                    ):
                        raise Changed(
                            f"{path} changed while being updated (another program wrote it); nothing was written"
                        )
                try:
                    os.replace(self._at(tmp_name), self._at(name), src_dir_fd=self.fd, dst_dir_fd=self.fd)
                except OSError as exc:
                    raise WriteError(describe(exc, path, "replace") + "; it was left as it was") from None
                tmp.name = None
            finally:
                tmp.discard()
        except BaseException:
            if old is not None:
                os.close(old)
            raise
        if durable:
            self.sync()
        return Previous(self, name, old, expected, data)

    def _rewrite_in_place(self, name: str, data: bytes, mode: int | None, expected: bytes | None) -> None:
        path = self.path / name
        fd = self._open(name, os.O_RDWR)
        try:
            if expected is not None and _read_all(fd) != expected:
                raise Changed(
                    f"{path} changed while being updated (another program wrote it); nothing was written"
                )
            try:
                if mode is not None:
                    os.fchmod(fd, mode)
                _write_all(fd, data, offset=0)
                os.ftruncate(fd, len(data))
                os.fsync(fd)
            except OSError as exc:
                raise WriteError(
                    describe(exc, path, "rewrite")
                    + "; it has several hard links, so it is rewritten in place: check its content"
                ) from None
        finally:
            os.close(fd)

    def unlink(self, name: str) -> bool:
        """Remove a file (a symlink itself, never what it points to); False when it was already gone."""
        try:
            os.unlink(self._at(name), dir_fd=self.fd)
        except FileNotFoundError:
            return False
        except OSError as exc:
            raise WriteError(describe(exc, self.path / name, "delete")) from None
        return True

    def take(self, name: str) -> bytes | None:
        """Remove a file and return the bytes it held at that moment: it is renamed away first, then read, so
        whatever another program wrote to it until the removal is in them. A symlink (or anything else that is
        not a regular file) is removed itself and gives None, as does a file already gone."""
        st = self.lstat(name)
        if st is None:
            return None
        if not stat_mod.S_ISREG(st.st_mode):
            self.unlink(name)
            return None
        away = f".{name[:100]}.{_host()}-{os.getpid()}-{next(_COUNTER)}{TMP_SUFFIX}"
        try:
            os.rename(self._at(name), self._at(away), src_dir_fd=self.fd, dst_dir_fd=self.fd)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise WriteError(describe(exc, self.path / name, "delete")) from None
        try:
            return self.read(away)
        except WriteError:  # swapped for a symlink or a FIFO in between: it is removed all the same
            return None
        finally:
            self.unlink(away)

    def unlink_if(self, name: str, st: os.stat_result) -> None:
        """Remove `name` if it still is the file `st` describes (the one this process wrote)."""
        now = self.lstat(name)
        if now is not None and (now.st_dev, now.st_ino) == (st.st_dev, st.st_ino):
            self.unlink(name)

    def discard_created(self) -> None:
        """Remove the folders this open created, if they are still empty (after a failed write)."""
        for folder in reversed(self.created):
            try:
                os.rmdir(folder)
            except OSError:
                break

    def sync(self) -> None:
        """Make the folder's new entries durable."""
        if self.fd is not None:
            try:
                os.fsync(self.fd)
            except OSError:
                pass  # some file systems cannot fsync a folder; the data itself was synced

    def sweep(self) -> None:
        """Remove temporary files left here by writers that died (kill -9, power loss)."""
        try:
            entries = list(os.scandir(self.fd if self.fd is not None else self.path))
        except OSError:
            return
        host, now = _host(), time.time()
        for entry in entries:
            if not entry.name.startswith("."):
                continue
            m = _TMP_RE.match(entry.name)
            old = None if m else _OLD_TMP_RE.match(entry.name)
            if not m and not old:
                continue
            try:
                age = now - entry.stat(follow_symlinks=False).st_mtime
            except OSError:
                continue
            mine = (m is not None and m["host"] == host) or old is not None
            pid = int((m or old)["pid"])  # type: ignore[index]
            if (mine and pid != os.getpid() and not pid_alive(pid)) or age > STALE_SECONDS:
                try:
                    os.unlink(self._at(entry.name), dir_fd=self.fd)
                except OSError:
                    pass


class Previous(_Descriptor):
    """The file a checked replace took the place of, kept open: another program that opened it just before the
    rename may still be writing to it (an append in flight)."""

    def __init__(
        self, folder: Folder, name: str, fd: int | None, expected: bytes | None, written: bytes
    ) -> None:
        self.folder = folder
        self.name = name
        self.fd = fd
        self.expected = expected
        self.written = written

    def settle(self, rebase: Callable[[bytes], bytes]) -> bool:
        """Carry over what was written to the replaced file after its last look; True if anything was.

        Call it a moment after the replace (after indexing): appends in flight have landed by then. Bytes
        appended are appended to the new file; a whole new version saved into the old file wins, with
        `rebase` (the caller's change) applied to it."""
        if self.fd is None or self.expected is None:
            return False
        now = _read_all(self.fd)
        if now == self.expected:
            return False
        path = self.folder.path / self.name
        if now.startswith(self.expected):
            fd = self.folder._open(self.name, os.O_WRONLY | os.O_APPEND)
            try:
                _write_all(fd, now[len(self.expected) :])
                os.fsync(fd)
            except OSError as exc:
                raise WriteError(
                    describe(exc, path, "append")
                    + f"; another program appended {len(now) - len(self.expected)} bytes as it was updated, "
                    "and they could not be carried over"
                ) from None
            finally:
                os.close(fd)
            return True
        try:
            self.folder.replace(self.name, rebase(now), expected=self.written).close()
        except Changed:
            raise WriteError(
                f"another program saved {path} as it was being updated and keeps writing it; check it and "
                "update it again if needed"
            ) from None
        return True


class _Tmp:
    """A finished, fsynced temporary file in a folder: unnamed when possible, else a dot name."""

    def __init__(
        self, folder: Folder, target: str, data: bytes, mode: int | None, durable: bool = True
    ) -> None:
        self.folder = folder
        self.target = target
        self.name: str | None = None
        self.fd: int | None = None
        fd = self._unnamed()
        if fd is None:
            self.name = self._fresh_name()
            try:
                fd = os.open(
                    folder._at(self.name),
                    os.O_CREAT | os.O_EXCL | os.O_WRONLY | _NOFOLLOW | _CLOEXEC,
                    0o666,  # the umask applies, as for an editor
                    dir_fd=folder.fd,
                )
            except OSError as exc:
                self.name = None
                raise WriteError(
                    describe(exc, folder.path / target, "write") + "; nothing was written"
                ) from None
        self.fd = fd
        try:
            _write_all(fd, data)
            if mode is not None:
                os.fchmod(fd, mode)
            if durable:
                os.fsync(fd)
        except OSError as exc:
            self.discard()
            raise WriteError(describe(exc, folder.path / target, "write") + "; nothing was written") from None
        except BaseException:
            self.discard()
            raise

    def _unnamed(self) -> int | None:
        folder = self.folder
        if not _TMPFILE or folder.fd is None or not os.path.isdir("/proc/self/fd"):
            return None
        dev = os.fstat(folder.fd).st_dev
        if dev in _no_tmpfile:
            return None
        try:
            return os.open(".", _TMPFILE | os.O_WRONLY | _CLOEXEC, 0o666, dir_fd=folder.fd)
        except OSError as exc:
            if exc.errno in (errno.EOPNOTSUPP, errno.EISDIR, errno.EINVAL, errno.ENOENT):
                _no_tmpfile.add(dev)
                return None
            raise WriteError(
                describe(exc, folder.path / self.target, "write") + "; nothing was written"
            ) from None

    def _fresh_name(self) -> str:
        return f".{self.target[:100]}.{_host()}-{os.getpid()}-{next(_COUNTER)}{TMP_SUFFIX}"

    def link(self, name: str) -> None:
        """Give the finished file the name `name`; FileExistsError if that name exists."""
        folder = self.folder
        if self.name is None:
            os.link(f"/proc/self/fd/{self.fd}", folder._at(name), dst_dir_fd=folder.fd, follow_symlinks=True)
        else:
            os.link(
                folder._at(self.name),
                folder._at(name),
                src_dir_fd=folder.fd,
                dst_dir_fd=folder.fd,
                follow_symlinks=False,
            )

    def named(self) -> str:
        """A name for the temporary file (a rename needs one)."""
        if self.name is None:
            while True:
                name = self._fresh_name()
                try:
                    self.link(name)
                except FileExistsError:
                    continue
                except OSError as exc:
                    raise WriteError(
                        describe(exc, self.folder.path / self.target, "write") + "; nothing was written"
                    ) from None
                self.name = name
                break
        return self.name

    def discard(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None
        if self.name is not None:
            try:
                os.unlink(self.folder._at(self.name), dir_fd=self.folder.fd)
            except OSError:
                pass
            self.name = None


def open_folder(path: Path, roots: Iterable[Path], *, create: bool = False, doing: str = "write") -> Folder:
    """Open `path` for writing, reached from the innermost root holding its real location through real folders
    only. Symlinks inside the roots are followed (the real folder is opened); a path whose real location is
    outside every root is refused. With `create`, missing folders are made (and listed in `created`)."""
    # Not at the top: files imports pathspec, which the searches that import this module never need.
    from specmem.indexer.files import within

    path = Path(path)
    roots = [Path(os.path.realpath(r)) for r in roots]
    for _ in range(ATTEMPTS):
        try:
            real = Path(os.path.realpath(path))
        except OSError:  # a symlink on the way vanished while it was being read: look again
            continue
        holding = [r for r in roots if within(real, r)]
        if not holding:
            logical = Path(os.path.abspath(path))
            named = max(
                (r for r in roots if within(logical, r)), key=lambda r: len(r.parts), default=roots[0]
            )
            raise WriteError(f"{path} leads out of the root {named} (a symlink); refusing to {doing} there")
        root = max(holding, key=lambda r: len(r.parts))
        try:
            return _walk(root, real.relative_to(root).parts, create)
        except _Swapped:
            continue
    raise WriteError(
        f"{path} keeps being replaced by a symlink while being written; nothing was written, try again"
    )


def own_link(path: Path) -> str:
    try:
        target = f" (to {os.readlink(path)})"
    except OSError:
        target = ""
    return (
        f"{path} is a symlink{target}; specmem never follows a symlink to its own files (a repository or another "
        "user could point it at any file of yours): delete the link (`rm` it, not its target) and run again"
    )


def own_not_regular(path: Path, st: os.stat_result) -> str:
    return f"{path} is {kind(st)}, not a regular file; specmem keeps its own file there: move it away and run again"


def open_own_folder(path: Path, *, create: bool = True) -> Folder:
    """Open the folder holding specmem's own files (the index's folder, the user data and cache folders).

    The folders above it are the user's and are followed as configured; the folder itself must be a real folder,
    never a symlink (a `.specmem -> elsewhere` committed to a repository is refused with StateFileError). With
    `create`, it and the folders above are made when missing; without, a missing one raises FileNotFoundError."""
    path = Path(os.path.abspath(path))
    if path.parent == path or not _DIR_FD or not _DIRECTORY:  # the file system's top, or Windows: by path
        if create:
            os.makedirs(path, exist_ok=True)
        if os.path.islink(path):
            raise StateFileError(own_link(path))
        return Folder(path, None, [])
    parent = Path(os.path.realpath(path.parent))
    if create:
        os.makedirs(parent, exist_ok=True)
    parent_fd = os.open(parent, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    created: list[Path] = []
    try:
        while True:
            try:
                fd = os.open(path.name, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=parent_fd)
                break
            except FileNotFoundError:
                if not create:
                    raise
                try:
                    os.mkdir(path.name, 0o777, dir_fd=parent_fd)
                    created.append(parent / path.name)
                except FileExistsError:
                    pass  # made by another process a moment ago (or a link put there): look again
            except OSError as exc:
                if exc.errno not in (errno.ELOOP, errno.ENOTDIR, errno.EMLINK):
                    raise
                st = os.stat(path.name, dir_fd=parent_fd, follow_symlinks=False)
                if stat_mod.S_ISLNK(st.st_mode):
                    raise StateFileError(own_link(path)) from None
                raise StateFileError(
                    f"{path} is a file, not a folder; specmem keeps its own files there: move it away and run again"
                ) from None
    finally:
        os.close(parent_fd)
    return Folder(parent / path.name, fd, created)


def open_own_file(path: Path, flags: int = os.O_RDONLY, mode: int = 0o600) -> int:
    """The one way to open specmem's own files (locks, status and progress files, the remembered scans, the ONNX
    cache's stamps): neither the file nor its folder may be a symlink, and it must be a regular file (opened
    non-blocking, checked on the descriptor). Refusals raise StateFileError saying what to remove; a missing file
    raises FileNotFoundError unless `flags` hold O_CREAT (then its folder is made too); other failures OSError."""
    path = Path(path)
    with open_own_folder(path.parent, create=bool(flags & os.O_CREAT)) as folder:
        return folder.open_own(path.name, flags, mode)


def read_own_file(path: Path, limit: int = OWN_FILE_LIMIT) -> bytes | None:
    """The bytes of one of specmem's own files (at most `limit`), None when it does not exist. Refuses a symlink
    or a non-regular file (StateFileError); other failures raise OSError."""
    try:
        fd = open_own_file(path)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        return os.pread(fd, limit, 0)
    finally:
        os.close(fd)


def read_file(path: Path, roots: Iterable[Path], limit: int | None = None) -> bytes:
    """A memory file's bytes (at most `limit`), read as writes reach files: its real folder opened from a root
    through real folders only, the file without following a symlink, non-blocking, and only if the descriptor is
    a regular file. So a file flipped to a symlink out of the roots mid-read is never followed (its new target is
    checked on the next look), and a FIFO or a socket is refused (NotRegular) instead of hanging the reader.

    Raises FileNotFoundError when it is gone, WriteError (NotRegular, or outside the roots) when it cannot be read."""
    for _ in range(ATTEMPTS):
        try:
            real = Path(os.path.realpath(path))
        except OSError:  # a symlink on the way vanished or became a file while being read: look again
            continue
        if not os.path.isdir(real.parent):
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
        with open_folder(real.parent, roots, doing="read") as folder:
            if folder.lstat(real.name) is None:
                raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(path))
            try:
                fd = folder._open(real.name, os.O_RDONLY)
            except Changed:
                continue  # it became a symlink after it was resolved: resolve it again
        try:
            return _read_all(fd) if limit is None else os.pread(fd, limit, 0)
        finally:
            os.close(fd)
    raise WriteError(f"{path} keeps being replaced by a symlink while being read; try again")


def read_regular(path: Path, limit: int) -> tuple[bytes, int]:
    """Up to `limit` bytes of a file from the repository that is not a memory (an ignore file, `specmem.toml`,
    `.mcp.json`), and its size: opened non-blocking and read only if the descriptor is a regular file (NotRegular
    otherwise), so a FIFO there cannot hang a scan. OSError when it cannot be opened."""
    fd = os.open(path, os.O_RDONLY | _NONBLOCK | _CLOEXEC)
    try:
        st = os.fstat(fd)
        if not stat_mod.S_ISREG(st.st_mode):
            raise NotRegular(not_regular(path, st))
        return os.pread(fd, limit, 0), st.st_size
    finally:
        os.close(fd)


class _Swapped(Exception):
    """A folder on the way became a symlink after the path was resolved."""


def _walk(root: Path, parts: tuple[str, ...], create: bool) -> Folder:
    if not _DIR_FD or not _DIRECTORY:  # pragma: no cover - Windows: by path, checked once
        real = root.joinpath(*parts)
        made: list[Path] = []
        if create and not real.is_dir():
            from specmem.indexer.files import within

            missing = [p for p in (real, *real.parents) if not p.exists() and within(p, root)]
            try:
                real.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise WriteError(describe(exc, real, "create the folder")) from None
            made = sorted(missing, key=lambda p: len(p.parts))
        return Folder(real, None, made)
    try:
        fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    except OSError as exc:
        raise WriteError(describe(exc, root, "open the folder")) from None
    created: list[Path] = []
    current = root
    try:
        for part in parts:
            current = current / part
            try:
                nxt = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except FileNotFoundError:
                if not create:
                    raise WriteError(f"{current} does not exist") from None
                try:
                    os.mkdir(part, 0o777, dir_fd=fd)
                    created.append(current)
                except FileExistsError:
                    pass
                except OSError as exc:
                    raise WriteError(describe(exc, current, "create the folder")) from None
                try:
                    nxt = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
                except OSError as exc:
                    raise _swapped_or(exc, fd, part, current) from None
            except OSError as exc:
                raise _swapped_or(exc, fd, part, current) from None
            os.close(fd)
            fd = nxt
    except BaseException:
        os.close(fd)
        for folder in reversed(created):
            try:
                os.rmdir(folder)
            except OSError:
                break
        raise
    return Folder(root.joinpath(*parts), fd, created)


def _swapped_or(exc: OSError, fd: int, part: str, path: Path) -> Exception:
    try:
        st = os.stat(part, dir_fd=fd, follow_symlinks=False)
    except OSError:
        st = None
    if (st is not None and stat_mod.S_ISLNK(st.st_mode)) or exc.errno == errno.ENOENT:
        return _Swapped()
    if st is not None and not stat_mod.S_ISDIR(st.st_mode):
        return WriteError(f"{path} is a file, not a folder; move it away and try again")
    return WriteError(describe(exc, path, "open the folder"))


def _read_all(fd: int) -> bytes:
    chunks: list[bytes] = []
    offset = 0
    while True:
        chunk = os.pread(fd, 1 << 20, offset)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        offset += len(chunk)


def _write_all(fd: int, data: bytes, offset: int | None = None) -> None:
    view = memoryview(data)
    done = 0
    while done < len(view):
        if offset is None:
            done += os.write(fd, view[done:])
        else:
            done += os.pwrite(fd, view[done:], offset + done)


def pid_alive(pid: int) -> bool:
    """Whether process `pid` runs on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_own_file(path: Path, data: bytes, *, durable: bool = False) -> None:
    """Replace one of specmem's own small files (next to the database) atomically. Not fsynced unless
    `durable`: most say what happened lately (`index.db-updated`, the watcher's status), and a crash makes them stale
    whatever is done. A symlink or a non-regular file there is refused (StateFileError), never replaced."""
    path = Path(path)
    try:
        folder = open_own_folder(path.parent)
    except OSError as exc:
        raise WriteError(describe(exc, path.parent, "create the folder")) from None
    with folder:
        st = folder.lstat(path.name)
        if st is not None and stat_mod.S_ISLNK(st.st_mode):
            raise StateFileError(own_link(path))
        if st is not None and not stat_mod.S_ISREG(st.st_mode):
            raise StateFileError(own_not_regular(path, st))
        folder.replace(path.name, data, durable=durable)
