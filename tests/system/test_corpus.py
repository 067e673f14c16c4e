"""The generated corpus (tests/corpus.py) is what the other tests rely on: seeded, complete, and indexed as written."""

from __future__ import annotations

import json

from specmem.indexer.tiers import TIERS
from tests.corpus import MALFORMED, generate, write_corpus

FEATURES = {
    "crlf",
    "bom",
    "camel",
    "toml",
    "body_tier",
    "no_frontmatter",
    "no_title",
    "empty_body",
    "anchors",
    "constitutional",
    "malformed",
}


def test_same_seed_same_bytes():
    assert [(m.rel_path, m.data) for m in generate(80, seed=3)] == [
        (m.rel_path, m.data) for m in generate(80, seed=3)
    ]
    assert [m.data for m in generate(80, seed=3)] != [m.data for m in generate(80, seed=4)]


def test_a_small_corpus_has_every_feature():
    memories = generate(30, seed=1)
    assert len(memories) == len({m.rel_path for m in memories}) == 30
    assert {m.tier for m in memories} == set(TIERS)
    assert {m.malformed for m in memories} >= set(MALFORMED)
    assert set().union(*(m.features for m in memories)) >= FEATURES
    assert any(m.crlf for m in memories) and any(m.bom for m in memories)
    assert {m.context_type for m in memories} - {None} and any(m.trigger_phrases for m in memories)
    assert any(m.tags for m in memories) and any(m.expires for m in memories)
    assert all(m.rel_path.endswith(".md") for m in memories)


def test_a_large_corpus_is_spread_like_a_real_one():
    memories = generate(1000, seed=0)
    sizes = sorted(len(m.data) for m in memories)
    assert sizes[0] < 200 and 2_000 < sizes[-1] < 12_000  # from one line to a few KB
    folders = {m.spec_folder for m in memories}
    assert len(folders) > 50 and "constitutional" in folders
    assert all(f == "constitutional" or f[:3].isdigit() for f in folders)
    assert sum(m.malformed is not None for m in memories) < 20  # a few broken files, not a broken corpus
    assert any(m.rel_path.endswith("/spec.md") for m in memories)


def test_1000_generated_files_are_indexed_as_written(specs, run_scan, conn):
    """Every file is indexed, with the metadata it was written with; broken ones carry a warning, others none."""
    memories = {m.rel_path: m for m in write_corpus(specs, n=1000, seed=11)}
    report = run_scan(embed=False)
    assert report.files_seen == report.added == 1000 and report.problems == []
    rows = conn.execute(
        "SELECT rel_path, spec_folder, title, importance_tier, context_type, trigger_phrases, tags, expires, "
        "anchors, warnings FROM memory_index"
    ).fetchall()
    assert {r[0] for r in rows} == set(memories)
    for rel, folder, title, tier, context_type, triggers, tags, expires, anchors, warnings in rows:
        m = memories[rel]
        assert (folder, title, tier, context_type, expires) == (
            m.spec_folder,
            m.title,
            m.tier,
            m.context_type,
            m.expires,
        ), rel
        assert tuple(json.loads(triggers)) == m.trigger_phrases, rel
        assert tuple(json.loads(tags)) == m.tags, rel
        assert tuple(json.loads(anchors)) == m.anchors, rel  # an anchor split over chunks is listed once
        assert bool(json.loads(warnings)) == (m.malformed is not None), (rel, warnings)
    chunked = conn.execute("SELECT count(DISTINCT memory_id) FROM memory_chunks").fetchall()[0][0]
    assert chunked >= 999  # every file with any text has chunks (one has an empty body)
