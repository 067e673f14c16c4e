"""Arguments at and past every bound: each call is answered with its result or with an error that names the
argument, never the bare "Error executing tool X" of a crash (in memory, through the SDK's client)."""

from __future__ import annotations

import anyio
from mcp import Client

from specmem.server.mcp.server import build_server
from tests.helpers import call, fails

CRASH = "Error executing tool {}"  # exactly this, and nothing more, when a tool crashed


def test_out_of_range_arguments_are_answered(indexed_specs, cfg):
    async def main() -> None:
        async with Client(build_server(cfg, load_model=False)) as client:
            for offset in (10**6, 2**63, 10**30):  # past every page: an empty one
                page = await call(client, "memory_list", offset=offset)
                assert page["items"] == [] and page["total"] > 0, page
            for since in ("0001-01-01", "0001-01-01T00:00:00+14:00", "1969-12-31"):
                ancient = await call(client, "memory_search", query="tokens", filters={"since": since})
                assert ancient["results"], f"every memory was modified after {since}"
            for since in ("9999-12-31", "9999-12-31T23:59:59-12:00"):
                future = await call(client, "memory_search", query="tokens", filters={"since": since})
                assert future["results"] == []
            many = await fails(
                client, "memory_search", query="tokens", filters={"tags": [f"t{i}" for i in range(5000)]}
            )
            assert many != CRASH.format("memory_search") and "at most 100 tags" in many, many
            some = await call(
                client, "memory_search", query="tokens", filters={"tags": [f"t{i}" for i in range(100)]}
            )
            assert some["results"] == []

    anyio.run(main)
