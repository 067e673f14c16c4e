"""The index serves only what lies under the current roots: rows left by a root that is no longer configured, or
by a root symlink that now points elsewhere, are served by no tool, counted by no statistic, reported by
`specmem doctor` and removed by the next full scan. Through a real MCP client over stdio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from mcp import Client

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from tests.helpers import call, fails, in_memory, memory, write


@pytest.fixture(autouse=True)
def no_watcher(monkeypatch: pytest.MonkeyPatch) -> None:
    """A hosted watcher's start-up reconcile would remove the rows before the tools are asked."""
    monkeypatch.setenv("SPECMEM_WATCH", "0")


def all_rows(db_path: Path) -> dict[str, str]:
    """Every row in the index file, served or not: path → title."""
    conn = db.connect(db_path, readonly=True)
    try:
        return {r.path: r.title for r in db.rows(conn, "SELECT path, title FROM memory_index")}
    finally:
        conn.close()


def doctor(cwd: Path) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "specmem", "doctor", "--no-model"],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_COLOR": "1"},
    )
    return done.stdout


def test_rows_of_a_root_no_longer_configured_are_served_by_no_tool(specs, isolated, cfg):
    kept = write(
        specs / "001-a" / "memory" / "kept.md",
        memory("Kept", "the aardvark stays", trigger_phrases="[aardvark]"),
    )
    other = isolated / "other"
    dropped = write(
        other / "002-b" / "memory" / "dropped.md",
        memory(
            "Dropped", "the aardvark left", trigger_phrases="[aardvark]", importance_tier="constitutional"
        ),
    )
    both = config.resolve(roots=[specs, other])
    conn = db.connect(both.db_path)
    scan.scan(conn, both, get_embedder(both.model))
    conn.close()
    assert set(all_rows(cfg.db_path)) == {str(kept), str(dropped)}
    # The project is now configured with `specs` alone (SPECMEM_ROOTS, as every test here).
    assert "1 indexed memory lies outside the roots" in doctor(isolated)

    async def scenario(client: Client) -> None:
        listed = await call(client, "memory_list")
        assert [item["path"] for item in listed["items"]] == [str(kept)] and listed["total"] == 1
        found = await call(client, "memory_search", query="aardvark", mode="keyword")
        assert [r["path"] for r in found["results"]] == [str(kept)] and found["total_memories"] == 1
        matched = await call(client, "memory_match_triggers", prompt="tell me about the aardvark")
        assert [m["path"] for m in matched] == [str(kept)]
        stats = await call(client, "memory_stats")
        assert stats["memories"] == 1 and sum(stats["by_tier"].values()) == 1
        await fails(client, "memory_get", id_or_path=str(dropped))
        summary = await call(client, "memory_index_scan", force=True)
        assert summary["removed"] == 1

    in_memory(scenario)
    assert set(all_rows(cfg.db_path)) == {str(kept)}
    assert "outside the roots" not in doctor(isolated)


def test_rows_of_a_root_symlink_that_now_points_elsewhere(isolated, tmp_path, monkeypatch):
    first, second = tmp_path / "first", tmp_path / "second"
    write(first / "001-a" / "memory" / "old.md", memory("Old target", "the buffalo grazes"))
    new = write(second / "001-a" / "memory" / "new.md", memory("New target", "the bison grazes"))
    link = isolated / "linked"
    link.symlink_to(first, target_is_directory=True)
    monkeypatch.setenv("SPECMEM_ROOTS", str(link))
    before = config.resolve()
    conn = db.connect(before.db_path)
    scan.scan(conn, before, get_embedder(before.model))
    conn.close()
    link.unlink()
    link.symlink_to(second, target_is_directory=True)

    async def scenario(client: Client) -> None:
        assert (await call(client, "memory_list"))["total"] == 0
        found = await call(client, "memory_search", query="buffalo grazes", mode="keyword")
        assert found["results"] == []
        summary = await call(client, "memory_index_scan")
        assert (summary["added"], summary["removed"]) == (1, 1)
        listed = await call(client, "memory_list")
        assert [item["path"] for item in listed["items"]] == [str(new)]

    in_memory(scenario)
    assert list(all_rows(before.db_path)) == [str(new)]


def test_a_scan_of_a_folder_inside_a_root_removes_nothing_else(specs, cfg, conn, run_scan):
    """`specmem scan specs/001-a` narrows the roots for one run: the rest of `specs` is not a removed root."""
    write(specs / "001-a" / "memory" / "a.md", memory("A", "alpha"))
    write(specs / "002-b" / "memory" / "b.md", memory("B", "beta"))
    run_scan()
    narrow = config.resolve(roots=[specs / "001-a"])
    assert scan.scan(conn, narrow, get_embedder(narrow.model)).removed == 0
    assert len(all_rows(cfg.db_path)) == 2
