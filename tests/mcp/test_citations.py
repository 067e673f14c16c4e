"""The status of cited code over MCP, in memory through the SDK's client: memory_stale, memory_get, the
resources (listing metadata and a closing note), and memory_update confirming a memory."""

from __future__ import annotations

import anyio
from mcp import Client

from specmem.server.mcp.server import build_server
from tests.helpers import call


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
