"""The MCP server on a shared PostgreSQL index (a real PostgreSQL with pgvector, started by the `pg_server`
fixture): memory_search, memory_list and memory_context stay in their project unless given `projects`, each
result names its project, and memory_get reads any project's memory by id."""

from __future__ import annotations

import os
from pathlib import Path

from mcp import Client

from specmem.indexer import config
from tests.helpers import call, cli, fails, in_memory, memory, write


def test_memory_search_projects(tmp_path: Path, pg_url: str) -> None:
    for name, body in (
        ("payments", "idempotency keys on every charge"),
        ("search", "idempotency of the indexer"),
    ):
        write(tmp_path / name / "specs" / "001-x" / "memory" / "a.md", memory(f"{name} note", body))
        (tmp_path / name / ".git").mkdir()
        env = {"SPECMEM_DB": pg_url, "SPECMEM_ROOTS": str(tmp_path / name / "specs")}
        assert cli("scan", cwd=tmp_path / name, env=env).returncode == 0

    async def scenario(client: Client) -> None:
        own = await call(client, "memory_search", query="idempotency", mode="keyword")
        assert [r["project"] for r in own["results"]] == ["payments"]
        every = await call(client, "memory_search", query="idempotency", mode="keyword", projects=["*"])
        assert sorted(r["project"] for r in every["results"]) == ["payments", "search"]
        named = await call(client, "memory_search", query="indexer", mode="keyword", projects=["search"])
        assert [(r["project"], r["title"]) for r in named["results"]] == [("search", "search note")]
        assert "no project 'nope'" in await fails(client, "memory_search", query="x", projects=["nope"])
        listed = await call(client, "memory_list", projects=["*"])
        assert sorted(i["project"] for i in listed["items"]) == ["payments", "search"]
        block = await call(client, "memory_context", task="idempotency of the indexer", projects=["search"])
        assert {i["project"] for i in block["items"]} == {"payments", "search"}
        other = next(i for i in listed["items"] if i["project"] == "search")
        assert (
            "idempotency of the indexer"
            in (await call(client, "memory_get", id_or_path=str(other["id"])))["content"]
        )

    env = {"SPECMEM_DB": pg_url, "SPECMEM_ROOTS": str(tmp_path / "payments" / "specs")}
    in_memory(scenario, config.resolve(env={**os.environ, **env}, cwd=tmp_path / "payments"))
