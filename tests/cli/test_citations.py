"""The CLI as a user runs it on a project whose memories cite code: stale, search, get, update, stats."""

from __future__ import annotations

import json

from tests.helpers import cli


def test_stale_lists_what_changed_and_update_confirms_it(cited_repo):
    r = cli("stale", "--diff")
    assert r.returncode == 0, r.stderr
    assert "Cache TTL" in r.stdout and "cites src/cache.py:10-12 changed (now 12-14)" in r.stdout
    assert "+TTL = 30  # seconds" in r.stdout and "Cache keys" not in r.stdout  # moved is not stale
    assert "specmem update ID --confirm-citations" in r.stderr
    listed = json.loads(cli("stale", "--json").stdout)
    assert listed["total"] == 1 and listed["items"][0]["citations"][0]["status"] == "changed"
    memory_id = str(listed["items"][0]["id"])
    r = cli("update", memory_id, "--confirm-citations")
    assert r.returncode == 0, r.stderr
    assert "#L12-L14" in r.stdout and "cites_checked" in r.stdout
    r = cli("stale")
    assert r.returncode == 0 and r.stdout == "" and "no memory cites code that changed" in r.stderr


def test_search_get_and_stats_show_the_code_status(cited_repo):
    r = cli("search", "cache", "--mode", "keyword")
    assert r.returncode == 0, r.stderr
    assert "cites src/cache.py:10-12 changed (now 12-14)" in r.stdout
    assert "cites src/cache.py:30-31 moved to 32-33" in r.stdout
    r = cli("get", "003-cache/memory/ttl.md")
    assert r.returncode == 0 and "cites src/cache.py:10-12 changed (now 12-14)" in r.stderr
    assert "+TTL = 30" in r.stderr and "[ttl](../../../src/cache.py#L10-L12)" in r.stdout
    assert "citations of code: changed 1, moved 1" in cli("stats").stdout


def test_confirming_a_memory_that_cites_nothing_is_an_error(cited_repo):
    (cited_repo / "specs" / "003-cache" / "memory" / "plain.md").write_text("# Plain\n\nNo code.\n")
    assert cli("scan", "--no-embed").returncode == 0
    r = cli("update", "003-cache/memory/plain.md", "--confirm-citations")
    assert r.returncode != 0 and "cites no code" in r.stderr and "Traceback" not in r.stderr


def test_context_shows_the_changed_code_to_the_assistant(cited_repo):
    r = cli("context", "how long does the cache keep entries")
    assert r.returncode == 0, r.stderr
    assert "⚠ The code this memory cites changed since it was written" in r.stdout
    assert "-line 11\n+TTL = 30  # seconds" in r.stdout
    block = json.loads(cli("context", "how long does the cache keep entries", "--json").stdout)
    assert {i["title"]: i["code"] for i in block["items"]}["Cache TTL"] == "changed"


def test_deleting_the_index_and_scanning_again_gives_the_same_statuses(cited_repo):
    before = json.loads(cli("stale", "--json").stdout)
    got = json.loads(cli("get", "003-cache/memory/keys.md", "--json").stdout)
    assert before["total"] == 1 and got["citations"][0]["status"] == "moved"
    index = cited_repo / ".specmem"
    for f in index.glob("index.db*"):
        f.unlink()
    assert not (index / "index.db").exists()
    r = cli("scan", "--no-embed")
    assert r.returncode == 0, r.stderr
    after = json.loads(cli("stale", "--json").stdout)
    assert [c for m in after["items"] for c in m["citations"]] == [
        c for m in before["items"] for c in m["citations"]
    ]
    assert (
        json.loads(cli("get", "003-cache/memory/keys.md", "--json").stdout)["citations"] == got["citations"]
    )
