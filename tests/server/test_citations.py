"""Every answer carries the status of the code a memory cites: search results, get, context blocks, stats."""

from __future__ import annotations

import specmem
from specmem.server import citations


def test_search_results_carry_the_code_status(cited_repo):
    with specmem.open() as mem:
        hits = {r.title: r for r in mem.search("cache", mode="keyword").results}
    assert hits["Cache TTL"].code == "changed"
    assert hits["Cache TTL"].code_notes == ["src/cache.py:10-12 changed (now 12-14)"]
    assert (hits["Cache keys"].code, hits["Cache keys"].code_notes) == (
        "moved",
        ["src/cache.py:30-31 moved to 32-33"],
    )


def test_get_carries_each_citation_with_its_diff(cited_repo):
    with specmem.open() as mem:
        got = mem.get("003-cache/memory/ttl.md")
    assert got.code == "changed" and len(got.citations) == 1
    cite = got.citations[0]
    assert (cite.path, cite.start_line, cite.end_line, cite.line) == ("src/cache.py", 10, 12, 6)
    assert cite.baseline.startswith("git ") and (cite.now_start_line, cite.now_end_line) == (12, 14)
    assert "-line 11\n+TTL = 30  # seconds" in cite.diff


def test_a_context_block_marks_a_memory_whose_code_changed_with_the_diff(cited_repo):
    with specmem.open() as mem:
        block = mem.context("how long does the cache keep entries")
    ttl = next(i for i in block.items if i.title == "Cache TTL")
    assert ttl.code == "changed"
    assert "Cache TTL (normal) · ⚠ cited code changed" in block.text
    assert "check it before relying on this memory" in block.text
    assert "```diff\n@@ -10,3 +12,3 @@\n line 10\n-line 11\n+TTL = 30  # seconds\n line 12\n```" in block.text
    assert "Cites src/cache.py:30-31 moved to 32-33" in block.text


def test_stats_count_citations_by_status(cited_repo):
    with specmem.open() as mem:
        assert mem.stats().citations == {"changed": 1, "moved": 1}


def test_an_index_made_before_citations_reads_without_them(cited_repo, cfg):
    import apsw

    conn = apsw.Connection(str(cfg.db_path))
    conn.execute("DROP TABLE citations")
    conn.close()
    with specmem.open() as mem:
        assert mem.search("cache", mode="keyword").results[0].code is None
        assert mem.stale().total == 0 and mem.stats().citations == {}
    assert citations.STALE == ("changed", "missing")
