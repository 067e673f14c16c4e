"""The MCP tools through the SDK's client, in memory (`Client(build_server(...))`): listing, reads, writes, the
signal from another writer, a crashing call. The transports (stdio lines, streamable HTTP, the MCP Inspector's
CLI) and the process's life are tested through real processes in tests/system/test_transport.py."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anyio
from mcp import Client

from specmem.indexer import config, db, scan
from specmem.indexer.embed import get_embedder
from tests.helpers import call, fails, in_memory, memory, write

READ_TOOLS = {
    "memory_context",
    "memory_search",
    "memory_match_triggers",
    "memory_get",
    "memory_list",
    "memory_stale",
    "memory_stats",
    "memory_health",
    "checkpoint_list",
}
SCHEMA_TOOLS = {"memory_context"}  # output schemas only where a client builds on the structure
WRITE_TOOLS = {
    "memory_index_scan",
    "memory_save",
    "memory_validate",
    "memory_write",
    "memory_update",
    "memory_delete",
    "checkpoint_create",
    "checkpoint_restore",
    "checkpoint_delete",
}


def test_tools_are_listed_with_hints_and_no_stubs(indexed_specs):
    async def scenario(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert set(tools) == READ_TOOLS | WRITE_TOOLS
        for name in READ_TOOLS:
            assert tools[name].annotations.read_only_hint is True, name
        for name, listed in tools.items():
            assert listed.description and not listed.description.startswith(" "), name
            assert "\n    " not in listed.description, f"{name}: description not dedented"
            assert (listed.output_schema is not None) == (name in SCHEMA_TOOLS), name
        for name in WRITE_TOOLS:
            assert tools[name].annotations.read_only_hint is False, name

    in_memory(scenario)


def test_read_tools_success_and_errors(indexed_specs, cfg):
    async def scenario(client: Client) -> None:
        answer = await call(client, "memory_search", query="readers block writer", limit=5)
        titles = [r["title"] for r in answer["results"]]
        assert titles[0] == "Files are the truth" and "WAL mode" in titles  # constitutional first
        parts = set(answer["results"][1]["parts"])  # what --explain shows, for hybrid answers
        assert {"keyword_norm", "keyword_weight", "semantic_norm", "semantic_weight", "fusion"} <= parts
        assert answer["index"]["pending_embeddings"] == 0 and answer["index"]["last_indexed_ms"] > 0
        filtered = await call(
            client,
            "memory_search",
            query="tokens",
            filters={"spec_folder": "002-auth"},
            include_constitutional=False,
        )
        assert [r["title"] for r in filtered["results"]] == ["JWT tokens"]
        assert "limit: input should be less than or equal to 100" in await fails(
            client, "memory_search", query="x", limit=101
        )
        bad_mode = await fails(client, "memory_search", query="x", mode="fuzzy")
        assert bad_mode.endswith("mode: 'fuzzy' is not one of: keyword, semantic, hybrid"), bad_mode

        matches = await call(
            client, "memory_match_triggers", prompt="Why is the DATABASE   is locked error back?"
        )
        assert [m["title"] for m in matches] == ["WAL mode"] and matches[0]["phrases"] == [
            "database is locked"
        ]
        assert await call(client, "memory_match_triggers", prompt="walrus databases") == []

        wal_id = next(r["id"] for r in answer["results"] if r["title"] == "WAL mode")
        got = await call(client, "memory_get", id_or_path=str(wal_id))
        assert got["title"] == "WAL mode" and "readers never block" in got["content"]
        section = await call(client, "memory_get", id_or_path="001-db/memory/wal.md", anchor="why")
        assert "because of WAL" in section["content"] and "readers never" not in section["content"]
        lines = await call(client, "memory_get", id_or_path=str(wal_id), start_line=1, end_line=2)
        assert lines["content"].count("\n") == 2 and (lines["start_line"], lines["end_line"]) == (1, 2)
        assert "no anchor" in await fails(client, "memory_get", id_or_path=str(wal_id), anchor="nope")
        assert "no memory with id" in await fails(client, "memory_get", id_or_path="99999")
        outside = await fails(client, "memory_get", id_or_path="/etc/passwd")
        assert "/etc/passwd is outside the memory roots (" in outside

        listed = await call(client, "memory_list", limit=2, sort="title")
        assert listed["total"] == 4 and [i["title"] for i in listed["items"]] == [
            "Files are the truth",
            "JWT tokens",
        ]
        page2 = await call(client, "memory_list", offset=2, limit=2, sort="title")
        assert [i["title"] for i in page2["items"]] == ["Old sessions", "WAL mode"]
        assert (await call(client, "memory_list", spec_folder="002-auth"))["total"] == 2
        assert (await call(client, "memory_list", tier="critical"))["items"][0]["title"] == "WAL mode"
        bad_tier = await fails(client, "memory_list", tier="urgent")
        assert "tier: 'urgent' is not one of: constitutional, critical, important, normal" in bad_tier
        assert "\n" not in bad_tier and "pydantic" not in bad_tier

        stats = await call(client, "memory_stats")
        assert stats["memories"] == 4 and stats["by_tier"]["deprecated"] == 1 and stats["files_bytes"] > 0
        health = await call(client, "memory_health")
        assert health["database"] == str(cfg.db_path) and health["schema_version"] >= 1
        assert health["sqlite_vec_version"].startswith("v") and health["pending_embeddings"] == 0
        assert health["model_state"] == "ready" and health["watcher"] is None and health["watching"] is False

    in_memory(scenario)


def test_first_search_lists_every_rule_then_the_most_relevant(specs, cfg):
    for n in range(9):
        write(specs / "constitutional" / f"rule{n}.md", memory(f"Rule {n}", f"Always do thing {n}."))
    for n in range(6):
        write(specs / "001-a" / "memory" / f"m{n}.md", memory(f"Memory {n}", f"cache layer detail {n}"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    conn.close()

    async def scenario(client: Client) -> None:
        answers = [
            (await call(client, "memory_search", query="cache layer", limit=3))["results"] for _ in range(3)
        ]
        assert sum(r["always_surfaced"] for r in answers[0]) == 9  # the session's first search: every rule
        for later in answers[1:]:  # then rules are ranked by relevance, a third of the limit at most
            assert len(later) == 3 and not any(r["always_surfaced"] for r in later)
            assert [r["title"] for r in later if r["tier"] == "constitutional"] == []

    in_memory(scenario)


def test_next_call_sees_commits_from_another_process_through_the_signal(indexed_specs, cfg, tmp_path):
    async def scenario(client: Client) -> None:
        assert (
            await call(
                client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
            )
        )["results"] == []
        write(indexed_specs / "003-new" / "memory" / "fish.md", memory("Fish", "zebrafish regenerate fins"))
        done = subprocess.run(
            [sys.executable, "-m", "specmem", "scan"], capture_output=True, text=True, timeout=120
        )
        assert done.returncode == 0, done.stderr
        found = await call(
            client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
        )
        assert [r["title"] for r in found["results"]] == ["Fish"]
        health = await call(client, "memory_health")
        assert health["reloads"] >= 1

        # A database replaced on disk (a restore, a rebuild) is picked up by the next call.
        other = config.resolve(db=str(tmp_path / "other" / "index.db"))
        (indexed_specs / "003-new" / "memory" / "fish.md").unlink()
        conn = db.connect(other.db_path)
        scan.scan(conn, other, get_embedder(other.model))
        conn.close()
        for suffix in ("", "-wal", "-shm"):  # a replaced database brings its own WAL, or none
            if Path(f"{other.db_path}{suffix}").exists():
                os.replace(f"{other.db_path}{suffix}", f"{cfg.db_path}{suffix}")
            else:
                Path(f"{cfg.db_path}{suffix}").unlink(missing_ok=True)
        assert (
            await call(
                client, "memory_search", query="zebrafish", mode="keyword", include_constitutional=False
            )
        )["results"] == []

    in_memory(scenario)


def test_write_tools(indexed_specs, cfg, tmp_path):
    async def scenario(client: Client) -> None:
        path = write(
            indexed_specs / "002-auth" / "memory" / "mfa.md", memory("MFA", "second factor required")
        )
        summary = await call(client, "memory_save", path="002-auth/memory/mfa.md")
        assert summary["added"] == 1 and summary["scope"] == [str(path)]
        assert [
            r["title"]
            for r in (
                await call(
                    client,
                    "memory_search",
                    query="second factor",
                    mode="keyword",
                    include_constitutional=False,
                )
            )["results"]
        ] == ["MFA"]
        roots = f"is outside the memory roots ({indexed_specs}); give a path inside them"
        assert f"{tmp_path / 'x.md'} {roots}" in await fails(
            client, "memory_save", path=str(tmp_path / "x.md")
        )
        assert f"../../etc/passwd {roots}" in await fails(client, "memory_save", path="../../etc/passwd")
        assert "not a memory file" in await fails(client, "memory_save", path="002-auth")

        path.unlink()
        scanned = await call(client, "memory_index_scan", spec_folder="002-auth")
        assert scanned["removed"] == 1 and scanned["files_seen"] == 2
        assert "no spec folder" in await fails(client, "memory_index_scan", spec_folder="999-none")
        assert "spec_folder '../..' is not a folder name like 003-auth" in await fails(
            client, "memory_index_scan", spec_folder="../.."
        )
        everything = await call(client, "memory_index_scan", force=True)
        assert everything["updated"] == 4

        jwt = (await call(client, "memory_search", query="tokens", include_constitutional=False))["results"][
            0
        ]
        first = await call(client, "memory_validate", id=jwt["id"], useful=False)
        second = await call(client, "memory_validate", id=jwt["id"], useful=False)
        assert (
            first["confidence_before"] == 0.5 and second["confidence_after"] < first["confidence_after"] < 0.5
        )
        again = (await call(client, "memory_search", query="tokens", include_constitutional=False))[
            "results"
        ][0]
        assert again["parts"]["confidence"] < jwt["parts"]["confidence"]
        assert "no memory with id" in await fails(client, "memory_validate", id=424242, useful=True)

    in_memory(scenario)


def test_a_crashing_call_is_an_error_result_and_the_server_goes_on(indexed_specs, cfg, monkeypatch):
    """In-process (so the fault can be injected): an unexpected exception in one call fails only that call."""
    from specmem.server import search as api  # the API imports search() from here on each call
    from specmem.server.mcp import server as mcp_server

    def broken(*args, **kwargs):
        raise RuntimeError("injected fault")

    real = api.search
    monkeypatch.setattr(api, "search", broken)

    async def main() -> None:
        async with Client(mcp_server.build_server(cfg, load_model=False)) as client:
            crashed = await client.call_tool("memory_search", {"query": "tokens"})
            # A bug, not a known error: the client gets no internals, the server log gets the traceback.
            assert crashed.is_error and crashed.content[0].text == "Error executing tool memory_search"
            monkeypatch.setattr(api, "search", real)
            stats = await call(client, "memory_stats")
            assert stats["memories"] == 4

    anyio.run(main)


def test_index_is_owner_only(indexed_specs, cfg):
    import stat

    assert stat.S_IMODE(cfg.db_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(cfg.db_path.parent.stat().st_mode) == 0o700
