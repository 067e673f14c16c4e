"""server.fusion: properties of the hybrid score fusion, and a judged case where rank fusion loses to keyword."""

import datetime as dt
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from specmem.server import fusion
from specmem.server.rank import recency

ids = st.integers(min_value=1, max_value=10_000)
bm25 = st.floats(min_value=0.01, max_value=60.0, allow_nan=False)
cosine = st.floats(min_value=-0.2, max_value=0.95, allow_nan=False)
keyword_lists = st.dictionaries(ids, bm25, max_size=40)
semantic_lists = st.dictionaries(ids, cosine, max_size=40)


def order(kw, sem, multipliers=None):
    fused = fusion.fuse(kw, sem)
    return fusion.ranked((k, f, (multipliers or {}).get(k, 1.0)) for k, f in fused.items())


@settings(max_examples=300, deadline=None)
@given(keyword_lists, semantic_lists, ids)
def test_first_on_both_sides_is_first(kw, sem, top):
    kw = {**kw, top: max(kw.values(), default=1.0) + 1.0}
    sem = {**sem, top: min(1.0, max(sem.values(), default=0.5) + 0.01)}
    assert order(kw, sem)[0] == top


@settings(max_examples=300, deadline=None)
@given(keyword_lists, semantic_lists, ids)
def test_a_memory_found_by_neither_side_changes_no_order(kw, sem, other):
    kw.pop(other, None), sem.pop(other, None)
    fused = fusion.fuse(kw, sem)
    entries = [(k, f, 1.0) for k, f in fused.items()]
    assert other not in fused
    # Nothing to fuse for it: it is not a candidate, so neither the others' scores nor their order move.
    assert fusion.ranked(entries) == order(kw, sem) == order(dict(kw), dict(sem))


@settings(max_examples=200, deadline=None)
@given(keyword_lists, semantic_lists, st.randoms(use_true_random=False))
def test_same_order_on_every_run_whatever_the_input_order(kw, sem, rnd):
    expected = order(kw, sem)
    kw_items, sem_items = list(kw.items()), list(sem.items())
    rnd.shuffle(kw_items), rnd.shuffle(sem_items)
    assert order(dict(kw_items), dict(sem_items)) == expected


@settings(max_examples=200, deadline=None)
@given(
    st.lists(ids, min_size=2, max_size=12, unique=True),
    st.lists(st.integers(min_value=0, max_value=86_399), min_size=12, max_size=12),
    st.integers(min_value=0, max_value=400),
)
def test_tied_memories_keep_their_order_whatever_their_age(keys, seconds, days_ago):
    """Identical scores on both sides; files changed at different times of one day: the order is by id."""
    kw = dict.fromkeys(keys, 7.5)
    sem = dict.fromkeys(keys, 0.42)
    now = dt.datetime(2025, 6, 30, 12, 0, tzinfo=dt.UTC)
    day = dt.datetime(2025, 6, 30, tzinfo=dt.UTC) - dt.timedelta(days=days_ago)
    ages = {
        k: recency(int((day + dt.timedelta(seconds=s)).timestamp() * 1000), now, "normal")
        for k, s in zip(keys, seconds, strict=False)
    }
    assert order(kw, sem, ages) == sorted(keys)


def test_ties_go_to_the_higher_sum_of_normalised_scores_then_the_id():
    def fused(kn, sn):
        return fusion.Fused(
            None, None, keyword_norm=kn, semantic_norm=sn, keyword_weight=0.75, semantic_weight=0.25
        )

    a, b, c = fused(0.5, 0.5), fused(0.625, 0.125), fused(0.375, 0.875)
    assert a.score == b.score == c.score == 0.5 and (c.norm_sum, a.norm_sum, b.norm_sum) == (1.25, 1.0, 0.75)
    # A multiplier off by 1e-9 (a recency of a few seconds) does not decide: 2 and 5 are ordered by id.
    assert fusion.ranked([(9, a, 1.0), (1, b, 1.0), (5, c, 1.0), (2, c, 1.0 + 1e-9)]) == [2, 5, 9, 1]


def test_scores_are_normalised_per_side_and_missing_memories_get_the_floor():
    kw, sem = {1: 20.0, 2: 10.0, 3: 5.0}, {2: 0.6, 4: 0.3}
    fused = fusion.fuse(kw, sem)
    rule = fusion.RULE
    (kw_norm, kw_floor), (sem_norm, sem_floor) = (
        fusion.normalise(kw, rule.keyword_norm),
        fusion.normalise(sem, rule.semantic_norm),
    )
    assert kw_norm[1] == 1.0 and kw_floor <= min(kw_norm.values()) and sem_floor <= min(sem_norm.values())
    assert [fused[k].keyword_norm for k in (1, 2, 3, 4)] == [kw_norm[1], kw_norm[2], kw_norm[3], kw_floor]
    assert (fused[1].semantic, fused[1].semantic_norm, fused[4].keyword) == (None, sem_floor, None)
    for f in fused.values():
        assert math.isclose(f.keyword_weight + f.semantic_weight, 1.0)
        assert f.score == f.keyword_weight * f.keyword_norm + f.semantic_weight * f.semantic_norm


BEST_CHUNK_ONLY = fusion.Rule(**{**vars(fusion.RULE), "keyword_second_share": 0.0})
# The weights of the chosen rule without its keyword-lead condition, which picks the weights of a whole query: a
# memory's better second chunk can lower the leader's lead and so the keyword weight of every memory.
FIXED_WEIGHTS = fusion.Rule(**{**vars(fusion.RULE), "lead": None})


@settings(max_examples=200, deadline=None)
@given(keyword_lists, semantic_lists)
def test_without_second_chunks_the_order_is_the_best_chunks(kw, sem):
    assert order(kw, sem) == fusion.ranked(
        (k, f, 1.0) for k, f in fusion.fuse(kw, sem, BEST_CHUNK_ONLY).items()
    )


@settings(max_examples=300, deadline=None)
@given(keyword_lists, semantic_lists, st.dictionaries(ids, bm25, max_size=40), ids, bm25)
def test_a_better_second_chunk_never_moves_its_memory_down(kw, sem, second, key, more):
    kw = {**kw, key: kw.get(key, 1.0)}
    second = {k: min(v, kw[k]) for k, v in second.items() if k in kw}
    raised = {**second, key: min(kw[key], second.get(key, 0.0) + more)}

    def position(seconds):
        fused = fusion.fuse(kw, sem, FIXED_WEIGHTS, keyword_second=seconds)
        return fusion.ranked((k, f, 1.0) for k, f in fused.items()).index(key)

    assert position(raised) <= position(second)


def test_the_second_chunk_adds_a_share_of_its_bm25_and_is_reported():
    fused = fusion.fuse({1: 10.0, 2: 9.0, 3: 1.0}, {1: 0.5, 2: 0.5, 3: 0.5}, keyword_second={2: 9.0})
    share = fusion.RULE.keyword_second_share
    assert 0 < share < 0.1  # a nudge between memories about as good on their best chunk, never more
    assert fused[2].keyword_norm == pytest.approx((9.0 + share * 9.0 - 1.0) / (10.0 - 1.0))
    assert (fused[1].keyword_second, fused[2].keyword_second, fused[2].keyword) == (None, 9.0, 9.0)
    assert "2nd chunk" in fused[2].rule


def test_a_clear_keyword_lead_weighs_keyword_as_much_as_meaning():
    rule = fusion.RULE
    assert rule.lead is not None and rule.lead_keyword_weight > rule.keyword_weight
    # Memory 1 holds the question's rare words (its BM25 leads the next by 47%); memory 2 is closer in meaning.
    kw, sem = {1: 15.0, 2: 8.0, 3: 4.0}, {1: 0.42, 2: 0.62, 3: 0.40}
    fused = fusion.fuse(kw, sem)
    assert {f.keyword_weight for f in fused.values()} == {rule.lead_keyword_weight}
    assert "keyword leads" in fused[1].rule
    assert fusion.ranked((k, f, 1.0) for k, f in fused.items())[0] == 1
    # Without the lead condition the semantic side decides.
    assert fusion.ranked((k, f, 1.0) for k, f in fusion.fuse(kw, sem, FIXED_WEIGHTS).items())[0] == 2
    # A lead under the threshold keeps the default weight.
    close = fusion.fuse({1: 12.0, 2: 10.0, 3: 4.0}, sem)
    assert {f.keyword_weight for f in close.values()} == {rule.keyword_weight}


def test_one_side_empty_gives_all_weight_to_the_other():
    assert {f.keyword_weight for f in fusion.fuse({1: 3.0, 2: 1.0}, {}).values()} == {1.0}
    assert {f.semantic_weight for f in fusion.fuse({}, {1: 0.3, 2: 0.1}).values()} == {1.0}
    assert fusion.fuse({}, {}) == {}


# A judged case from locomo-dev (conv-41-q181, "What did John take away from visiting the orphanage?"), searched
# within its conversation as search does: session → (BM25, cosine) of its best chunk. Only session 24 is relevant.
# Keyword ranks it 1st, semantic 27th of 32; RRF (k = 60) flattens both into 1/61..1/93 and ranks it 10th.
LOCOMO_Q181 = {
    1: (1.751122, 0.2198),
    2: (1.626532, 0.2332),
    3: (1.613603, 0.2351),
    4: (2.279423, 0.2289),
    5: (0.061770, 0.2597),
    6: (2.254026, 0.3345),
    7: (2.220179, 0.2019),
    8: (3.580274, 0.3213),
    9: (3.009905, 0.2756),
    10: (1.600929, 0.2323),
    11: (1.617335, 0.2752),
    12: (1.847889, 0.2496),
    13: (4.261141, 0.2941),
    14: (1.418978, 0.2791),
    15: (3.013470, 0.2091),
    16: (0.072323, 0.2537),
    17: (1.517360, 0.3692),
    18: (3.570302, 0.2971),
    19: (1.931389, 0.2762),
    20: (2.090503, 0.2441),
    21: (0.068545, 0.3536),
    22: (2.172927, 0.2446),
    23: (0.066193, 0.2692),
    24: (6.066646, 0.2264),
    25: (1.402649, 0.2014),
    26: (1.345428, 0.2472),
    27: (5.084272, 0.2803),
    28: (0.067315, 0.2483),
    29: (1.743023, 0.2013),
    30: (4.818134, 0.2450),
    31: (1.756485, 0.2881),
    32: (2.385895, 0.2977),
}


def _rrf(kw, sem, k=60):
    out = {}
    for side in (kw, sem):
        for rank, key in enumerate(sorted(side, key=lambda m: (-side[m], m))):
            out[key] = out.get(key, 0.0) + 1.0 / (k + rank + 1)
    return sorted(out, key=lambda m: (-out[m], m))


def _ndcg(ranked, relevant):
    return sum(1 / math.log2(i + 2) for i, key in enumerate(ranked[:10]) if key in relevant)


def test_judged_case_where_rank_fusion_loses_to_keyword_and_score_fusion_does_not():
    kw = {s: k for s, (k, _) in LOCOMO_Q181.items()}
    sem = {s: c for s, (_, c) in LOCOMO_Q181.items()}
    by_keyword = sorted(kw, key=lambda m: (-kw[m], m))
    assert by_keyword[0] == 24 and sorted(sem, key=lambda m: -sem[m]).index(24) == 26
    rrf = _rrf(kw, sem)
    assert rrf.index(24) == 9 and _ndcg(rrf, {24}) < _ndcg(by_keyword, {24}) == 1.0
    fused = fusion.fuse(kw, sem, scoped=True)  # a filtered search whose candidates are the whole folder
    assert fusion.ranked((k, f, 1.0) for k, f in fused.items())[0] == 24
    assert {f.keyword_weight for f in fused.values()} == {fusion.RULE.scoped_keyword_weight}


# Another locomo-dev case (conv-30-q087, "What did Jon find for his clothing store on 1 February, 2023?"):
# session → (BM25 of its best chunk, of its second best, cosine of its best). Only session 3 is relevant. Keyword
# ranks it 1st, semantic 4th; on best chunks alone fusion ranks session 2 first, whose one chunk matches about as
# well. Session 3's second chunk matches almost as well as its first: with a share of it, session 3 leads.
LOCOMO_Q087 = {
    1: (8.362927, 6.848415, 0.2551),
    2: (17.849629, 3.326327, 0.4164),
    3: (18.753646, 17.031102, 0.3859),
    4: (12.58145, 9.815233, 0.2661),
    5: (12.800213, 11.572532, 0.3276),
    6: (12.7057, 7.064513, 0.4324),
    7: (12.211932, 5.943465, 0.3493),
    8: (13.791852, 7.400952, 0.3587),
    9: (5.340393, 4.045956, 0.1859),
    10: (12.466108, 6.153273, 0.3763),
    11: (7.767516, 4.928864, 0.2207),
    12: (3.538028, 3.299137, 0.3494),
    13: (6.305983, 4.628883, 0.2722),
    14: (11.846142, 6.70885, 0.2471),
    15: (6.833848, 3.160358, 0.3027),
    16: (7.825404, 3.262469, 0.4758),
    17: (4.112759, 3.993756, 0.2453),
    18: (10.873018, 10.710998, 0.3116),
    19: (3.786556, 3.392819, 0.2736),
}


def test_judged_case_where_the_second_chunk_puts_the_relevant_session_first():
    kw = {s: k for s, (k, _, _) in LOCOMO_Q087.items()}
    second = {s: k2 for s, (_, k2, _) in LOCOMO_Q087.items()}
    sem = {s: c for s, (_, _, c) in LOCOMO_Q087.items()}
    assert sorted(kw, key=lambda m: -kw[m])[0] == 3 and sorted(sem, key=lambda m: -sem[m]).index(3) == 3

    def first(rule):
        fused = fusion.fuse(kw, sem, rule, scoped=True, keyword_second=second)
        return fusion.ranked((k, f, 1.0) for k, f in fused.items())[0]

    assert first(BEST_CHUNK_ONLY) == 2 and first(fusion.RULE) == 3
