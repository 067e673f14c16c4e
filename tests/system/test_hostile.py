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
from specmem.server.mcp.server import build_server
from specmem.server.search import search
from tests.helpers import memory, write

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
    "link/secret.md",  # `link` is a symlink to a folder outside the roots
    "x\x00.md",
    "..",
    "~/.ssh/id_rsa",
]


def refusal(call: str, bad: str, specs: Path) -> str:
    """What the refusal of `bad` by `call` must say: why it is refused, not only that it failed."""
    nul = "a path cannot contain a NUL character"
    not_a_name = f"spec_folder {bad!r} is not a folder name like 003-auth"
    if call in (
        "memory_get",
        "memory_update",
        "memory_delete",
        "memory_save",
        "memory_index_scan path_prefix",
    ):
        return (
            nul if "\x00" in bad else f"{bad} is outside the memory roots ({specs}); give a path inside them"
        )
    if call == "memory_write":
        if bad == "link/secret.md":
            return f"{specs}/link/secret.md/memory leads out of the root {specs} (a symlink); refusing to write there"
        return "spec_folder contains a NUL character" if "\x00" in bad else not_a_name
    if call == "memory_index_scan spec_folder":
        if bad == "link/secret.md":
            return f"no spec folder {bad!r} under the roots"
        return not_a_name
    if call == "checkpoint_create":
        return (
            f"checkpoint name {bad!r} must be 1-64 letters, digits, '.', '_' or '-', starting with a letter"
        )
    assert call == "checkpoint_restore"
    return f"no checkpoint named {bad!r}; `specmem checkpoint list` (the checkpoint_list tool) shows them"


def test_every_path_taking_tool_refuses_escapes(corpus, cfg, specs, tmp_path):
    secret = tmp_path / "outside" / "secret.md"
    write(secret, memory("Secret", "must never be served"))
    os.symlink(secret.parent, specs / "link")
    calls: list[tuple[str, str, str, dict[str, Any]]] = []  # (what, bad input, tool, arguments)
    for bad in ESCAPES:
        calls += [
            ("memory_get", bad, "memory_get", {"id_or_path": bad}),
            ("memory_save", bad, "memory_save", {"path": bad}),
            ("memory_index_scan path_prefix", bad, "memory_index_scan", {"path_prefix": bad}),
            ("memory_update", bad, "memory_update", {"id_or_path": bad, "tier": "critical"}),
            ("memory_delete", bad, "memory_delete", {"id_or_path": bad}),
            ("memory_write", bad, "memory_write", {"title": "t", "content": "c", "spec_folder": bad}),
            ("checkpoint_create", bad, "checkpoint_create", {"name": bad}),
            ("checkpoint_restore", bad, "checkpoint_restore", {"name": bad}),
            ("memory_index_scan spec_folder", bad, "memory_index_scan", {"spec_folder": bad}),
        ]
    results = tool_runner(cfg)([(tool, args) for _, _, tool, args in calls])
    for (what, bad, tool, args), (is_error, text) in zip(calls, results, strict=True):
        assert is_error, (what, args, text)
        assert text.startswith(f"Error executing tool {tool}: "), (what, args, text)
        assert refusal(what, bad, specs) in text, (what, args, text)
    assert secret.read_text() == memory("Secret", "must never be served")
    assert [p.name for p in secret.parent.iterdir()] == ["secret.md"]  # nothing written beside it
    conn = db.connect(cfg.db_path, readonly=True)
    assert {r[0] for r in conn.execute("SELECT title FROM memory_index")} == {"Alpha", "Bravo"}
    assert Path("/etc/passwd").exists()


def test_a_spec_folder_symlinked_out_of_the_roots(corpus, cfg, specs, tmp_path):
    """A spec folder that is a symlink out of the roots: a scan of it indexes nothing and says why; a write into
    it is refused."""
    secret = tmp_path / "outside" / "secret.md"
    write(secret, memory("Secret", "must never be served"))
    os.symlink(secret.parent, specs / "link")
    (scanned, scan_text), (written, write_text) = tool_runner(cfg)(
        [
            ("memory_index_scan", {"spec_folder": "link"}),
            ("memory_write", {"title": "t", "content": "c", "spec_folder": "link"}),
        ]
    )
    assert not scanned and f"symlink to {secret.parent}, outside the roots; not indexed" in scan_text
    assert written and f"{specs}/link/memory leads out of the root {specs} (a symlink)" in write_text
    assert [p.name for p in secret.parent.iterdir()] == ["secret.md"]
    conn = db.connect(cfg.db_path, readonly=True)
    assert {r[0] for r in conn.execute("SELECT title FROM memory_index")} == {"Alpha", "Bravo"}


BAD_ARGUMENTS = [  # (tool, arguments, what the one-line refusal must say)
    ("memory_search", {}, ["query: required"]),
    ("memory_search", {"query": "x", "limit": "many"}, ["limit: input should be a valid integer"]),
    ("memory_search", {"query": "x", "limit": 0}, ["limit: input should be greater than or equal to 1"]),
    ("memory_search", {"query": "x", "limit": 101}, ["limit: input should be less than or equal to 100"]),
    ("memory_search", {"query": "x" * 20_000}, ["query: string should have at most 10000 characters"]),
    (
        "memory_search",
        {"query": "x", "mode": "fuzzy"},
        ["mode: 'fuzzy' is not one of: keyword, semantic, hybrid"],
    ),
    ("memory_list", {"offset": -1}, ["offset: input should be greater than or equal to 0"]),
    (
        "memory_list",
        {"tier": "urgent"},
        ["tier: 'urgent' is not one of: constitutional, critical, important"],
    ),
    (
        "memory_validate",
        {"id": "one", "useful": "maybe"},
        ["id: input should be a valid integer", "useful: input should be a valid boolean"],
    ),
]


def test_unknown_tools_and_bad_arguments(corpus, cfg):
    results = tool_runner(cfg)(
        [("no_such_tool", {})]
        + [(tool, args) for tool, args, _ in BAD_ARGUMENTS]
        + [("memory_search", {"query": "tokens"})]
    )
    assert results[0] == (True, "Unknown tool: no_such_tool")
    for (tool, args, said), (is_error, text) in zip(BAD_ARGUMENTS, results[1:-1], strict=True):
        assert is_error and text.startswith(f"Error executing tool {tool}: invalid arguments: "), (tool, text)
        assert "\n" not in text and "pydantic" not in text, (tool, args, text)  # one line, no link
        for part in said:
            assert part in text, (tool, args, text)
    assert results[-1][0] is False  # and the server still answers
