"""Memories as MCP resources, change notifications and the two prompts, through real MCP clients over stdio
(the 2026-07-28 protocol with subscriptions/listen, and the handshake era with resources/subscribe)."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourcesListChanged, ResourceUpdated

import specmem
from tests.helpers import memory, write

WAIT = 30  # seconds: a generous bound for an event wait, not a speed assertion


@pytest.fixture
def corpus(specs: Path) -> Path:
    write(specs / "constitutional" / "truth.md", memory("Files are the truth", "The index is derived."))
    write(
        specs / "001-db" / "memory" / "wal.md",
        memory(
            "WAL mode",
            "Readers never block.",
            importance_tier="critical",
            trigger_phrases="[database is locked]",
        ),
    )
    write(specs / "002-auth" / "memory" / "old.md", memory("Old", "cookies", importance_tier="deprecated"))
    with specmem.open() as mem:
        mem.scan()
    return specs


def run(scenario: Callable[[Client], Awaitable[None]], *, watch: bool = False, **client: Any) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "specmem", "serve"],
        env={**os.environ, "SPECMEM_WATCH": "1" if watch else "0"},
        cwd=str(Path.cwd()),
    )

    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(params, **client) as connected:
                if watch:  # edits below are made by this process; the server's watcher indexes them
                    while not (await connected.call_tool("memory_health", {})).structured_content["watching"]:
                        await anyio.sleep(0.05)
                await scenario(connected)

    anyio.run(main)


def uri_of(resources: list[Any], title: str) -> str:
    return next(str(r.uri) for r in resources if r.title == title)


def test_resources_listed_and_read(corpus):
    async def scenario(client: Client) -> None:
        assert client.server_capabilities.resources is not None
        listed = (await client.list_resources()).resources
        assert [r.title for r in listed] == [
            "Files are the truth",
            "WAL mode",
        ]  # deprecated hidden, rules first
        wal = listed[1]
        assert str(wal.uri).startswith("specmem://memory/") and wal.mime_type == "text/markdown"
        assert wal.name == "001-db/memory/wal.md" and wal.meta["tier"] == "critical"
        assert (
            wal.meta["spec_folder"] == "001-db"
            and wal.annotations.priority > listed[0].annotations.priority - 1
        )
        read = (await client.read_resource(str(wal.uri))).contents[0]
        assert (
            read.text == (corpus / "001-db" / "memory" / "wal.md").read_text()
            and read.mime_type == "text/markdown"
        )
        by_path = (await client.read_resource("specmem://path/001-db/memory/wal.md")).contents[0]
        assert by_path.text == read.text
        templates = {t.uri_template for t in (await client.list_resource_templates()).resource_templates}
        assert templates == {"specmem://memory/{id}", "specmem://path/{+path}"}
        for missing in (
            "specmem://memory/99999",
            "specmem://path/none/memory/x.md",
            "specmem://path/../../etc/passwd",
        ):
            with pytest.raises(MCPError):
                await client.read_resource(missing)

    run(scenario)


def test_subscriber_hears_of_edits_and_new_files(corpus):
    """Another process edits a memory: the subscriber gets resources/updated; a new file: list_changed."""

    async def scenario(client: Client) -> None:
        listed = (await client.list_resources()).resources
        wal_uri = uri_of(listed, "WAL mode")
        async with client.listen(resources_list_changed=True, resource_subscriptions=[wal_uri]) as events:
            edit = f"p=open({str(corpus / '001-db/memory/wal.md')!r}, 'a'); p.write('More.\\n'); p.close()"
            subprocess.run([sys.executable, "-c", edit], check=True, timeout=30)
            with anyio.fail_after(WAIT):
                event = await anext(aiter(events))
            assert event == ResourceUpdated(uri=wal_uri)
            assert "More." in (await client.read_resource(wal_uri)).contents[0].text

            write(corpus / "003-new" / "memory" / "fresh.md", memory("Fresh", "a new memory"))
            with anyio.fail_after(WAIT):
                event = await anext(aiter(events))
            assert event == ResourcesListChanged()
            assert "Fresh" in [r.title for r in (await client.list_resources()).resources]

    run(scenario, watch=True)


def test_handshake_era_subscribe(corpus):
    """Clients on protocol versions before 2026-07-28 subscribe with resources/subscribe."""
    got: list[Any] = []
    arrived = anyio.Event()

    async def on_message(message: Any) -> None:
        got.append(message)
        arrived.set()

    async def scenario(client: Client) -> None:
        assert client.server_capabilities.resources.subscribe is True
        wal_uri = uri_of((await client.list_resources()).resources, "WAL mode")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # deprecated as of 2026-07-28, which is the point of this test
            await client.subscribe_resource(wal_uri)
        path = corpus / "001-db" / "memory" / "wal.md"
        path.write_text(path.read_text() + "Again.\n")
        with anyio.fail_after(WAIT):
            await arrived.wait()
        assert getattr(got[0], "method", None) == "notifications/resources/updated"
        assert got[0].params.uri == wal_uri

    run(scenario, watch=True, mode="legacy", message_handler=on_message)


def test_prompts_listed_and_rendered(corpus):
    async def scenario(client: Client) -> None:
        prompts = {p.name: p for p in (await client.list_prompts()).prompts}
        assert set(prompts) == {"remember", "recall"}
        assert [a.name for a in prompts["recall"].arguments] == ["task", "budget"]
        remember = await client.get_prompt(
            "remember", {"decision": "We use WAL because readers must not block"}
        )
        text = remember.messages[0].content.text
        assert "memory_write" in text and "trigger_phrases" in text and "001-db" in text
        assert "We use WAL because readers must not block" in text
        recall = await client.get_prompt("recall", {"task": "why is the database is locked", "budget": "400"})
        block = recall.messages[0].content.text
        assert (
            "## Rules" in block and "Files are the truth" in block and "specs/001-db/memory/wal.md:" in block
        )
        for budget in (
            "lots",
            "1" * 5000,
            "0",
            "-5",
            "1e9",
            "10" + "0" * 30,
        ):  # said, not "Internal server error"
            with pytest.raises(MCPError, match="budget must be"):
                await client.get_prompt("recall", {"task": "x", "budget": budget})
        with pytest.raises(MCPError, match="empty"):
            await client.get_prompt("recall", {"task": "  ", "budget": "400"})

    run(scenario)
