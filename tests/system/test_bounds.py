"""Every parser and every per-file or per-session collection has a bound, and hitting it is a warning or a clear
error, never a dead process, a traceback or a call that takes a minute: deep JSON on stdio, deep TOML frontmatter,
a `specmem.toml` nested 20,000 deep or holding a 5,000-digit number, 50,000 trigger phrases in one file, 3,000
rules, and a client subscribing to any number of URIs."""

from __future__ import annotations

import dataclasses
import json
import random
import re
from pathlib import Path, PurePosixPath
from types import SimpleNamespace

import pytest
from mcp.shared.exceptions import MCPError

import specmem
from specmem.indexer import parse as parse_mod
from specmem.indexer.config import resolve
from specmem.indexer.errors import ConfigError
from specmem.indexer.parse import normalise, parse
from specmem.server import context as context_mod
from specmem.server import memories
from specmem.server import search as search_mod
from specmem.server.mcp import resources
from tests.helpers import StdioServer, cli, memory, write


def deep(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


# -- JSON on stdio ------------------------------------------------------------------------------------------------


def test_deeply_nested_json_on_stdio_is_answered_and_the_server_goes_on(indexed_specs, monkeypatch):
    monkeypatch.setenv("SPECMEM_WATCH", "0")
    server = StdioServer()
    try:
        server.initialize()
        arguments = '{"query":' + deep(600) + "}"
        server.send(
            '{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"memory_search","arguments":'
            + arguments
            + "}}"
        )
        answer = server.reply(7)
        assert answer["error"]["code"] in (-32700, -32600), answer
        server.send(deep(100_000, "{}"))  # a bare array, too deep for any parser: no id to answer
        assert server.reply(None)["error"]["code"] == -32700
        server.send('{"jsonrpc":"2.0","id":8,"method":"tools/list"}')
        assert server.reply(8)["result"]["tools"]
    finally:
        server.close()
    assert server.proc.returncode == 0


# -- frontmatter and trigger phrases ------------------------------------------------------------------------------


NESTED_FRONTMATTER = {
    "toml": f'+++\ntitle = "Deep"\na = {deep(25_000)}\n+++',
    "yaml-flow": f"---\ntitle: Deep\na: {deep(25_000)}\n---",
    "yaml-block": "---\ntitle: Deep\na:\n" + "- " * 20_000 + "x\n---",
}


@pytest.mark.parametrize("kind", list(NESTED_FRONTMATTER))
def test_frontmatter_nested_deep_is_a_warning_and_writes_go_on(specs, cfg, run_scan, kind):
    data = f"{NESTED_FRONTMATTER[kind]}\n# Deep\n\nbody words\n".encode()
    assert len(data) < parse_mod.MAX_FRONTMATTER_BYTES
    parsed = parse(data, PurePosixPath("001-a/memory/deep.md"))
    assert any("nest" in w for w in parsed.warnings), parsed.warnings
    write(specs / "001-a" / "memory" / "deep.md", data)
    report = run_scan()
    assert not report.problems, report.problems
    with specmem.open() as mem:
        written = mem.write(
            title="Next decision", content="written beside the deep file", spec_folder="001-a"
        )
    assert written.id


def test_a_trigger_section_of_50000_items_is_cut_with_a_warning():
    items = "\n".join(f"- phrase number {i}" for i in range(50_000))
    data = f"# Many\n\n## Trigger phrases\n\n{items}\n".encode()
    parsed = parse(data, PurePosixPath("x.md"))
    assert len(parsed.trigger_phrases) == parse_mod.MAX_TRIGGER_PHRASES
    assert any("trigger phrases" in w for w in parsed.warnings)
    long = parse(b"---\ntrigger_phrases: [" + b"x" * 5000 + b"]\n---\n# T\n", PurePosixPath("y.md"))
    assert long.trigger_phrases == [] and long.warnings


def test_trigger_matching_looks_only_at_phrases_whose_words_occur(indexed_specs, cfg):
    """The index answers as a search of every phrase's pattern would, without running the patterns of phrases
    whose words are not in the prompt (so 50,000 phrases cost what the prompt's words cost)."""
    rng = random.Random(3)
    words = ["db", "lock", "c++", "node.js", "wal", "café", "ÉTÉ", "x_y", "#tag", "a-b", "(paren)", "ok"]
    rows = [
        SimpleNamespace(id=i, path=f"/p{i}", title=f"t{i}", tier="normal", spec_folder="f") for i in range(40)
    ]
    phrases = [(" ".join(rng.choices(words, k=rng.randint(1, 3))), rows[i % 40]) for i in range(200)]
    index = memories.TriggerIndex(phrases)
    for _ in range(200):
        prompt = " ".join(rng.choices(words + ["zz", "the", ".", ","], k=rng.randint(1, 12)))
        expected = set()
        text = normalise(prompt)
        for phrase, row in phrases:
            norm = " ".join(normalise(phrase).split())
            if re.search(r"(?<!\w)" + r"\s+".join(map(re.escape, norm.split())) + r"(?!\w)", text):
                expected.add((row.id, phrase))
        got = {(m.id, p) for m in memories.match_triggers(index, prompt, 1000) for p in m.phrases}
        assert got == expected, prompt
    assert index.searched <= sum(1 for _ in phrases) * 200  # sanity: it counts the patterns it runs
    before = index.searched
    memories.match_triggers(index, "nothing in common here " * 5000, 10)
    assert index.searched == before


# -- specmem.toml ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "include = " + deep(20_000, '"x"') + "\n",
        "checkpoint_max = " + "9" * 5000 + "\n",
        "checkpoint_max_days = " + "9" * 5000 + "\n",
        'exclude = ["' + "y" * 10 + '"]\n' + "#" * (2 * 1024 * 1024) + "\n",
    ],
    ids=["nested", "digits", "float-digits", "huge"],
)
def test_a_hostile_project_file_is_one_clear_error(isolated, monkeypatch, text):
    monkeypatch.delenv("SPECMEM_ROOTS")
    write(isolated / "specmem.toml", text)
    with pytest.raises(ConfigError):
        resolve()
    result = cli("stats")
    assert result.returncode != 0 and "Traceback" not in result.stderr, result.stderr
    assert "specmem.toml" in result.stderr and len(result.stderr) < 2000


# -- many rules ---------------------------------------------------------------------------------------------------


@pytest.fixture
def many_rules(specs: Path, cfg, run_scan) -> int:
    count = 3000
    for i in range(count):
        write(
            specs / "constitutional" / f"rule-{i:04d}.md", memory(f"Rule {i}", f"always check item {i} twice")
        )
    write(specs / "001-a" / "memory" / "plain.md", memory("Plain", "check the plain memory"))
    run_scan()
    return count


def test_3000_rules_are_bounded_in_search_and_context(many_rules, monkeypatch):
    calls: list[int] = []
    real = context_mod.assemble

    def counting(conn, config, count, *args, **kwargs):
        def counted(texts):
            calls.append(len(texts))
            return count(texts)

        return real(conn, config, counted, *args, **kwargs)

    monkeypatch.setattr(context_mod, "assemble", counting)
    with specmem.open() as mem:
        found = mem.search("check", all_rules=True)
        rules = [r for r in found.results if r.always_surfaced]
        assert len(rules) == search_mod.MAX_RULES
        assert any("constitutional" in n for n in found.notes), found.notes
        assert len(json.dumps(dataclasses.asdict(found), default=str)) < 500_000
        block = mem.context("check everything", budget=context_mod.MAX_BUDGET)
    shown = [i for i in block.items if i.reason == "rule"] + [o for o in block.left_out if o.reason == "rule"]
    assert len(shown) <= search_mod.MAX_RULES
    # The tokenizer is asked about each memory a bounded number of times, not once per memory per memory.
    assert len(calls) <= 6 * search_mod.MAX_RULES + 20, len(calls)


# -- subscriptions --------------------------------------------------------------------------------------------------


def test_subscriptions_per_connection_are_bounded():
    notifier = resources.Notifier(bus=None)  # type: ignore[arg-type]
    # A connection is told apart by its one record of the client's initialize parameters (see _connection_key).
    session = SimpleNamespace(client_params=object())
    for i in range(resources.MAX_SUBSCRIPTIONS):
        notifier.subscribe(session, f"specmem://memory/{i}")  # type: ignore[arg-type]
    notifier.subscribe(session, "specmem://memory/0")  # type: ignore[arg-type]
    with pytest.raises(MCPError, match="subscriptions"):
        notifier.subscribe(session, "specmem://memory/x")  # type: ignore[arg-type]
    with pytest.raises(MCPError, match="long"):
        other = SimpleNamespace(client_params=object())
        notifier.subscribe(other, "specmem://memory/" + "9" * 5000)  # type: ignore[arg-type]
    assert sum(len(uris) for _, uris in notifier.legacy.values()) == resources.MAX_SUBSCRIPTIONS

    kept = []  # the sessions stay alive, as connections do, so each key is distinct
    for _ in range(resources.MAX_CONNECTIONS + 5):
        kept.append(SimpleNamespace(client_params=object()))
        notifier.connect(kept[-1])  # type: ignore[arg-type]
    assert len(notifier.legacy) == resources.MAX_CONNECTIONS
