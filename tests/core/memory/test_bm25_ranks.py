"""Hybrid's keyword half (core/memory/bm25_ranks.py): one budgeted read of the blocks,
ranked by the part of each score read. With every list read whole it is the exact BM25
ranking; with a spent budget the parts are lower bounds in order; rows outside the filter
or deleted since the rebuild never come back; and hybrid search reads the columns of the
rows it returns after fusing."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, text

from config import Settings
from core.db import Database
from core.memory.bm25 import KeywordPlan, KeywordRun, keyword_rows
from core.memory.bm25_ranks import RankedRow
from core.memory.filters import SearchFilter
from core.memory.hybrid import hybrid_hits
from core.memory.keyword_segment import compact
from core.memory.search import vector_search
from tests.conftest import create_test_user
from tests.core.memory.test_bm25 import QUERIES, _add, _text

SMALL_BLOCK = 16
WHOLE = 10**7  # a budget that reads every list whole


@pytest.fixture
def owner(db: Database, test_settings: Settings) -> Iterator[uuid.UUID]:
    """400 chunks, a tenth of them one user's, compacted into small blocks."""
    user, _ = create_test_user(db, f"ranks-{uuid.uuid4().hex[:6]}@kw.org")
    rng = random.Random(41)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for i in range(400):
            _add(conn, _text(rng), user_id=user.id if i % 10 == 0 else None)
    compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
    yield user.id
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))


def _ranks(
    conn: Connection, query: str, flt: SearchFilter, limit: int, settings: Settings, budget: int
) -> KeywordRun:
    run = keyword_rows(conn, query, flt, limit=limit, settings=settings, budget=budget, ranks=True)
    assert run.plan is KeywordPlan.blocks and not run.fallbacks
    assert all(isinstance(r, RankedRow) for r in run.rows)
    return run


def _truth(conn: Connection, query: str, flt: SearchFilter, settings: Settings) -> dict[int, float]:
    exact = keyword_rows(conn, query, flt, limit=1000, settings=settings, force=KeywordPlan.exact)
    return {int(r.id): float(r.score) for r in exact.rows}


def _assert_exact_order(rows: list[Any], truth: dict[int, float], limit: int) -> None:
    """The exact top-``limit``: the same scores position by position, and only rows that
    reach the k-th exact score (float4 impacts and the SQL score may swap near ties)."""
    best = sorted(truth.items(), key=lambda r: (-r[1], r[0]))[:limit]
    assert len(rows) == len(best)
    for row, (_, score) in zip(rows, best, strict=True):
        assert row.score == pytest.approx(score, rel=1e-5)
        assert truth[row.id] == pytest.approx(row.score, rel=1e-5)  # the whole score
    kth = best[-1][1] * (1 - 1e-5)
    assert all(truth[r.id] >= kth for r in rows)


def test_ranks_are_the_exact_order_when_every_list_is_read(
    db: Database, test_settings: Settings, owner: uuid.UUID
) -> None:
    through_index = test_settings.model_copy(update={"search_exact_threshold": 0})
    with db.engine.connect() as conn:
        for flt in (SearchFilter(), SearchFilter(user_id=owner)):
            for query in QUERIES:
                truth = _truth(conn, query, flt, through_index)
                for limit in (1, 10, 30):
                    run = _ranks(conn, query, flt, limit, through_index, WHOLE)
                    # With 16-posting blocks the first read's guess (1024) falls short
                    # and is topped up once.
                    assert run.proven and run.rounds <= 2, (query, limit)
                    _assert_exact_order(run.rows, truth, limit)


def test_a_spent_budget_ranks_by_lower_bounds(
    db: Database, test_settings: Settings, owner: uuid.UUID
) -> None:
    # A few blocks of the long query: one read, unproven, still `limit` rows, each part
    # read at most its exact score, best first, with the keys of the chunk it names.
    query, limit = QUERIES[4], 10
    with db.engine.connect() as conn:
        truth = _truth(conn, query, SearchFilter(), test_settings)
        run = _ranks(conn, query, SearchFilter(), limit, test_settings, 64)
        assert not run.proven
        assert run.postings_read < 64 + 8 * SMALL_BLOCK
        assert len(run.rows) == limit
        parts = [(r.id, r.score) for r in run.rows]
        assert parts == sorted(parts, key=lambda r: (-r[1], r[0]))
        assert all(truth[i] >= v * (1 - 1e-6) for i, v in parts)
        assert any(truth[i] > v * (1 + 1e-6) for i, v in parts)  # some were read in part
        keys = conn.execute(
            text("SELECT id, entity_type, entity_id, chunk FROM search_index WHERE id = ANY(:ids)"),
            {"ids": [r.id for r in run.rows]},
        )
        by_id = {int(k.id): (k.entity_type, k.entity_id, k.chunk) for k in keys}
        assert all(by_id[r.id] == (r.entity_type, r.entity_id, r.chunk) for r in run.rows)


def test_a_filter_and_deleted_rows_are_kept_out(
    db: Database, test_settings: Settings, owner: uuid.UUID
) -> None:
    # One user's tenth under a tight budget: only their chunks, and still `limit` of them
    # (more candidates are asked about than the first batch). Chunks deleted after the
    # rebuild keep their postings in the blocks but never come back.
    mine = SearchFilter(user_id=owner)
    through_index = test_settings.model_copy(update={"search_exact_threshold": 0})
    query = QUERIES[1]
    with db.engine.connect() as conn:
        theirs = set(_truth(conn, query, mine, through_index))
        run = _ranks(conn, query, mine, 5, through_index, 400)
        assert len(run.rows) == 5 and {r.id for r in run.rows} <= theirs
        # A read too small for 5 of theirs to be among it: the blocks plan answers (and,
        # its settling short too, the exact scan), never a short list.
        short = keyword_rows(
            conn, query, mine, limit=5, settings=through_index, budget=48, ranks=True
        )
        assert not isinstance(short.rows[0], RankedRow)
        assert len(short.rows) == 5 and {int(r.id) for r in short.rows} <= theirs
        before = _ranks(conn, query, SearchFilter(), 10, test_settings, WHOLE)
    gone = [r.id for r in before.rows[:3]]
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index WHERE id = ANY(:ids)"), {"ids": gone})
    with db.engine.connect() as conn:
        after = _ranks(conn, query, SearchFilter(), 10, test_settings, WHOLE)
        assert len(after.rows) == 10 and not {r.id for r in after.rows} & set(gone)
        assert [r.id for r in after.rows[:7]] == [r.id for r in before.rows[3:]]


def test_hybrid_reads_the_columns_of_the_rows_it_returns(
    db: Database, test_settings: Settings, owner: uuid.UUID
) -> None:
    vector = [1.0] + [0.0] * (test_settings.embedding_dims - 1)
    with db.engine.connect() as conn:
        hits = hybrid_hits(
            conn, QUERIES[2], vector, SearchFilter(), k=10, settings=test_settings,
            concurrent=False,
        )  # fmt: skip
        assert len(hits) == 10
        rows = conn.execute(
            text(
                "SELECT id, entity_id, content, metadata, created_at FROM search_index "
                "WHERE id = ANY(:ids)"
            ),
            {"ids": [h.row_id for h in hits]},
        )
        by_id = {int(r.id): r for r in rows}
        for hit in hits:
            row = by_id[hit.row_id]
            assert hit.entity_id == row.entity_id and hit.snippet == row.content[:300]
            assert hit.snippet and hit.metadata == row.metadata
            assert hit.created_at == row.created_at
            assert set(hit.ranks) <= {"vector", "keyword"} and hit.ranks
        # Both halves' ranks are there: the keyword half ranked the query's matches.
        assert any("keyword" in h.ranks for h in hits)
        full = vector_search(conn, vector, SearchFilter(), k=10, settings=test_settings)
        assert all(h.snippet for h in full)  # vector mode still reads its columns
