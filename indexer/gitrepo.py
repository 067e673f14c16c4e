"""What git knows about a memory and the code it cites, asked through the `git` command with a timeout.

A memory whose file is committed as it is on disk takes its citations' baseline from the commit that last changed
it, so that an index deleted and built again gives every citation the same status. Nothing here writes to the
repository (no index refresh, no lock: GIT_OPTIONAL_LOCKS=0). Without git, or when it fails or is slow, every
answer is "unknown" and the caller falls back to the working tree.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("specmem.git")
TIMEOUT = 20.0  # seconds for one git command; a slower repository falls back to the working tree
ARGS_PER_CALL = 500  # paths on one command line
KEPT_BYTES = 64 * 1024 * 1024  # file contents kept between the batches of one scan
NO_COMMIT = "0" * 40


@dataclass(frozen=True)
class Commit:
    sha: str
    time_ms: int


def top_of(folder: Path) -> Path | None:
    """The work tree holding `folder` (the folder with `.git`, a folder or a worktree's file), or None."""
    for candidate in (folder, *folder.parents):
        if os.path.lexists(candidate / ".git"):
            return candidate
    return None


def blob_id(data: bytes, length: int = 40) -> str:
    """The id git gives a file with these bytes (SHA-1, or SHA-256 in a repository of 64-digit ids)."""
    header = b"blob %d\x00" % len(data)
    digest = hashlib.sha256 if length == 64 else hashlib.sha1
    return digest(header + data).hexdigest()


@dataclass
class Repo:
    """One work tree. `failed` holds why git could not answer (then nothing more is asked of it)."""

    top: Path
    failed: str | None = None
    _commits: dict[str, Commit | None] = field(default_factory=dict)
    _sizes: dict[tuple[str, str], int | None] = field(default_factory=dict)
    _blobs: dict[tuple[str, str], bytes] = field(default_factory=dict)
    _kept: int = 0

    def _run(self, args: list[str], data: bytes | None = None) -> bytes | None:
        if self.failed is not None:
            return None
        env = {**os.environ, "GIT_OPTIONAL_LOCKS": "0", "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C"}
        try:
            done = subprocess.run(
                ["git", "--literal-pathspecs", "-C", str(self.top), *args],
                input=data,
                capture_output=True,
                timeout=TIMEOUT,
                env=env,
                check=False,
            )
        except FileNotFoundError:
            self.failed = "git is not installed"
        except subprocess.TimeoutExpired:
            self.failed = f"git took over {TIMEOUT:.0f} s"
        except OSError as exc:
            self.failed = f"git cannot run ({exc.strerror})"
        else:
            if done.returncode == 0:
                return done.stdout
            # No commit yet, or a path git does not know: an answer ("nothing"), not a failure of git.
            message = done.stderr.decode("utf-8", "replace").strip().splitlines()
            log.debug("git %s: %s", args[0], message[-1] if message else done.returncode)
            return None
        log.info("%s: baselines come from the working tree (%s)", self.top, self.failed)
        return None

    def commits_of(self, files: dict[str, bytes]) -> dict[str, Commit]:
        """For memory files (path relative to the top → bytes on disk) committed as they are on disk: the commit
        that last changed each. Files with uncommitted changes, untracked or ignored ones are left out."""
        wanted = [rel for rel in files if rel not in self._commits]
        if wanted:
            heads = self._head_blobs(wanted)
            same = [
                rel for rel in wanted if rel in heads and heads[rel] == blob_id(files[rel], len(heads[rel]))
            ]
            found = self._last_commits(same)
            for rel in wanted:
                self._commits[rel] = found.get(rel)
        return {rel: c for rel in files if (c := self._commits.get(rel)) is not None}

    def _head_blobs(self, rels: list[str]) -> dict[str, str]:
        out: dict[str, str] = {}
        for part in _parts(rels):
            listing = self._run(["ls-tree", "-z", "HEAD", "--", *part])
            for entry in (listing or b"").split(b"\x00"):
                meta, _, name = entry.partition(b"\t")
                fields = meta.split()
                if len(fields) == 3 and fields[1] == b"blob":
                    out[os.fsdecode(name)] = fields[2].decode()
        return out

    def _last_commits(self, rels: list[str]) -> dict[str, Commit]:
        out: dict[str, Commit] = {}
        for part in _parts(rels):
            log_text = self._run(
                ["log", "-z", "--format=%x01%H %ct", "--name-only", "--no-renames", "--", *part]
            )
            for record in (log_text or b"").split(b"\x01")[1:]:
                header, _, names = record.partition(b"\x00")
                sha, _, when = header.decode().partition(" ")
                for name in names.lstrip(b"\n").split(b"\x00"):
                    rel = os.fsdecode(name)
                    if rel and rel not in out:
                        out[rel] = Commit(sha, int(when or 0) * 1000)
        return out

    def sizes(self, objects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], int | None]:
        """(commit, path) → the file's size at that commit, or None where it has no file there."""
        asked = [o for o in dict.fromkeys(objects) if "\n" not in o[1]]
        wanted = [o for o in asked if o not in self._sizes]
        if wanted:
            answer = self._run(
                ["cat-file", "--batch-check"], "".join(f"{c}:{p}\n" for c, p in wanted).encode()
            )
            lines = (answer or b"").split(b"\n")
            for obj, line in zip(wanted, lines, strict=False):
                fields = line.split()
                self._sizes[obj] = int(fields[2]) if len(fields) == 3 and fields[1] == b"blob" else None
        return {o: self._sizes.get(o) for o in asked}

    def read(self, objects: Iterable[tuple[str, str]]) -> dict[tuple[str, str], bytes]:
        """(commit, path) → the file's bytes at that commit (ask `sizes` first: nothing here is bounded)."""
        asked = [o for o in dict.fromkeys(objects) if "\n" not in o[1]]
        out = {o: self._blobs[o] for o in asked if o in self._blobs}
        wanted = [o for o in asked if o not in out]
        if not wanted:
            return out
        answer = self._run(["cat-file", "--batch"], "".join(f"{c}:{p}\n" for c, p in wanted).encode())
        pos = 0
        data = answer or b""
        for obj in wanted:
            end = data.find(b"\n", pos)
            if end < 0:
                break
            fields = data[pos:end].split()
            pos = end + 1
            if len(fields) != 3:
                continue  # "<name> missing"
            size = int(fields[2])
            if fields[1] == b"blob":
                out[obj] = data[pos : pos + size]
                if self._kept + size <= KEPT_BYTES:
                    self._blobs[obj] = out[obj]
                    self._kept += size
            pos += size + 1
        return out


def _parts(items: list[str]) -> Iterable[list[str]]:
    for start in range(0, len(items), ARGS_PER_CALL):
        yield items[start : start + ARGS_PER_CALL]


def _git_dir(top: Path) -> Path | None:
    dot = top / ".git"
    if dot.is_dir():
        return dot
    try:
        text = dot.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    line = text.strip()
    if not line.startswith("gitdir:"):
        return None
    found = Path(line[len("gitdir:") :].strip())
    return found if found.is_absolute() else top / found


def stamp(top: Path) -> list[int] | None:
    """What changes when a commit is made or checked out: the stat of git's index and HEAD files (no git run)."""
    folder = _git_dir(top)
    if folder is None:
        return None
    out: list[int] = []
    for name in ("index", "HEAD"):
        try:
            st = os.stat(folder / name)
        except OSError:
            out += [-1, -1, -1]
            continue
        out += [st.st_size, st.st_mtime_ns, st.st_ino]
    return out
