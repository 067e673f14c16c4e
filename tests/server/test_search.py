import datetime as dt
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import specmem
from specmem.indexer import db
from specmem.indexer.errors import SearchError
from specmem.indexer.scan import scan
from specmem.server.search import Filters, fts_query, search
from tests.helpers import memory, write


@pytest.fixture
def corpus(specs, run_scan, conn):
    write(specs / "constitutional" / "rule.md", memory("Always run tests", "tests before merge"))
    write(
        specs / "001-auth" / "memory" / "jwt.md",
        memory(
            "JWT tokens",
            "tokens expire after one hour",
            importance_tier="critical",
            tags="[auth, security]",
            context_type="decision",
        ),
    )
    write(
        specs / "001-auth" / "memory" / "old.md",
        memory("Session cookies", "tokens in cookies", importance_tier="deprecated"),
    )
    write(
        specs / "001-auth" / "memory" / "gone.md",
        memory("Expired note", "tokens temporary", importance_tier="temporary", expires="2020-01-01"),
    )
    write(
        specs / "002-db" / "memory" / "wal.md",
        memory("WAL mode", "tokens of the write ahead log", tags="[sqlite]"),
    )
    run_scan()
    return conn


def titles(response):
    return [r.title for r in response.results]


def test_constitutional_first_deprecated_and_expired_hidden(corpus, hash_embedder):
    r = search(corpus, "tokens", embedder=hash_embedder)
    assert titles(r)[0] == "Always run tests" and r.results[0].always_surfaced
    assert set(titles(r)[1:]) == {"JWT tokens", "WAL mode"}
    assert "Session cookies" in titles(
        search(corpus, "tokens", include_deprecated=True, embedder=hash_embedder)
    )
    assert "Always run tests" not in titles(
        search(corpus, "tokens", include_constitutional=False, mode="keyword")
    )


def test_tier_weight_reaches_the_ranking(specs, run_scan, conn):
    write(specs / "a" / "memory" / "plain.md", memory("Plain", "identical body about caching"))
    write(
        specs / "a" / "memory" / "crit.md",
        memory("Crit", "identical body about caching", importance_tier="critical"),
    )
    write(
        specs / "a" / "memory" / "temp.md",
        memory("Temp", "identical body about caching", importance_tier="temporary"),
    )
    run_scan()
    r = search(conn, "caching", mode="keyword")
    assert titles(r) == ["Crit", "Plain", "Temp"]
    assert r.results[0].parts.tier_weight == 1.5


def test_result_fields(corpus):
    r = search(corpus, "expire hour", mode="keyword", include_constitutional=False)
    top = r.results[0]
    assert (top.title, top.tier, top.spec_folder, top.tags, top.context_type) == (
        "JWT tokens",
        "critical",
        "001-auth",
        ["auth", "security"],
        "decision",
    )
    assert top.path.endswith("001-auth/memory/jwt.md") and (top.start_line, top.end_line) == (7, 9)
    assert "**expire**" in top.snippet and top.parts.keyword > 0 and top.score > 0
    assert r.mode_used == "keyword" and r.keyword_only


@pytest.mark.parametrize("mode", ["keyword", "semantic", "hybrid"])
def test_filters(corpus, hash_embedder, mode):
    def f(**kw):
        filters = Filters(**kw)
        return titles(
            search(
                corpus,
                "tokens",
                mode=mode,
                filters=filters,
                embedder=hash_embedder,
                include_constitutional=False,
            )
        )

    assert f(spec_folder="002-db") == ["WAL mode"]
    assert f(tiers=["critical"]) == ["JWT tokens"]
    assert f(tags=["auth", "security"]) == ["JWT tokens"]
    assert f(context_type="decision") == ["JWT tokens"]
    assert f(path_glob="002-*/memory/*.md") == ["WAL mode"]
    assert f(since=dt.datetime.now() + dt.timedelta(days=1)) == []
    with pytest.raises(SearchError, match="unknown tier"):
        f(tiers=["urgent"])


def test_filters_apply_before_the_limit(specs, run_scan, conn, hash_embedder):
    for i in range(30):
        write(specs / "big" / "memory" / f"m{i}.md", memory(f"Big {i}", "database database database"))
    for i in range(3):
        write(
            specs / "small" / "memory" / f"s{i}.md",
            memory(f"Small {i}", "database mentioned once among words"),
        )
    run_scan()
    for mode in ("keyword", "semantic", "hybrid"):
        r = search(
            conn, "database", limit=3, mode=mode, filters=Filters(spec_folder="small"), embedder=hash_embedder
        )
        assert sorted(titles(r)) == ["Small 0", "Small 1", "Small 2"], mode
        assert len(search(conn, "database", limit=7, mode=mode, embedder=hash_embedder).results) == 7


def test_keyword_fallback_when_model_cannot_load(corpus, specs, cfg):
    from specmem.indexer.embed import SentenceTransformerEmbedder

    broken = SentenceTransformerEmbedder("/nonexistent/model")
    r = search(corpus, "tokens", mode="hybrid", embedder=broken)
    # The index holds hash vectors, so a different model is refused before anything loads.
    assert r.mode_used == "keyword" and r.results and any("keyword mode" in n for n in r.notes)
    r = search(corpus, "tokens", mode="semantic", embedder=None)
    assert r.keyword_only and "not loaded" in r.notes[0]


def test_pending_embeddings_are_reported(specs, run_scan, conn, hash_embedder):
    write(specs / "a.md", memory("A", "alpha"))
    run_scan()
    write(specs / "b.md", memory("B", "alpha beta"))
    run_scan(embed=False)
    r = search(conn, "alpha", embedder=hash_embedder)
    assert r.pending_embeddings == 1 and {"A", "B"} <= set(titles(r))
    assert any("waiting for embeddings" in n and "ready for 50% of memories" in n for n in r.notes)


def test_a_memory_waiting_for_its_embedding_ranks_by_keyword_without_a_penalty(
    specs, run_scan, conn, hash_embedder
):
    """A memory just written is first by keyword; it must not drop below memories that only match its meaning
    because its own vector is not computed yet (issue 23: 7th in hybrid, 1st in keyword)."""
    for i in range(12):
        write(
            specs / f"{i:03d}-x" / "memory" / "m.md",
            memory(
                f"Cache note {i}",
                f"cache eviction policy number {i} keeps the cache warm and the keys hashed",
            ),
        )
    run_scan()
    write(
        specs / "100-new" / "memory" / "new.md",
        memory("Eviction", "cache eviction policy: least recently used"),
    )
    run_scan(embed=False)
    query = "cache eviction policy least recently used"
    keyword = search(conn, query, mode="keyword", embedder=hash_embedder, include_constitutional=False)
    hybrid = search(conn, query, mode="hybrid", embedder=hash_embedder, include_constitutional=False)
    assert titles(keyword)[0] == "Eviction"
    assert hybrid.mode_used == "hybrid" and titles(hybrid)[0] == "Eviction", titles(hybrid)
    assert "embedding pending" in (hybrid.results[0].parts.fusion or "")
    run_scan()  # embedded: now ranked by both sides as usual
    hybrid = search(conn, query, mode="hybrid", embedder=hash_embedder, include_constitutional=False)
    assert "embedding pending" not in (hybrid.results[0].parts.fusion or "")


@pytest.mark.parametrize(
    "query",
    [
        '"',
        '"unbalanced',
        "NEAR(a b)",
        "a* OR -b",
        "col:val",
        "^x",
        "AND",
        "()",
        "\x00",
        "'; DROP TABLE memory_index; --",
        "x" * 100_000,
        "",
        "   ",
        "🙂 ünïcödé",
    ],
)
def test_hostile_queries(corpus, hash_embedder, query):
    r = search(corpus, query, embedder=hash_embedder)
    assert r.total_memories == 5
    assert db.has_table(corpus, "memory_index")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_fts_query_never_raises(text):
    import apsw

    conn = apsw.Connection(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    q = fts_query(text)
    if q is not None:
        conn.execute("SELECT * FROM t WHERE t MATCH ?", (q,)).fetchall()


def test_search_never_writes(corpus, cfg):
    before = os.stat(cfg.db_path).st_mtime_ns, os.path.getsize(f"{cfg.db_path}-wal")
    reader = db.connect(cfg.db_path, readonly=True)
    for _ in range(5):
        search(reader, "tokens", mode="keyword")
    assert (os.stat(cfg.db_path).st_mtime_ns, os.path.getsize(f"{cfg.db_path}-wal")) == before


def test_semantic_search_finds_meaning_without_shared_words(specs, cfg, real_embedder):
    write(
        specs / "a" / "memory" / "v1.md",
        memory("Vehicles", "The automobile needs new tyres and an oil change."),
    )
    write(specs / "a" / "memory" / "v2.md", memory("Cooking", "Bake the bread at a high oven temperature."))
    write(specs / "a" / "memory" / "v3.md", memory("Animals", "The puppy chews shoes when left alone."))
    conn = db.connect(cfg.db_path)
    scan(conn, cfg, real_embedder)
    r = search(conn, "servicing my car", mode="semantic", embedder=real_embedder)
    assert titles(r)[0] == "Vehicles" and r.mode_used == "semantic"
    assert not search(conn, "servicing my car", mode="keyword").results
    r = search(conn, "dog behaviour", mode="hybrid", embedder=real_embedder)
    assert titles(r)[0] == "Animals"


def test_hybrid_parts_carry_raw_and_normalised_scores_and_weights(corpus, hash_embedder):
    r = search(corpus, "tokens expire hour", embedder=hash_embedder, include_constitutional=False)
    assert r.mode_used == "hybrid"
    for result in r.results:
        p = result.parts
        assert p.keyword_norm is not None and p.semantic_norm is not None and p.fusion
        assert p.keyword_weight + p.semantic_weight == pytest.approx(1.0)
        assert p.fused == pytest.approx(
            p.keyword_weight * p.keyword_norm + p.semantic_weight * p.semantic_norm, abs=1e-5
        )
        assert result.score == pytest.approx(p.fused * p.tier_weight * p.recency * p.confidence, abs=1e-6)
    assert r.results[0].title == "JWT tokens" and r.results[0].parts.keyword is not None
    keyword = search(corpus, "tokens", mode="keyword", include_constitutional=False).results[0].parts
    assert keyword.keyword_norm is None and keyword.keyword_weight is None and keyword.fused > 0


def test_hybrid_reports_the_second_best_chunk_that_matched(specs, run_scan, conn, hash_embedder):
    # Anchored blocks are chunks of their own: two chunks that both match.
    body = (
        "<!-- ANCHOR:what -->\nThe vacuum job compacts pages.\n<!-- /ANCHOR:what -->\n\n"
        "<!-- ANCHOR:when -->\nThe vacuum job runs nightly.\n<!-- /ANCHOR:when -->\n"
    )
    write(specs / "a" / "memory" / "two.md", memory("Maintenance", body))
    write(specs / "a" / "memory" / "one.md", memory("Other", "The vacuum job."))
    run_scan()
    parts = {r.title: r.parts for r in search(conn, "vacuum", embedder=hash_embedder).results}
    assert parts["Maintenance"].keyword_second is not None and parts["Other"].keyword_second is None
    assert "2nd chunk" in parts["Maintenance"].fusion
    assert search(conn, "vacuum", mode="keyword").results[0].parts.keyword_second is None


def test_equal_scores_are_ordered_by_id_not_by_file_age(specs, run_scan, conn, hash_embedder):
    paths = [
        write(specs / f"x{i}" / "memory" / "same.md", memory("Same", "retry the flaky upload"))
        for i in range(4)
    ]
    run_scan()
    now = dt.datetime(2025, 3, 1, 18, 0, tzinfo=dt.UTC)
    base = dt.datetime(2025, 3, 1, 9, 0, tzinfo=dt.UTC).timestamp()
    orders = []
    for newest_first in (True, False):
        for i, path in enumerate(paths):
            age = i if newest_first else len(paths) - i
            os.utime(path, (base - 30 * age, base - 30 * age))
        run_scan()
        for mode in ("hybrid", "keyword", "semantic"):
            r = search(conn, "flaky upload", mode=mode, embedder=hash_embedder, now=now)
            orders.append([res.id for res in r.results])
    assert all(order == sorted(order) and len(order) == 4 for order in orders)


@pytest.fixture
def nine_rules(specs):
    """Nine rules and six memories, all about the cache layer, the rules more so; each rule names its topic."""
    topics = ["tests", "reviews", "logging", "secrets", "migrations", "naming", "errors", "docs", "releases"]
    for topic in topics:
        write(
            specs / "constitutional" / f"{topic}.md",
            memory(
                f"Rule about {topic}", f"Cache layer: always handle {topic} carefully in the cache layer."
            ),
        )
    for n in range(6):  # weaker matches than any rule: one mention among many other words
        text = (
            f"detail {n} of the cache, among notes on builds, deploys, schedules, budgets, hiring and travel"
        )
        write(specs / "001-a" / "memory" / f"m{n}.md", memory(f"Memory {n} on the layer", text))
    return specs


def test_rules_are_ranked_by_relevance_within_their_share(nine_rules, monkeypatch):
    """A rule is ranked like any memory (nothing on top) and rules hold at most a third of the limit, at most
    SPECMEM_SURFACE (3); every rule leads only when all are asked for (a session's first search)."""
    with specmem.open() as mem:
        mem.scan()
        for limit, share in ((3, 1), (6, 2), (9, 3)):
            found = mem.search("cache layer", limit=limit, mode="keyword").results
            assert len(found) == limit and not any(r.always_surfaced for r in found)
            assert sum(r.tier == "constitutional" for r in found) == share
        # Beyond their share, rules follow the other memories: a longer list still shows them.
        longer = mem.search("cache layer", limit=15, mode="keyword").results
        assert [r.tier for r in longer[9:]] == ["constitutional"] * 6
        secrets = mem.search("secrets", limit=3, mode="keyword").results
        assert secrets[0].title == "Rule about secrets" and not secrets[0].always_surfaced
        asked = mem.search("cache layer", limit=9, mode="keyword", filters=Filters(tiers=["constitutional"]))
        assert len(asked.results) == 9  # a search for rules is not limited to their share
        every = mem.search("cache layer", limit=3, all_rules=True).results
        assert sum(r.always_surfaced for r in every) == 9 and len(every) == 12
    monkeypatch.setenv("SPECMEM_SURFACE", "0")
    with specmem.open() as mem:
        ranked = mem.search("cache layer secrets", limit=6, mode="keyword").results
        assert [r.tier for r in ranked] == ["normal"] * 6  # no rule while other memories answer
        alone = mem.search("secrets", limit=3, mode="keyword").results
        assert [r.title for r in alone] == ["Rule about secrets"]  # nor hidden when nothing else does


@pytest.fixture
def many_chunks(specs, run_scan, conn):
    """60 memories of one to four chunks each (anchored blocks), all matching "cache", a few "zanzibar", in three
    spec folders; some deprecated."""
    words = ["cache", "eviction", "policy", "ttl", "warm", "cold", "lru", "size"]
    for i in range(60):
        sections = "\n\n".join(
            f"<!-- ANCHOR:p{j} -->\n"
            + " ".join(words[(i * j + n) % len(words)] for n in range(3 + (i + j) % 7))
            + (" zanzibar" if (i + j) % 7 == 0 else "")
            + f"\n<!-- /ANCHOR:p{j} -->"
            for j in range(1 + i % 4)
        )
        meta = {"importance_tier": "deprecated"} if i % 11 == 0 else {}
        write(specs / f"00{i % 3}-f" / "memory" / f"m{i:02d}.md", memory(f"Note {i}", sections, **meta))
    run_scan()
    return conn


@pytest.mark.parametrize("prune_share", [0.6, 100.0])
@pytest.mark.parametrize("mode", ["keyword", "hybrid"])
def test_keyword_cut_gives_the_same_results_as_grouping_every_match(
    many_chunks, hash_embedder, monkeypatch, mode, prune_share
):
    """A cut of the best chunks far smaller than the matches, widened as needed, and ranking only the chunks with
    a query's rarer words when that is provably exact (a share of 100 tries it on every query), rank exactly as
    grouping every match: same memories, same best chunks, same second best scores, with and without filters."""
    import specmem.server.keyword as keyword_module
    import specmem.server.search as search_module

    cases = [
        ("cache", None, 10),
        ("cache lru ttl", None, 5),
        ("eviction policy", Filters(spec_folder="001-f"), 10),
        ("warm cold size", Filters(tiers=["normal"]), 3),
        ("zanzibar cache", None, 10),
        ("zanzibar lru policy", None, 3),
    ]

    def run() -> list:
        return [
            [
                (r.id, r.start_line, r.score, r.parts.keyword, r.parts.keyword_second, r.snippet)
                for r in search(
                    many_chunks, q, mode=mode, limit=limit, filters=f, embedder=hash_embedder
                ).results
            ]
            for q, f, limit in cases
        ]

    monkeypatch.setattr(search_module, "CANDIDATES", 8)
    monkeypatch.setattr(keyword_module, "KEYWORD_CUT", 10**6)
    whole = run()
    monkeypatch.setattr(keyword_module, "KEYWORD_CUT", 3)
    monkeypatch.setattr(keyword_module, "PRUNE_SHARE", prune_share)
    assert run() == whole
    assert all(whole)
    if mode == "hybrid":
        assert any(part[4] is not None for result in whole for part in result)
