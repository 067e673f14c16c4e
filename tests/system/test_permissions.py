"""The index folder's permissions belong to its user: a `.specmem/` made read-only stays read-only, and an index
this process may not write (read-only, or owned by another user) can still be read by every reader. Real
processes; as root, the readers run without the capabilities that bypass file permissions."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import StdioServer, memory, write

SETPRIV = shutil.which("setpriv")
AS_ROOT = os.geteuid() == 0
# Without every capability, root is refused what the file modes refuse (CAP_DAC_OVERRIDE, CAP_FOWNER, ...).
UNPRIVILEGED = [SETPRIV or "setpriv", "--bounding-set=-all", "--inh-caps=-all", "--"] if AS_ROOT else []


def specmem(*args: str, cwd: Path, unprivileged: bool = False) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*(UNPRIVILEGED if unprivileged else []), sys.executable, "-m", "specmem", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )


@pytest.fixture
def indexed(specs: Path, isolated: Path) -> Path:
    write(specs / "001-a" / "memory" / "a.md", memory("Alpha", "the okapi is shy", trigger_phrases="[okapi]"))
    done = specmem("scan", cwd=isolated)
    assert done.returncode == 0, done.stderr
    return isolated / ".specmem"


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_read_only_index_folder_is_not_made_writable_again(indexed, isolated):
    assert mode(indexed) == 0o700  # created owner-only
    indexed.chmod(0o500)
    try:
        assert specmem("search", "okapi", "--mode", "keyword", cwd=isolated).returncode == 0
        specmem("scan", cwd=isolated)  # may fail, when the folder is really read-only: never widened
        assert mode(indexed) == 0o500
        indexed.chmod(0o755)  # open to others (by a umask, or an older version): owner-only again
        assert specmem("scan", cwd=isolated).returncode == 0
        assert mode(indexed) == 0o700
    finally:
        indexed.chmod(0o700)


@pytest.mark.skipif(
    AS_ROOT and SETPRIV is None, reason="setpriv is needed to read without root's capabilities"
)
def test_readers_work_on_an_index_they_may_not_write(indexed, isolated, specs):
    """An index owned by another user (or made read-only): SQLite cannot create the WAL's -shm file next to it,
    and every reader failed with 'attempt to write a readonly database'."""
    files = [p for p in indexed.iterdir()]
    for path in files:
        path.chmod(0o444)
    indexed.chmod(0o555)
    if AS_ROOT:
        for path in [indexed, *files]:
            os.chown(path, 65534, 65534)  # nobody
    try:
        found = specmem("search", "okapi", "--mode", "keyword", cwd=isolated, unprivileged=True)
        assert found.returncode == 0 and "Alpha" in found.stdout, found.stderr
        stats = specmem("stats", cwd=isolated, unprivileged=True)
        assert stats.returncode == 0, stats.stderr
        got = specmem("get", "001-a/memory/a.md", cwd=isolated, unprivileged=True)
        assert got.returncode == 0 and "okapi" in got.stdout, got.stderr

        log = isolated / "serve.log"
        with open(log, "w") as stderr:
            server = StdioServer(prefix=tuple(UNPRIVILEGED), stderr=stderr)
            try:
                server.initialize()
                answer = server.call(2, "memory_search", {"query": "okapi", "mode": "keyword"})
                assert [r["title"] for r in answer["results"]] == ["Alpha"]
                matched = server.call(3, "memory_match_triggers", {"prompt": "an okapi"})
                assert [m["title"] for m in matched["result"]] == ["Alpha"]
                health = server.call(4, "memory_health", {})
                assert health["memories"] == 1 and not health["watching"]
            finally:
                server.close()
        # The server cannot host the watcher here: it says so once, without a traceback every two seconds.
        logged = log.read_text()
        assert "Traceback" not in logged and logged.count("not writable here") == 1, logged
    finally:
        if AS_ROOT:
            for path in [indexed, *files]:
                os.chown(path, 0, 0)
        indexed.chmod(0o700)
        for path in files:
            path.chmod(0o600)


@pytest.mark.skipif(AS_ROOT and SETPRIV is None, reason="setpriv is needed to drop root's capabilities")
@pytest.mark.parametrize("mcp_json", [None, '{"mcpServers": {}}', "{not json"])
def test_init_in_a_read_only_folder_says_which_file_it_cannot_create(isolated, mcp_json):
    """A traceback before, and an unwritable folder reported as an invalid `.mcp.json`."""
    project = isolated / "ro-project"
    project.mkdir()
    if mcp_json is not None:
        (project / ".mcp.json").write_text(mcp_json)
    project.chmod(0o555)
    try:
        done = specmem("init", cwd=project, unprivileged=True)
    finally:
        project.chmod(0o755)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr and "permission denied" in done.stderr, done.stderr
    assert ".mcp.json" not in done.stderr or "invalid" not in done.stderr.lower(), done.stderr
    assert not (project / ".mcp.json").exists() or (project / ".mcp.json").read_text() == mcp_json
