"""Hybrid's keyword half (core/memory/bm25_ranks.py): one budgeted read of the blocks,
ranked by the part of each score read. With every list read whole it is the exact BM25
ranking; with a spent budget the parts are lower bounds in order; rows outside the filter
or deleted since the rebuild never come back; and hybrid search reads the columns of the
rows it returns after fusing, only those its halves did not show."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Connection, event, text

from config import Settings
from core.db import Database
from core.memory import hybrid
from core.memory.bm25 import KeywordPlan, KeywordRun, keyword_rows
from core.memory.bm25_ranks import RankedRow, _kth_largest
from core.memory.filters import SearchFilter
from core.memory.hybrid import hybrid_hits
from core.memory.indexer import vector_literal
from core.memory.keyword_segment import compact
from core.memory.search import Hit, fuse, vector_search
from core.memory.synthetic import clustered_vectors
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


def _embed_some(conn: Connection, dims: int, where: str) -> None:
    """Vectors for the rows ``where`` selects (the others stay pending)."""
    vectors = clustered_vectors(400, dims, seed=5)
    ids = list(
        conn.execute(text(f"SELECT id FROM search_index WHERE {where} ORDER BY id")).scalars()
    )
    conn.execute(
        text(
            "UPDATE search_index s SET embedding = CAST(v.e AS vector) FROM "
            "unnest(CAST(:ids AS bigint[]), CAST(:vs AS text[])) AS v(id, e) WHERE s.id = v.id"
        ),
        {"ids": ids, "vs": [vector_literal(vectors[i % 400]) for i in range(len(ids))]},
    )


def test_only_rows_the_fusion_can_show_come_with_their_columns(
    db: Database, test_settings: Settings, owner: uuid.UUID
) -> None:
    # Half the rows embedded: past the first `shown`, a row comes with its snippet,
    # metadata and date only while it is pending (fusion may rank it on its keyword rank).
    with db.engine.begin() as conn:
        _embed_some(conn, test_settings.embedding_dims, "id % 2 = 0")
    with db.engine.connect() as conn:
        every = keyword_rows(
            conn, QUERIES[2], SearchFilter(), limit=30, settings=test_settings, budget=WHOLE,
            ranks=True,
        )  # fmt: skip
        some = keyword_rows(
            conn, QUERIES[2], SearchFilter(), limit=30, settings=test_settings, budget=WHOLE,
            ranks=True, shown=3,
        )  # fmt: skip
        assert [r.id for r in some.rows] == [r.id for r in every.rows]
        rows = conn.execute(
            text("SELECT id, content, metadata, created_at FROM search_index WHERE id = ANY(:ids)"),
            {"ids": [r.id for r in every.rows]},
        )
        by_id = {int(r.id): (r.content[:300], r.metadata, r.created_at) for r in rows}
        assert all((r.content, r.metadata, r.created_at) == by_id[r.id] for r in every.rows)
        kinds = set()
        for place, r in enumerate(some.rows):
            shown = place < 3 or r.pending
            kinds.add((place < 3, r.pending))
            got = (r.content, r.metadata, r.created_at)
            assert got == (by_id[r.id] if shown else (None, None, None)), place
        assert {(False, True), (False, False)} <= kinds  # both kinds past the first three


def test_hybrid_reads_after_fusing_only_what_its_halves_did_not_show(
    db: Database, test_settings: Settings, owner: uuid.UUID, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A heavy keyword weight, so documents only the keyword half found make the top 10:
    # their ranks are all shown (keyword_shown), so nothing is read after fusing. Told to
    # show none, hybrid reads those documents' columns in one statement after fusing,
    # and returns the same hits.
    with db.engine.begin() as conn:
        _embed_some(conn, test_settings.embedding_dims, "TRUE")
    heavy = test_settings.model_copy(update={"hybrid_keyword_weight": 10.0})
    assert hybrid.keyword_shown(10, heavy) >= heavy.hybrid_depth
    assert hybrid.keyword_shown(10, test_settings) == 0  # the default weights show none
    vector = clustered_vectors(400, test_settings.embedding_dims, seed=6)[0]
    reads: list[str] = []

    def seen(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        reads.extend([statement] if "content" in statement else [])

    event.listen(db.engine, "before_cursor_execute", seen)
    try:
        with db.engine.connect() as conn:
            shown = hybrid.hybrid_hits(
                conn, QUERIES[2], vector, SearchFilter(), k=10, settings=heavy, concurrent=False
            )
            assert reads == []
            monkeypatch.setattr(hybrid, "keyword_shown", lambda k, settings: 0)
            filled = hybrid.hybrid_hits(
                conn, QUERIES[2], vector, SearchFilter(), k=10, settings=heavy, concurrent=False
            )
            assert len(reads) == 1 and "ANY" in reads[0]
    finally:
        event.remove(db.engine, "before_cursor_execute", seen)
    keyword_only = [h for h in shown if "vector" not in h.ranks]
    assert keyword_only and len(shown) == 10

    def key(hits: list[Hit]) -> list[tuple[Any, ...]]:
        return [(h.row_id, h.ranks, h.snippet, h.metadata, h.created_at, h.score) for h in hits]

    assert key(filled) == key(shown)
    assert all(h.snippet and h.created_at is not None for h in filled)


def test_no_keyword_rank_past_keyword_shown_reaches_the_top_k(test_settings: Settings) -> None:
    # The bound of keyword_shown against fusion itself: random halves (the vector half
    # with at least k documents), random weights; a document only the keyword half found,
    # not pending, is in the fused top k only at a rank keyword_shown shows.
    rng = random.Random(3)
    reached = 0
    for _ in range(3000):
        k = rng.randint(1, 20)
        settings = test_settings.model_copy(
            update={
                "rrf_k": rng.choice([1, 5, 20, 60]),
                "hybrid_vector_weight": rng.choice([0.1, 0.5, 1.0, 2.0]),
                "hybrid_keyword_weight": rng.choice([0.1, 0.5, 1.0, 3.0]),
            }
        )
        docs = [uuid.uuid4() for _ in range(80)]
        vector_docs = rng.sample(docs, rng.randint(k, 50))
        keyword_docs = rng.sample(docs, rng.randint(1, 50))

        def hits(ids: list[uuid.UUID]) -> list[Hit]:
            return [Hit("message", d, "", 0.0, {}) for d in ids]

        fused = fuse(
            {"vector": hits(vector_docs), "keyword": hits(keyword_docs)},
            k=k, rrf_k=settings.rrf_k,
            weights={
                "vector": settings.hybrid_vector_weight,
                "keyword": settings.hybrid_keyword_weight,
            },
        )  # fmt: skip
        for hit in fused:
            if "vector" not in hit.ranks:
                reached += 1
                assert hit.ranks["keyword"] <= hybrid.keyword_shown(k, settings)
    assert reached > 100  # keyword-only documents did reach the top k


def test_the_kth_largest_part_is_exact() -> None:
    rng = np.random.default_rng(8)
    for trial in range(3000):
        n = int(rng.integers(1, 20_000 if trial % 50 == 0 else 3000))
        k = int(rng.integers(1, min(n, 400) + 1))
        values = rng.exponential(size=n) if trial % 2 else rng.integers(0, 4, n).astype(float)
        assert _kth_largest(values, k) == np.sort(values)[::-1][k - 1], (n, k)
