"""Hostile memory files, written by the tests and fed to real scans and real watcher processes: a file anyone
can commit must never stop indexing, eat the machine or make later edits invisible."""

from __future__ import annotations

import json
import os
import resource
import signal as signals
import subprocess
import sys
from pathlib import Path, PurePosixPath

import pytest

from specmem.indexer import db
from specmem.indexer.lock import current_holder
from specmem.indexer.parse import parse
from tests.helpers import chain, memory, wait_for, write

TIMEOUT = 60.0
# Address space for a child process: a runaway expansion fails there instead of swapping the machine.
MEMORY_CAP = 3 * 1024**3
FRONTMATTER_KEYS = [
    "importance_tier",
    "importanceTier",
    "context_type",
    "contextType",
    "expires",
    "title",
    "tags",
    "trigger_phrases",
    "triggerPhrases",
]


def capped() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_CAP, MEMORY_CAP))


def specmem(*args: str, cwd: Path, timeout: float = TIMEOUT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "specmem", *args],
        cwd=cwd,
        env={**os.environ, "SPECMEM_MODEL": "hash:64"},
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=capped,
    )


def alias_bomb(key: str) -> str:
    """About 400 bytes of YAML whose `key` expands to 9**9 (387 million) scalars."""
    lines = ["---", "a: &a [x,x,x,x,x,x,x,x,x]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    lines.append(f"{key}: *i")
    return "\n".join(lines) + "\n---\n# Bomb\n\nbombshell body text\n"


def indexed_titles(db_path: Path) -> dict[str, str]:
    if not db_path.exists():
        return {}
    conn = db.connect(db_path, readonly=True)
    try:
        return dict(conn.execute("SELECT rel_path, title FROM memory_index"))
    except Exception:  # noqa: BLE001 - the schema may not exist yet
        return {}
    finally:
        conn.close()


# -- 1. YAML alias bombs and other frontmatter that expands -----------------------------------------------------


def test_alias_bomb_in_any_key_is_refused_and_the_scan_goes_on(specs, isolated):
    for key in FRONTMATTER_KEYS:
        write(specs / "bombs" / f"{key}.md", alias_bomb(key))
    write(specs / "001-a" / "memory" / "fine.md", memory("Fine", "an ordinary memory"))
    done = specmem("scan", "--json", "--no-embed", cwd=isolated)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout)
    assert report["added"] == len(FRONTMATTER_KEYS) + 1
    warned = {Path(w["path"]).stem: w["message"] for w in report["warnings"]}
    assert set(warned) == set(FRONTMATTER_KEYS)
    assert all("alias" in m for m in warned.values()), warned
    titles = indexed_titles(isolated / ".specmem" / "index.db")
    assert titles["001-a/memory/fine.md"] == "Fine"
    assert titles["bombs/importance_tier.md"] == "Bomb"  # indexed as well as it can be: body and defaults


def test_watcher_survives_an_alias_bomb_indexes_later_edits_and_stops_on_sigterm(specs, isolated, cfg):
    write(specs / "001-a" / "memory" / "a.md", memory("Before", "first"))
    watcher = subprocess.Popen(
        [sys.executable, "-m", "specmem", "watch"],
        cwd=isolated,
        env={**os.environ, "SPECMEM_MODEL": "hash:64"},
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=capped,
    )
    try:
        wait_for(lambda: "001-a/memory/a.md" in indexed_titles(cfg.db_path), what="the start-up reconcile")
        write(specs / "001-a" / "memory" / "bomb.md", alias_bomb("importance_tier"))
        write(specs / "001-a" / "memory" / "later.md", memory("Later", "written after the bomb"))
        wait_for(
            lambda: indexed_titles(cfg.db_path).get("001-a/memory/later.md") == "Later",
            what="an edit made after the bomb to be indexed",
        )
        assert indexed_titles(cfg.db_path)["001-a/memory/bomb.md"] == "Bomb"
        watcher.send_signal(signals.SIGTERM)
        _, stderr = watcher.communicate(timeout=TIMEOUT)
    finally:
        if watcher.poll() is None:
            watcher.kill()
            watcher.communicate()
    assert watcher.returncode == 0, stderr[-2000:]
    assert current_holder(cfg.watcher_lock_path) is None


def test_huge_frontmatter_is_not_parsed():
    block = "".join(f"k{i}: {'v' * 60}\n" for i in range(2000))  # ~140 KB of YAML
    r = parse(f"---\n{block}title: Hidden\n---\n# Heading\nbody\n".encode(), PurePosixPath("a/x.md"))
    assert r.title == "Heading"
    assert any("frontmatter is" in w and "KB" in w for w in r.warnings), r.warnings
    assert r.lines[r.body_start] == "# Heading"


@pytest.mark.parametrize("key", FRONTMATTER_KEYS)
@pytest.mark.parametrize("fence", ["yaml", "toml"])
def test_values_that_cannot_become_text_are_warnings(key, fence):
    # Hex integers have no digit limit when parsed, but Python refuses to turn one of 5000 digits into text.
    big = "0x" + "f" * 5000
    value = f"[{big}]" if key in ("tags", "trigger_phrases", "triggerPhrases") else big
    block = f"---\n{key}: {value}\n---\n" if fence == "yaml" else f"+++\n{key} = {value}\n+++\n"
    r = parse((block + "# Heading\nbody\n").encode(), PurePosixPath("a/x.md"))
    assert r.title == "Heading" and r.tier == "normal" and r.context_type is None and r.expires is None
    assert r.warnings and all(len(w) < 400 for w in r.warnings), r.warnings


@pytest.mark.parametrize("key", ["importance_tier", "context_type", "expires"])
def test_lists_and_mappings_are_not_stringified(key):
    r = parse(f"---\n{key}: {{a: [1, 2]}}\n---\nbody\n".encode(), PurePosixPath("a/x.md"))
    assert r.context_type is None and r.tier == "normal" and r.expires is None
    assert any(f"`{key}`" in w for w in r.warnings), r.warnings


def test_a_file_that_breaks_the_parser_holds_back_no_other_file(specs, run_scan, conn, monkeypatch):
    """Whatever input still finds a bug in parsing or chunking, only that file waits: a failure there must not fail
    the batch, or a watcher retries the same batch forever and no later edit is ever indexed."""
    from specmem.indexer import scan

    write(specs / "poison.md", memory("Poison v1", "indexed before the bug"))
    run_scan()
    real_parse = scan.parse

    def buggy(data: bytes, rel: PurePosixPath, **kwargs: object):  # type: ignore[no-untyped-def]
        if rel.name == "poison.md":
            raise RecursionError("maximum recursion depth exceeded")
        return real_parse(data, rel, **kwargs)

    monkeypatch.setattr(scan, "parse", buggy)
    write(specs / "poison.md", memory("Poison v2", "edited, and now the parser fails on it"))
    write(specs / "fine.md", memory("Fine", "indexed whatever the other file does"))
    report = run_scan()
    assert report.added == 1
    assert any(p.endswith("poison.md") and "RecursionError" in m for p, m in report.problems)
    titles = dict(conn.execute("SELECT rel_path, title FROM memory_index"))
    assert titles == {"poison.md": "Poison v1", "fine.md": "Fine"}  # kept as it was, not removed
    monkeypatch.setattr(scan, "parse", real_parse)
    assert run_scan().updated == 1  # tried again on the next scan
    assert dict(conn.execute("SELECT rel_path, title FROM memory_index"))["poison.md"] == "Poison v2"


def test_a_tree_too_deep_to_watch_leaves_the_watcher_running(specs, cfg, conn, hash_embedder):
    """watchdog walks a root with os.walk, which recurses on Python 3.11: a committed chain of 1,100 folders made
    `Watcher.start()` raise, so `specmem watch` died and a server retried with a long traceback every 2 s."""
    from specmem.indexer.watch import Watcher

    write(specs / "a.md", memory("Shallow", "near the top"))
    bottom = chain(specs, 1100, numbered=False)
    (bottom / "x.md").write_text("# Deep\n")
    watcher = Watcher(cfg, hash_embedder, debounce=0.05, embed=False)
    try:
        watcher.start()
        wait_for(lambda: watcher.status.batches >= 1, what="the start-up reconcile")
        titles = {r[0] for r in conn.execute("SELECT title FROM memory_index")}
        assert titles == {"Shallow", "Deep"}  # the reconcile (a scan) indexes the deep file
        assert watcher.running
    finally:
        watcher.stop()
        (bottom / "x.md").unlink()
        for folder in [bottom, *bottom.parents][:1100]:
            folder.rmdir()
