"""The blocks plan's per-query sums (core/memory/bm25_sums.py) against a plain Python
reference: known parts, exact bounds where they can reach the floor and never-lower
bounds elsewhere, rescored rows left out, rows ruled out, the pool handing back cleared
arrays, row ids past the first size, queries with more terms than the mask has bits,
and the sparse sums used for very large row ids."""

from __future__ import annotations

import random

import numpy as np
import pytest

from core.memory import bm25_sums
from core.memory.bm25_sums import TERM_BITS, SparseSums, Sums, query_sums

Postings = list[tuple[int, dict[int, float]]]


def _postings(rng: random.Random, terms: int, rows: int, top: int) -> Postings:
    """Per term: row id -> idf·impact, each row at most once per term."""
    out = []
    for t in range(terms):
        chosen = rng.sample(range(1, top), rows)
        out.append((t, {r: rng.uniform(0.1, 3.0) for r in chosen}))
    return out


def _reference(postings: Postings, fronts: np.ndarray) -> tuple[dict[int, float], dict[int, float]]:
    known: dict[int, float] = {}
    read: dict[int, set[int]] = {}
    for t, got in postings:
        for r, v in got.items():
            known[r] = known.get(r, 0.0) + v
            read.setdefault(r, set()).add(t)
    total = float(sum(fronts))
    bound = {r: known[r] + total - sum(fronts[t] for t in read[r]) for r in known}
    return known, bound


def _feed(sums: Sums | SparseSums, postings: Postings) -> None:
    for t, got in postings:
        ids = np.fromiter(got, dtype=np.int64)
        sums.add_segment(ids, np.array([got[r] for r in ids.tolist()]), t)


@pytest.mark.parametrize("kind", ["dense", "sparse"])
def test_known_parts_and_bounds_match_the_reference(kind: str) -> None:
    rng = random.Random(5)
    postings = _postings(rng, terms=7, rows=300, top=5000)
    fronts = np.array([rng.uniform(0, 0.5) for _ in range(7)])
    known, bound = _reference(postings, fronts)
    with query_sums(4000 if kind == "dense" else bm25_sums.DENSE_MAX) as sums:
        assert isinstance(sums, Sums if kind == "dense" else SparseSums)
        _feed(sums, postings)
        rows, got_known = sums.fresh_rows(fronts)
        assert sorted(rows.tolist()) == sorted(known)
        for r, k in zip(rows.tolist(), got_known.tolist(), strict=True):
            assert k == pytest.approx(known[r], rel=1e-12)
        floor = float(np.median(list(bound.values())))
        ub = sums.bounds(floor)
        for r, u in zip(rows.tolist(), ub.tolist(), strict=True):
            assert u >= bound[r] - 1e-9  # never below the bound
            if bound[r] >= floor:
                assert u == pytest.approx(bound[r], rel=1e-12)  # exact where it matters
        # Rescored rows are candidates no more.
        done = rows[:10]
        sums.mark_rescored(done)
        assert not sums.fresh(done).any()
        again, _ = sums.fresh_rows(fronts)
        assert set(again.tolist()) == set(known) - set(done.tolist())


def test_rows_ruled_out_stay_out_and_the_pool_hands_back_cleared_arrays() -> None:
    rng = random.Random(9)
    postings = _postings(rng, terms=3, rows=50, top=900)
    fronts = np.array([0.2, 0.1, 0.3])
    with query_sums(1000) as sums:
        assert isinstance(sums, Sums)
        _feed(sums, postings[:2])
        rows, known = sums.fresh_rows(fronts)
        keep = known > float(np.median(known))
        sums.rule_out(keep)
        _feed(sums, postings[2:])  # new rows still come in, ruled-out ones do not return
        later, _ = sums.fresh_rows(fronts)
        ruled = set(rows[~keep].tolist())
        assert ruled and not ruled & set(later.tolist())
        assert set(rows[keep].tolist()) <= set(later.tolist())
        # A row id past the size asked for grows the arrays.
        sums.add_segment(np.array([50_000], dtype=np.int64), np.array([1.0]), 0)
        grown, _ = sums.fresh_rows(fronts)
        assert 50_000 in grown.tolist()
    with query_sums(1000) as reused:
        assert reused is sums  # from the pool
        empty, _ = reused.fresh_rows(fronts)
        assert len(empty) == 0
        assert not reused.pos.any() and not reused.known.any() and not reused.mask.any()


def test_terms_past_the_mask_bits_only_loosen_bounds() -> None:
    rng = random.Random(11)
    n = TERM_BITS + 4
    postings = _postings(rng, terms=n, rows=20, top=400)
    fronts = np.array([rng.uniform(0.01, 0.2) for _ in range(n)])
    _, bound = _reference(postings, fronts)
    with query_sums(500) as sums:
        _feed(sums, postings)
        rows, _ = sums.fresh_rows(fronts)
        ub = sums.bounds(-np.inf)
        loose = 0
        for r, u in zip(rows.tolist(), ub.tolist(), strict=True):
            assert u >= bound[r] - 1e-9
            loose += u > bound[r] + 1e-9
        assert loose  # rows read for the last terms keep those fronts in their bound


@pytest.mark.parametrize("top", [4000, bm25_sums.DENSE_MAX])
def test_postings_read_once_sum_per_row_and_leave_the_index_zeroed(top: int) -> None:
    rng = random.Random(11)
    postings = _postings(rng, terms=6, rows=250, top=5000)
    known, _ = _reference(postings, np.zeros(6))
    ids = np.concatenate([np.fromiter(got, dtype=np.int64) for _, got in postings])
    vals = np.concatenate([np.array(list(got.values())) for _, got in postings])
    # max_row_id below some ids read: the last rows were deleted after the segment.
    rows, sums = bm25_sums.read_once(ids, vals, top - 3000 if top == 4000 else top)
    assert sorted(rows.tolist()) == sorted(known) and len(rows) == len(set(rows.tolist()))
    for r, v in zip(rows.tolist(), sums.tolist(), strict=True):
        assert v == pytest.approx(known[r], rel=1e-12)
    with query_sums(5000) as pooled:  # the borrowed index went back all zeros
        assert isinstance(pooled, Sums) and not pooled.pos.any()
    empty_rows, empty_sums = bm25_sums.read_once(np.empty(0, dtype=np.int64), np.empty(0), top)
    assert len(empty_rows) == len(empty_sums) == 0
