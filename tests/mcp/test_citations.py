"""The status of cited code over MCP, in memory through the SDK's client: memory_stale, memory_get, the
resources (listing metadata and a closing note), and memory_update confirming a memory."""

from __future__ import annotations

import anyio
from mcp import Client

from specmem.server.mcp.server import build_server
from tests.helpers import call, in_memory


def run(cfg, scenario) -> None:
    async def main() -> None:
        with anyio.fail_after(120):
            async with Client(build_server(cfg, load_model=False)) as client:
                await scenario(client)

    anyio.run(main)


def test_stale_get_and_confirm_over_mcp(cited_repo, cfg):
    async def scenario(client: Client) -> None:
        stale = await call(client, "memory_stale")
        assert stale["total"] == 1 and [m["title"] for m in stale["items"]] == ["Cache TTL"]
        cited = stale["items"][0]["citations"][0]
        assert cited["status"] == "changed" and "+TTL = 30  # seconds" in cited["diff"]
        got = await call(client, "memory_get", id_or_path="003-cache/memory/keys.md")
        assert got["code"] == "moved" and got["citations"][0]["now_start_line"] == 32
        search = await call(client, "memory_search", query="cache keeps entries", mode="keyword")
        assert search["results"][0]["code"] == "changed"
        updated = await call(
            client, "memory_update", id_or_path=str(stale["items"][0]["id"]), confirm_citations=True
        )
        assert updated["changed"][-1] == "cites_checked"
        assert (await call(client, "memory_stale"))["total"] == 0

    run(cfg, scenario)


def test_resources_carry_the_code_status(cited_repo, cfg):
    async def scenario(client: Client) -> None:
        listed = {r.title: r for r in (await client.list_resources()).resources}
        ttl = listed["Cache TTL"]
        assert ttl.meta["code"] == "changed" and "cited code changed" in ttl.description
        assert listed["Cache keys"].meta["code"] == "moved"
        text = (await client.read_resource(ttl.uri)).contents[0].text
        body, _, note = text.partition("\n\n---\n")
        assert body == (cited_repo / "specs" / "003-cache" / "memory" / "ttl.md").read_text()
        assert note.startswith("⚠ The code this memory cites changed") and "+TTL = 30" in note

    run(cfg, scenario)


def test_context_and_search_mark_the_memory_whose_code_changed(cited_repo, cfg):
    async def scenario(client: Client) -> None:
        block = await call(client, "memory_context", task="how long does the cache keep entries")
        codes = {i["title"]: i["code"] for i in block["items"]}
        assert codes["Cache TTL"] == "changed"
        assert "Cache TTL (normal) · ⚠ cited code changed" in block["text"]
        assert "-line 11\n+TTL = 30  # seconds" in block["text"]
        found = await call(client, "memory_search", query="cache keeps entries", mode="keyword")
        assert found["results"][0]["code_notes"] == ["src/cache.py:10-12 changed (now 12-14)"]

    run(cfg, scenario)


def test_a_served_watcher_sees_a_cited_files_edit(cited_repo):
    """A server that hosts the watcher (as `specmem serve` does): an edit of the cited file (outside the memory roots) is
    reported by the next answers, without a scan."""
    code = cited_repo / "src" / "cache.py"

    async def scenario(client: Client) -> None:
        assert (await call(client, "memory_get", id_or_path="003-cache/memory/keys.md"))["code"] == "moved"
        lines = code.read_text().splitlines(keepends=True)
        lines[31] = "KEYS = 'by tenant'\n"  # line 32: "line 30", inside the moved span
        code.write_text("".join(lines))
        with anyio.fail_after(60):
            while True:
                got = await call(client, "memory_get", id_or_path="003-cache/memory/keys.md")
                if got["code"] == "changed":
                    break
                await anyio.sleep(0.2)
        assert "+KEYS = 'by tenant'" in got["citations"][0]["diff"]
        stale = await call(client, "memory_stale")
        assert {m["title"] for m in stale["items"]} == {"Cache TTL", "Cache keys"}

    in_memory(scenario, watch=True)
