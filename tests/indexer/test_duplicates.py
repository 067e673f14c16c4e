"""Duplicate-aware writes: memories of the same spec folder that say the same thing are found, and the write is
skipped, updated or done as asked, with nothing lost."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

import specmem
from specmem.indexer import config
from specmem.indexer.draft import Draft, content_key
from specmem.server.duplicates import SIMILARITY, find
from tests.helpers import memory, write

DECISION = "Readers never block the writer: the index runs in WAL mode with a 15 s busy timeout."


def test_content_key_ignores_the_title_heading_whitespace_and_case():
    assert content_key(f"# Use WAL\n\n{DECISION}\n") == content_key(
        f"\n# Another title\n{DECISION.upper()}  \n"
    )
    assert content_key(DECISION) == content_key(f"# WAL\n\n{DECISION}")
    assert content_key(DECISION) != content_key(DECISION + " Also vacuum weekly.")
    assert content_key("## Why\n\nbody") != content_key("body")  # only a leading H1 is the title


def files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.md"))


def test_write_skip_update_and_write_anyway(specs):
    folder = specs / "001-db" / "memory"
    with specmem.open() as mem:
        first = mem.write(
            "Use WAL", DECISION, "001-db", tags=["sqlite"], trigger_phrases=["database is locked"]
        )
        assert first.action == "written" and not first.duplicates

        again = mem.write("WAL mode for readers", DECISION, "001-db")
        assert again.action == "skipped" and again.id == first.id and again.path == first.path
        assert [(d.id, d.kind) for d in again.duplicates] == [(first.id, "same content")]
        assert len(files(folder)) == 1

        elsewhere = mem.write("Use WAL", DECISION, "002-other")  # another spec folder is another scope
        assert elsewhere.action == "written" and not elsewhere.duplicates

        retitled = mem.write("use  wal", "WAL, and a busy timeout of 30 s now.", "001-db")
        assert retitled.action == "written" and retitled.duplicates[0].kind == "same title"
        assert retitled.warnings and "on_duplicate" in retitled.warnings[0]
        assert len(files(folder)) == 2

        forced = mem.write("Use WAL", DECISION, "001-db", on_duplicate="write")
        assert forced.action == "written" and forced.id not in (first.id, retitled.id)
        assert len(files(folder)) == 3

        skipped = mem.write("Use WAL", "Entirely other words.", "001-db", on_duplicate="skip")
        assert skipped.action == "skipped" and skipped.duplicates[0].kind == "same title"
        assert len(files(folder)) == 3


def test_update_replaces_the_body_merges_metadata_and_keeps_the_old_text(specs):
    path = write(
        specs / "001-db" / "memory" / "wal.md",
        "---\ntitle: Use WAL\nimportance_tier: important\n# a comment people wrote\nexpires: 2099-01-01\n"
        "tags: [sqlite]\ntrigger_phrases:\n  - database is locked\n---\n# Use WAL\n\nOld reasoning.\n",
    )
    with specmem.open() as mem:
        mem.scan()
        updated = mem.write(
            "Use WAL",
            "New reasoning: readers never block.",
            "001-db",
            tier="normal",
            tags=["sqlite", "concurrency"],
            trigger_phrases=["readers block"],
            on_duplicate="update",
        )
        assert updated.action == "updated" and updated.path == str(path) and updated.checkpoint
        assert set(updated.changed) == {"body", "tags", "trigger_phrases"}
        text = path.read_text()
        assert "New reasoning: readers never block." in text and "Old reasoning." not in text
        assert "# a comment people wrote\nexpires: 2099-01-01\n" in text  # untouched keys and comments stay
        got = mem.get(updated.id)
        assert got.tier == "important"  # never lowered by an update
        assert got.tags == ["sqlite", "concurrency"] and got.trigger_phrases == [
            "database is locked",
            "readers block",
        ]
        assert mem.search("readers never block", mode="keyword").results[0].id == updated.id
        assert len(files(path.parent)) == 1
        mem.restore(updated.checkpoint)  # nothing lost: the old text comes back
        assert "Old reasoning." in path.read_text()


def test_similar_meaning_with_the_real_model(specs, real_embedder):
    write(
        specs / "001-db" / "memory" / "wal.md",
        memory("Use WAL mode", "Readers never block the writer because SQLite runs in write-ahead log mode."),
    )
    write(
        specs / "001-db" / "memory" / "vacuum.md",
        memory(
            "Vacuum on Sundays", "The database file is compacted with VACUUM once a week, on Sunday night."
        ),
    )
    with specmem.open(model=config.DEFAULT_MODEL, embedder=real_embedder) as mem:
        mem.scan()
        with mem.writer() as conn:
            paraphrase = find(
                conn,
                real_embedder,
                Draft(
                    "Write-ahead logging keeps reads unblocked",
                    "We switched SQLite to WAL journaling so that reading never waits for a writer.",
                    "001-db",
                ),
            )
            unrelated = find(
                conn,
                real_embedder,
                Draft(
                    "JWT lifetime",
                    "Access tokens expire after one hour; refresh tokens after thirty days.",
                    "001-db",
                ),
            )
        assert [(d.title, d.kind) for d in paraphrase] == [("Use WAL mode", "similar")]
        assert paraphrase[0].similarity >= SIMILARITY and unrelated == []
        written = mem.write(
            "Write-ahead logging keeps reads unblocked",
            "We switched SQLite to WAL journaling so that reading never waits for a writer.",
            "001-db",
        )
        assert written.action == "written" and written.duplicates[0].kind == "similar" and written.warnings


def test_mcp_duplicate_writes(specs):
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "specmem", "serve"],
        env={**os.environ, "SPECMEM_WATCH": "0"},
        cwd=str(Path.cwd()),
    )

    async def call(client: Client, **args: Any) -> dict[str, Any]:
        result = await client.call_tool("memory_write", {"spec_folder": "001-db", **args})
        assert not result.is_error, result.content[0].text
        return result.structured_content

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(params) as client:
                first = await call(client, title="Use WAL", content=DECISION)
                skipped = await call(client, title="Use WAL", content=DECISION)
                assert skipped["action"] == "skipped" and skipped["id"] == first["id"]
                written = await call(client, title="Use WAL", content=DECISION, on_duplicate="write")
                assert written["action"] == "written" and written["duplicates"][0]["id"] == first["id"]
                updated = await call(
                    client, title="Use WAL", content="WAL, busy timeout 30 s.", on_duplicate="update"
                )
                assert updated["action"] == "updated" and updated["checkpoint"]
                assert "body" in updated["changed"]
                bad = await client.call_tool(
                    "memory_write",
                    {"spec_folder": "001-db", "title": "x", "content": "y", "on_duplicate": "merge"},
                )
                assert bad.is_error

    anyio.run(main)
    assert len(files(specs / "001-db" / "memory")) == 2
    texts = [p.read_text() for p in files(specs / "001-db" / "memory")]
    assert any("busy timeout 30 s" in t for t in texts) and any(DECISION in t for t in texts)


@pytest.mark.parametrize("content", ["", "# Only a title", "\n\n"])
def test_an_empty_body_is_nobodys_duplicate(specs, content):
    with specmem.open() as mem:
        first = mem.write("Empty one", content, "001-db")
        second = mem.write("Empty two", content, "001-db")
        assert first.action == second.action == "written" and not second.duplicates
