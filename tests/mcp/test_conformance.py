"""MCP conformance: capabilities as the server behaves on every protocol version, list_changed to every connection,
tool titles, completions, progress, one-line argument errors, unknown arguments refused, client roots.

In memory through the SDK's client (`Client(build_server(...))`), except the handshake of each protocol version,
spoken in raw lines to `specmem serve`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import anyio
import mcp_types as types
import pytest
from mcp import Client
from mcp_types.version import HANDSHAKE_PROTOCOL_VERSIONS

import specmem
from specmem.indexer import config
from specmem.server.mcp.server import build_server
from tests.helpers import TIMEOUT, call, fails, memory, write


@pytest.fixture
def corpus(specs: Path) -> Path:
    write(specs / "001-db" / "memory" / "wal.md", memory("WAL mode", "Readers never block writers."))
    write(specs / "001-db" / "memory" / "vacuum.md", memory("Vacuum weekly", "The database is vacuumed."))
    write(specs / "002-auth" / "memory" / "jwt.md", memory("JWT tokens", "Tokens expire after an hour."))
    with specmem.open() as mem:
        mem.scan()
    return specs


def in_memory(scenario: Any, cfg: config.Config | None = None, **client: Any) -> None:
    async def main() -> None:
        with anyio.fail_after(TIMEOUT):
            async with Client(build_server(cfg or config.resolve(), load_model=False), **client) as connected:
                await scenario(connected)

    anyio.run(main)


@pytest.mark.parametrize("version", HANDSHAKE_PROTOCOL_VERSIONS)
def test_capabilities_say_what_the_server_sends_on_each_handshake_version(corpus, version):
    """resources.listChanged and resources.subscribe are advertised because both are sent; completions too."""
    init = {"protocolVersion": version, "capabilities": {}, "clientInfo": {"name": "raw", "version": "0"}}
    line = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": init})
    done = subprocess.run(
        [sys.executable, "-m", "specmem", "serve"],
        input=line + "\n",
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env={**os.environ, "SPECMEM_WATCH": "0"},
    )
    result = json.loads(done.stdout.splitlines()[0])["result"]
    assert result["protocolVersion"] == version
    capabilities = result["capabilities"]
    assert capabilities["resources"] == {"subscribe": True, "listChanged": True}, capabilities
    assert "completions" in capabilities and capabilities["tools"] == {"listChanged": False}


def test_list_changed_reaches_a_connection_that_subscribed_to_nothing(corpus, cfg):
    """list_changed needs no subscription: every initialized handshake-era connection gets it."""
    received: list[Any] = []

    async def collect(message: Any) -> None:
        received.append(message)

    async def scenario(client: Client) -> None:
        assert client.server_capabilities.resources.list_changed is True
        await client.list_resources()
        with specmem.open() as mem:
            mem.write("Cache keys", "Keys are hashed with xxh3.", "003-cache")
        with anyio.fail_after(TIMEOUT):
            while not any(isinstance(m, types.ResourceListChangedNotification) for m in received):
                await anyio.sleep(0.05)

    in_memory(scenario, cfg, mode="legacy", message_handler=collect)


def test_tools_have_titles_and_refuse_unknown_arguments(corpus, cfg):
    async def scenario(client: Client) -> None:
        for listed in (await client.list_tools()).tools:
            assert listed.title and listed.title[0].isupper(), listed.name
            assert listed.input_schema.get("additionalProperties") is False, listed.name
        unknown = await fails(client, "memory_search", query="wal", limt=5)
        assert "unknown argument limt; memory_search takes: query, limit" in unknown, unknown
        nested = await fails(client, "memory_search", query="wal", filters={"tier": ["critical"]})
        assert "unknown argument filters.tier;" in nested, nested
        assert (await call(client, "memory_search", query="wal", filters={"tiers": ["normal"]}))["results"]

    in_memory(scenario, cfg)


def test_a_bad_value_is_one_line_naming_the_allowed_values(corpus, cfg):
    async def scenario(client: Client) -> None:
        for tool, args in (
            ("memory_write", {"title": "t", "content": "c", "spec_folder": "003-x", "tier": "urgent"}),
            ("memory_update", {"id_or_path": "1", "tier": "urgent"}),
            ("memory_list", {"tier": "urgent"}),
        ):
            text = await fails(client, tool, **args)
            assert text.endswith(
                "tier: 'urgent' is not one of: constitutional, critical, important, normal, temporary, deprecated"
            ), text
            assert "\n" not in text and "errors.pydantic.dev" not in text
        missing = await fails(client, "memory_get")
        assert missing.endswith("id_or_path: required"), missing

    in_memory(scenario, cfg)


def test_completions_for_the_spec_folder_and_the_path_template(corpus, cfg):
    async def scenario(client: Client) -> None:
        assert client.server_capabilities.completions is not None
        prompt = types.PromptReference(name="remember")
        folders = await client.complete(prompt, {"name": "spec_folder", "value": ""})
        assert folders.completion.values == ["001-db", "002-auth"]  # most memories first; no empty name
        assert (await client.complete(prompt, {"name": "spec_folder", "value": "00"})).completion.total == 2
        assert (await client.complete(prompt, {"name": "spec_folder", "value": "002"})).completion.values == [
            "002-auth"
        ]
        template = types.ResourceTemplateReference(uri="specmem://path/{+path}")
        paths = await client.complete(template, {"name": "path", "value": "001-db/"})
        assert paths.completion.values == ["001-db/memory/vacuum.md", "001-db/memory/wal.md"]

    in_memory(scenario, cfg)


def test_the_remember_prompt_lists_no_empty_folder_name(corpus, cfg, specs):
    write(specs / "loose.md", memory("Loose note", "Outside any spec folder."))
    with specmem.open() as mem:
        mem.scan()

    async def scenario(client: Client) -> None:
        prompt = await client.get_prompt("remember", {"decision": "We use WAL"})
        text = prompt.messages[0].content.text
        assert "(existing: 001-db, 002-auth)" in text, text

    in_memory(scenario, cfg)


def test_a_scan_reports_progress(corpus, cfg):
    updates: list[tuple[float, float | None, str | None]] = []

    async def progress(value: float, total: float | None, message: str | None) -> None:
        updates.append((value, total, message))

    async def scenario(client: Client) -> None:
        result = await client.call_tool("memory_index_scan", {"force": True}, progress_callback=progress)
        assert not result.is_error, result.content
        assert updates, "no progress notification"
        values = [u[0] for u in updates]
        assert values == sorted(set(values)), values  # the protocol wants a value that only grows
        assert any(m and m.startswith("indexing: 3/3") for _, _, m in updates), updates

    in_memory(scenario, cfg)


def test_a_server_started_outside_a_project_serves_the_clients_root(corpus, monkeypatch, tmp_path):
    """Editors may start servers in the home folder: the server serves the project of the client's root, and
    says which index that is."""
    project = corpus.parent
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.delenv("SPECMEM_ROOTS")
    monkeypatch.delenv("SPECMEM_DB")
    assert config.find_project(elsewhere) is None
    outside = config.resolve()

    async def roots(_: Any) -> types.ListRootsResult:
        return types.ListRootsResult(roots=[types.Root(uri=project.as_uri())])

    async def main() -> None:
        server = build_server(outside, load_model=False, client_roots=True)
        with anyio.fail_after(TIMEOUT):
            async with Client(server, mode="legacy", list_roots_callback=roots) as client:
                answer = await call(client, "memory_search", query="readers block writers", mode="keyword")
                assert [r["title"] for r in answer["results"]][:1] == ["WAL mode"]
                health = await call(client, "memory_health")
                assert health["database"] == str(project / ".specmem" / "index.db")

    anyio.run(main)
