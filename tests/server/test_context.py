"""memory_context: one block of memories for a task within a token budget, through the library, the CLI and the
SDK's MCP client in memory (tokens counted independently with the model's tokenizer)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

import specmem
from specmem.indexer import config
from specmem.indexer.embed import resolve_model_path
from tests.helpers import in_memory, memory, write

CITATION = re.compile(r"^--- (\S+):(\d+)-(\d+) · ", re.MULTILINE)


@pytest.fixture
def project(specs: Path) -> Path:
    write(specs / "constitutional" / "truth.md", memory("Files are the truth", "The index is derived."))
    write(specs / "constitutional" / "tests.md", memory("Run the tests", "Every change runs the suite."))
    write(
        specs / "001-db" / "memory" / "wal.md",
        memory(
            "WAL mode",
            "Readers never block the writer.\n\n## Why\n\nWAL keeps readers on a snapshot.\n\n"
            "<!-- ANCHOR:busy -->\nA busy timeout of 15 s, retried.\n<!-- /ANCHOR:busy -->\n\n## History\n\n"
            + "Rollback journal mode blocked readers during every write. "
            * 12,
            importance_tier="critical",
            trigger_phrases="[database is locked]",
        ),
    )
    write(
        specs / "001-db" / "memory" / "vacuum.md",
        memory("Vacuum weekly", "The database is vacuumed weekly; readers see no pause."),
    )
    write(specs / "002-auth" / "memory" / "jwt.md", memory("JWT tokens", "Tokens expire after one hour."))
    return specs


def check_citations(project_dir: Path, text: str, items: list[Any]) -> int:
    """Every item's quote in the text is exactly the lines its citation names, read from the file now."""
    for item in items:
        item = item if isinstance(item, dict) else item.model_dump()
        path, span = item["citation"].rsplit(":", 1)
        start, end = (int(n) for n in span.split("-"))
        assert (start, end) == (item["start_line"], item["end_line"])
        lines = (project_dir / path).read_text().splitlines()
        quoted = "\n".join(lines[start - 1 : end]).strip("\n")
        header = f"--- {item['citation']} · {item['title']} ({item['tier']})\n"
        assert header + quoted + "\n" in text, item["citation"]
    assert len(CITATION.findall(text)) == len(items)
    return len(items)


def test_order_dedup_citations_and_budget(project, isolated):
    with specmem.open() as mem:
        mem.scan()
        block = mem.context("Why is the database is locked error back when readers run?")
    reasons = [i.reason for i in block.items]
    assert reasons == sorted(reasons, key=["rule", "trigger", "search"].index), reasons
    assert reasons[:3] == ["rule", "rule", "trigger"]  # every rule, then the triggered memory
    ids = [i.id for i in block.items] + [i.id for i in block.left_out]
    assert len(ids) == len(set(ids)), "a memory appears once"
    wal = next(i for i in block.items if i.title == "WAL mode")
    assert wal.reason == "trigger" and wal.whole and wal.score is not None  # also a search hit: listed once
    assert block.tokens <= block.budget and not block.left_out
    assert check_citations(isolated, block.text, block.items) == len(block.items)
    assert (
        block.text.index("## Rules") < block.text.index("## Named by") < block.text.index("## Most relevant")
    )
    with specmem.open() as mem:
        assert mem.context("Why is the database is locked error back when readers run?") == block


def test_tight_budget_gives_sections_and_lists_what_is_left_out(project, isolated):
    with specmem.open() as mem:
        mem.scan()
        roomy = mem.context("database is locked busy timeout", budget=2000)
        tight = mem.context("database is locked busy timeout", budget=200)
    assert tight.tokens <= 200 < roomy.tokens
    wal = next(i for i in roomy.items if i.title == "WAL mode")
    assert wal.whole
    shown = {i.title: i for i in tight.items}
    if "WAL mode" in shown:
        assert not shown["WAL mode"].whole
    assert tight.left_out and "Left out for the budget" in tight.text
    assert {i.id for i in tight.items} | {i.id for i in tight.left_out} == {i.id for i in roomy.items}
    assert check_citations(isolated, tight.text, tight.items) == len(tight.items)
    with pytest.raises(specmem.SearchError, match="budget"):
        with specmem.open() as mem:
            mem.context("x", budget=10)


def test_cli_context(project, isolated):
    done = subprocess.run(
        [sys.executable, "-m", "specmem", "scan"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    shown = subprocess.run(
        [sys.executable, "-m", "specmem", "context", "database is locked", "--budget", "300"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "specs/001-db/memory/wal.md:" in shown.stdout and "/300 tokens" in shown.stderr
    as_json = subprocess.run(
        [sys.executable, "-m", "specmem", "context", "database is locked", "--json"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert json.loads(as_json.stdout)["items"][0]["reason"] == "rule"
    bad = subprocess.run(
        [sys.executable, "-m", "specmem", "context", "x", "--budget", "5"], capture_output=True, text=True
    )
    assert bad.returncode == 2 and "budget" in bad.stderr.lower()


# -- through the SDK's MCP client, with the model's own tokenizer ----------------------------------------------------


def test_mcp_context_within_budget_counted_independently(project, isolated, real_embedder):
    from tokenizers import Tokenizer

    model_dir = resolve_model_path(config.DEFAULT_MODEL)
    assert model_dir is not None
    tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tokenizer.no_truncation()
    with specmem.open(model=config.DEFAULT_MODEL, embedder=real_embedder) as mem:
        mem.scan()

    async def scenario(client: Client) -> None:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert tools["memory_context"].output_schema is not None
        for budget in (200, 350, 2000):
            result = await client.call_tool(
                "memory_context", {"task": "database is locked while readers run", "budget": budget}
            )
            assert not result.is_error, result.content[0].text
            block: dict[str, Any] = result.structured_content
            text = result.content[0].text
            assert text == block["text"], "the text content is the block itself, ready to paste"
            counted = len(tokenizer.encode(text, add_special_tokens=False).ids)
            assert counted == block["tokens"] <= budget
            assert check_citations(isolated, text, block["items"]) == len(block["items"])
            assert [i["reason"] for i in block["items"]][:2] == ["rule", "rule"] or block["left_out"]
        error = await client.call_tool("memory_context", {"task": "x", "budget": 50})
        assert error.is_error

    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # (real_embedder set it for the session)
    in_memory(scenario, config.resolve(model=config.DEFAULT_MODEL))


def test_every_rule_leads_the_context(specs):
    for n in range(9):
        write(specs / "constitutional" / f"rule{n}.md", memory(f"Rule {n}", f"Always do thing {n}."))
    write(specs / "001-a" / "memory" / "cache.md", memory("Cache layer", "The cache layer is per process."))
    with specmem.open() as mem:
        mem.scan()
        block = mem.context("cache layer")
    assert [i.reason for i in block.items] == ["rule"] * 9 + ["search"]
