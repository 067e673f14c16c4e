"""server.fusion: properties of the hybrid score fusion, and a judged case where rank fusion loses to keyword."""

import datetime as dt
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from specmem.server import fusion
from specmem.server.search import _recency

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
        k: _recency(int((day + dt.timedelta(seconds=s)).timestamp() * 1000), now, "normal")
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
