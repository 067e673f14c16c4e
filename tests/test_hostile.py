"""Hostile input: random and malicious queries, and paths that try to leave the roots, for every tool."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from mcp import Client

from specmem.indexer import db, scan
from specmem.indexer.embed import get_embedder
from specmem.server.mcp_server import build_server
from specmem.server.search import search
from tests.conftest import memory, write

FTS_NOISE = st.sampled_from(
    [
        '"',
        "*",
        "NEAR(",
        "AND",
        "OR",
        "NOT",
        "-",
        ":",
        "^",
        "(",
        ")",
        "'",
        "\x00",
        "{",
        "}",
        "; DROP TABLE memory_index; --",
        "' OR 1=1 --",
        "\\",
        "%",
        "_",
    ]
)


@pytest.fixture
def corpus(specs, cfg):
    write(specs / "001-a" / "memory" / "a.md", memory("Alpha", "tokens expire after one hour"))
    write(specs / "001-a" / "memory" / "b.md", memory("Bravo", "readers never block the writer"))
    conn = db.connect(cfg.db_path)
    scan.scan(conn, cfg, get_embedder(cfg.model))
    yield conn
    conn.close()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    parts=st.lists(st.one_of(st.text(max_size=30), FTS_NOISE), max_size=12),
    mode=st.sampled_from(["keyword", "semantic", "hybrid"]),
)
def test_any_query_gets_an_answer(corpus, hash_embedder, parts, mode):
    response = search(corpus, " ".join(parts), mode=mode, embedder=hash_embedder)
    assert response.mode_used in ("keyword", "semantic", "hybrid")
    assert all(r.path.endswith(".md") for r in response.results)
    assert corpus.execute("SELECT count(*) FROM memory_index").fetchall()[0][0] == 2  # nothing was dropped


def test_huge_query(corpus, hash_embedder):
    response = search(corpus, "tokens " * 15_000, mode="hybrid", embedder=hash_embedder)
    assert response.results and response.results[0].title == "Alpha"


def tool_runner(cfg):  # type: ignore[no-untyped-def]
    async def run(calls: list[tuple[str, dict[str, Any]]]) -> list[tuple[bool, str]]:
        out = []
        async with Client(build_server(cfg, load_model=False)) as client:
            for name, args in calls:
                result = await client.call_tool(name, args)
                out.append((result.is_error, result.content[0].text if result.content else ""))
        return out

    return lambda calls: anyio.run(run, calls)


ESCAPES = [
    "../../../etc/passwd",
    "/etc/passwd",
    "001-a/../../../../etc/passwd",
    "link/secret.md",
    "x\x00.md",
    "..",
    "~/.ssh/id_rsa",
]


def test_every_path_taking_tool_refuses_escapes(corpus, cfg, specs, tmp_path):
    secret = tmp_path / "outside" / "secret.md"
    write(secret, memory("Secret", "must never be served"))
    os.symlink(secret.parent, specs / "link")
    calls: list[tuple[str, dict[str, Any]]] = []
    for bad in ESCAPES:
        calls += [
            ("memory_get", {"id_or_path": bad}),
            ("memory_save", {"path": bad}),
            ("memory_index_scan", {"path_prefix": bad}),
            ("memory_update", {"id_or_path": bad, "tier": "critical"}),
            ("memory_delete", {"id_or_path": bad}),
            ("memory_write", {"title": "t", "content": "c", "spec_folder": bad}),
            ("checkpoint_create", {"name": bad}),
            ("checkpoint_restore", {"name": bad}),
            ("memory_index_scan", {"spec_folder": bad}),
        ]
    results = tool_runner(cfg)(calls)
    for (name, args), (is_error, text) in zip(calls, results, strict=True):
        assert is_error, (name, args, text)
        assert text and "Traceback" not in text, (name, args, text)
    assert secret.read_text() == memory("Secret", "must never be served")
    assert not list(tmp_path.glob("**/*must never*"))
    conn = db.connect(cfg.db_path, readonly=True)
    assert {r[0] for r in conn.execute("SELECT title FROM memory_index")} == {"Alpha", "Bravo"}
    assert Path("/etc/passwd").exists()


def test_unknown_tools_and_bad_arguments(corpus, cfg):
    results = tool_runner(cfg)(
        [
            ("no_such_tool", {}),
            ("memory_search", {}),
            ("memory_search", {"query": "x", "limit": "many"}),
            ("memory_search", {"query": "x", "limit": 0}),
            ("memory_search", {"query": "x" * 20_000}),
            ("memory_list", {"offset": -1}),
            ("memory_validate", {"id": "one", "useful": "maybe"}),
            ("memory_search", {"query": "tokens"}),
        ]
    )
    assert all(is_error for is_error, _ in results[:-1]), results
    assert results[-1][0] is False  # and the server still answers
