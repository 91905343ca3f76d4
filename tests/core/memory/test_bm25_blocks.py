"""BM25 through the segment's packed blocks (plan ``blocks``): the exact scan's ranking,
bit for bit, on a fresh segment, with a tail of rows written since, after deletes and
content changes past the snapshot, after a rebuild; IDF that follows writes; filters
that never come back short; the rebuild's progress and the housekeeping that runs it."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, text

from config import Settings
from core.db import Database
from core.memory.bm25 import KeywordPlan, KeywordRun, keyword_rows, query_terms, read_stats
from core.memory.filters import SearchFilter
from core.memory.indexer import index_document, remove_document
from core.memory.keyword_segment import PHASE, compact
from tests.conftest import create_test_user
from tests.core.memory.test_bm25 import QUERIES, WORDS, _add, _ids, _reference, _text

SMALL_BLOCK = 16  # a 400-chunk collection spans many blocks, so rounds read deeper


def _count(conn: Connection, sql: str) -> int:
    return int(conn.execute(text(sql)).scalar_one())


def _same_as_exact(
    conn: Connection,
    query: str,
    flt: SearchFilter,
    limit: int,
    settings: Settings,
    force: KeywordPlan | None = None,
) -> KeywordRun:
    run = keyword_rows(conn, query, flt, limit=limit, settings=settings, force=force)
    exact = keyword_rows(conn, query, flt, limit=limit, settings=settings, force=KeywordPlan.exact)
    assert run.plan is KeywordPlan.blocks and run.proven, (query, limit)
    # Same scores (one scoring expression) and the same order as the exact scan.
    assert [(int(r.id), float(r.score)) for r in run.rows] == [
        (int(r.id), float(r.score)) for r in exact.rows
    ], (query, limit)
    return run


@pytest.fixture
def segment(db: Database, test_settings: Settings) -> Iterator[None]:
    rng = random.Random(23)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for _ in range(400):
            _add(conn, _text(rng))
    compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
    yield
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))


@pytest.mark.usefixtures("segment")
def test_blocks_rank_like_exact_bm25(db: Database, test_settings: Settings) -> None:
    with db.engine.connect() as conn:
        assert _count(conn, "SELECT count(*) FROM search_postings") == 0  # all moved
        blocks = _count(conn, "SELECT count(*) FROM search_posting_blocks")
        assert blocks > len(WORDS)  # common terms span many blocks
        deeper = 0
        for query in QUERIES:
            reference = _reference(conn, query)
            for limit in (1, 10, 30):
                run = _same_as_exact(conn, query, SearchFilter(), limit, test_settings)
                assert run.blocks_read > 0 and run.postings_read > 0
                deeper += run.rounds > 1
                assert len(run.rows) == min(limit, len(reference))
                for row, (_, ref_score) in zip(run.rows, reference, strict=False):
                    assert float(row.score) == pytest.approx(ref_score, rel=1e-6)
        assert deeper  # some queries needed more than the first blocks
        # The plan is chosen because the segment exists; forcing the old postings plan
        # cannot miss the segment's rows either.
        forced = keyword_rows(
            conn, QUERIES[1], SearchFilter(), limit=10, settings=test_settings,
            force=KeywordPlan.postings,
        )  # fmt: skip
        assert forced.plan is KeywordPlan.blocks


@pytest.mark.usefixtures("segment")
def test_a_spent_budget_settles_on_the_best_known_parts(
    db: Database, test_settings: Settings
) -> None:
    # A budget of a few blocks cannot prove the top-k of the long query: the query
    # settles on rescored rows (exact scores, the exact order among them), is marked
    # unproven, and comes back full; an ample budget proves the same query.
    query, limit = QUERIES[4], 10
    with db.engine.connect() as conn:
        exact = keyword_rows(
            conn, query, SearchFilter(), limit=500, settings=test_settings,
            force=KeywordPlan.exact,
        )  # fmt: skip
        truth = {int(r.id): float(r.score) for r in exact.rows}
        spent = keyword_rows(
            conn, query, SearchFilter(), limit=limit, settings=test_settings, budget=64
        )
        assert spent.plan is KeywordPlan.blocks and not spent.proven
        assert spent.postings_read < 64 + 8 * SMALL_BLOCK  # stopped near the budget
        assert len(spent.rows) == limit
        scores = [(int(r.id), float(r.score)) for r in spent.rows]
        assert all(truth[i] == v for i, v in scores)  # rescored exactly
        assert scores == sorted(scores, key=lambda r: (-r[1], r[0]))
        assert spent.rescored >= limit
        ample = keyword_rows(
            conn, query, SearchFilter(), limit=limit, settings=test_settings, budget=10**7
        )
        assert ample.proven
        assert [int(r.id) for r in ample.rows] == [int(r.id) for r in exact.rows[:limit]]


@pytest.mark.usefixtures("segment")
def test_writes_past_the_snapshot_and_a_rebuild(db: Database, test_settings: Settings) -> None:
    with db.engine.connect() as conn:
        before_gen = read_stats(conn).segment_generation
        victims = list(
            conn.execute(text("SELECT entity_id FROM search_index ORDER BY id LIMIT 40")).scalars()
        )
    rng = random.Random(5)
    with db.engine.begin() as conn:
        fresh = [_add(conn, _text(rng)) for _ in range(60)]  # the tail
        strong = _add(conn, "zeppelin over the lighthouse")
        for doc in victims:  # deleted rows whose postings are in the segment
            remove_document(conn, entity_type="note", entity_id=doc)
    with db.engine.connect() as conn:
        tail = _count(conn, "SELECT count(*) FROM search_postings")
        assert tail > 0
        for query in QUERIES:
            for limit in (1, 10, 30):
                run = _same_as_exact(conn, query, SearchFilter(), limit, test_settings)
                assert run.postings_read > 0
        top = keyword_rows(conn, "zeppelin", SearchFilter(), limit=1, settings=test_settings)
        strong_id = conn.execute(
            text("SELECT id FROM search_index WHERE entity_id = :e"), {"e": strong}
        ).scalar_one()
        assert _ids(top.rows) == [strong_id]  # found in the tail
    # A content change is a delete and an insert: the new text is a tail row, the old
    # text's segment entries are dropped when rescored.
    changed = fresh[0]
    with db.engine.begin() as conn:
        index_document(
            conn, entity_type="note", entity_id=changed, text="quasar nebula", user_id=None
        )
    with db.engine.connect() as conn:
        hits = keyword_rows(conn, "quasar", SearchFilter(), limit=5, settings=test_settings)
        assert [r.entity_id for r in hits.rows] == [changed]
        _same_as_exact(conn, QUERIES[2], SearchFilter(), 30, test_settings)
        live_postings = _count(conn, "SELECT count(*) FROM search_index s, unnest(s.tsv) u")
        tail = _count(conn, "SELECT count(*) FROM search_postings")
    seen: list[tuple[str, int, int]] = []
    report = compact(
        db.engine, test_settings, force=True, block=SMALL_BLOCK, progress=lambda *a: seen.append(a)
    )
    assert report is not None
    assert report.moved == tail and report.dropped > 0  # the victims' entries left out
    assert report.postings == live_postings
    assert seen[0] == (PHASE, 0, live_postings) and seen[-1] == (
        PHASE,
        live_postings,
        live_postings,
    )
    with db.engine.connect() as conn:
        assert read_stats(conn).segment_generation > before_gen
        assert _count(conn, "SELECT count(*) FROM search_postings") == 0
        for query in QUERIES:
            _same_as_exact(conn, query, SearchFilter(), 10, test_settings)


@pytest.mark.usefixtures("segment")
def test_idf_follows_writes_to_segment_and_tail(db: Database, test_settings: Settings) -> None:
    def df(word: str) -> int:
        with db.engine.connect() as conn:
            terms = query_terms(conn, word, read_stats(conn).chunks)
            return terms.dfs[0] if terms.dfs else 0

    with db.engine.connect() as conn:
        start = _count(
            conn, "SELECT count(*) FROM search_index WHERE tsv @@ to_tsquery('english', 'gull')"
        )
    assert df("gull") == start
    with db.engine.begin() as conn:
        added = [_add(conn, f"gull colony survey {i}") for i in range(25)]
    assert df("gull") == start + 25
    with db.engine.begin() as conn:
        # Rows in the segment: their postings are not in search_postings any more, the
        # delete trigger counts their lexemes from the tsvector.
        old = list(
            conn.execute(
                text(
                    "SELECT entity_id FROM search_index WHERE tsv @@ to_tsquery('english', 'gull') "
                    "ORDER BY id LIMIT 5"
                )
            ).scalars()
        )
        for doc in old + added[:10]:
            remove_document(conn, entity_type="note", entity_id=doc)
    assert df("gull") == start + 25 - 15
    with db.engine.connect() as conn:
        assert read_stats(conn).chunks == 400 + 25 - 15
        _same_as_exact(conn, "gull colony storm", SearchFilter(), 10, test_settings)


@pytest.mark.usefixtures("segment")
def test_filters_through_blocks_never_short(db: Database, test_settings: Settings) -> None:
    owner, _ = create_test_user(db, f"blocks-{uuid.uuid4().hex[:6]}@kw.org")
    with db.engine.begin() as conn:
        for i in range(12):
            _add(conn, f"harbour log {i}", user_id=owner.id)
            _add(conn, f"harbour tag {i}", metadata={"tag": "rare"})
    compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
    with db.engine.begin() as conn:
        for i in range(3):  # and some in the tail
            _add(conn, f"harbour late {i}", user_id=owner.id)
    through_index = test_settings.model_copy(update={"search_exact_threshold": 0})
    with db.engine.connect() as conn:
        for flt, matching in (
            (SearchFilter(user_id=owner.id), 15),
            (SearchFilter(metadata={"tag": "rare"}), 12),
        ):
            for limit in (10, 50):
                # 50: more than match, which the planner would answer from the scope.
                run = _same_as_exact(
                    conn, "harbour", flt, limit, through_index, force=KeywordPlan.blocks
                )
                assert len(run.rows) == min(limit, matching)
            _same_as_exact(conn, "harbour storm lantern", flt, 10, through_index)


def test_housekeeping_compacts_a_grown_tail(db: Database, test_settings: Settings) -> None:
    from core.memory.worker import EmbeddingWorker

    settings = test_settings.model_copy(
        update={"keyword_compact_min": 100, "keyword_tail_fraction": 0.5}
    )
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for i in range(10):
            _add(conn, f"short note {i} harbour")  # 40 postings: below the minimum
    worker = EmbeddingWorker(db.engine, settings)
    worker.housekeeping()
    with db.engine.connect() as conn:
        assert read_stats(conn).segment_postings == 0
    with db.engine.begin() as conn:
        for i in range(40):
            _add(conn, f"longer note {i} about the harbour at night")
    worker.housekeeping()
    with db.engine.connect() as conn:
        stats = read_stats(conn)
        assert stats.segment_postings == _count(
            conn, "SELECT count(*) FROM search_index s, unnest(s.tsv) u"
        )
        assert _count(conn, "SELECT count(*) FROM search_postings") == 0
        run = keyword_rows(conn, "harbour night", SearchFilter(), limit=5, settings=settings)
        assert run.plan is KeywordPlan.blocks and run.blocks_read > 0
    with db.engine.begin() as conn:
        for i in range(5):
            _add(conn, f"one more {i}")  # a small tail: no rebuild
    worker.housekeeping()
    with db.engine.connect() as conn:
        assert read_stats(conn).segment_postings == stats.segment_postings
        assert _count(conn, "SELECT count(*) FROM search_postings") > 0
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))


@pytest.mark.usefixtures("segment")
def test_concurrent_hybrid_halves(db: Database, test_settings: Settings) -> None:
    from core.memory.hybrid import hybrid_hits

    vector = [1.0] + [0.0] * (test_settings.embedding_dims - 1)
    everything = SearchFilter()

    def key(hits: list[Any]) -> list[tuple[Any, int]]:
        return [(h.entity_id, h.chunk) for h in hits]

    with db.engine.connect() as conn:
        for query in QUERIES:
            alone = hybrid_hits(
                conn, query, vector, everything, k=10, settings=test_settings, concurrent=False
            )
            both = hybrid_hits(
                conn, query, vector, everything, k=10, settings=test_settings, concurrent=True
            )
            assert key(both) == key(alone) and alone
    with db.engine.begin() as conn:
        # A transaction that wrote: a second connection could not see the new chunk, so
        # both halves stay on this one.
        doc = _add(conn, "zeppelin hangar")
        hits = hybrid_hits(
            conn, "zeppelin", vector, everything, k=5, settings=test_settings, concurrent=True
        )
        assert [h.entity_id for h in hits] == [doc]
        conn.rollback()


@pytest.mark.usefixtures("segment")
def test_hybrid_keyword_half_reads_within_its_own_budget(
    db: Database, test_settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # AGENTRY_HYBRID_KEYWORD_BUDGET, not AGENTRY_KEYWORD_BUDGET, bounds what hybrid's
    # keyword half reads: with a few blocks' worth it settles unproven and still ranks.
    from core.memory import hybrid, search

    runs: list[KeywordRun] = []
    real = search.keyword_rows

    def recording(*args: Any, **kwargs: Any) -> KeywordRun:
        runs.append(real(*args, **kwargs))
        return runs[-1]

    monkeypatch.setattr(search, "keyword_rows", recording)
    vector = [1.0] + [0.0] * (test_settings.embedding_dims - 1)
    tight = test_settings.model_copy(update={"hybrid_keyword_budget": 64, "hybrid_depth": 10})
    with db.engine.connect() as conn:
        hits = hybrid.hybrid_hits(
            conn, QUERIES[4], vector, SearchFilter(), k=10, settings=tight, concurrent=False
        )
        assert len(hits) == 10
        assert runs[-1].plan is KeywordPlan.blocks and not runs[-1].proven
        assert runs[-1].postings_read < 64 + 8 * SMALL_BLOCK
        search.keyword_hits(conn, QUERIES[4], SearchFilter(), k=10, settings=tight)
        assert runs[-1].proven  # keyword mode keeps AGENTRY_KEYWORD_BUDGET


def test_a_spent_budget_under_a_filter_rescores_until_enough_pass(
    db: Database, test_settings: Settings
) -> None:
    # A tenth of the chunks are one user's: settling rescores more candidates (GROWTH
    # times as many each time) until `limit` of them pass, instead of the exact scan.
    owner, _ = create_test_user(db, f"settle-{uuid.uuid4().hex[:6]}@kw.org")
    rng = random.Random(31)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for i in range(400):
            _add(conn, _text(rng), user_id=owner.id if i % 10 == 0 else None)
    compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
    mine = SearchFilter(user_id=owner.id)
    through_index = test_settings.model_copy(update={"search_exact_threshold": 0})
    query = QUERIES[4]
    with db.engine.connect() as conn:
        exact = keyword_rows(
            conn, query, mine, limit=100, settings=through_index, force=KeywordPlan.exact
        )
        truth = {int(r.id): float(r.score) for r in exact.rows}
        run = keyword_rows(conn, query, mine, limit=5, settings=through_index, budget=64)
        assert run.plan is KeywordPlan.blocks and not run.fallbacks and not run.proven
        assert len(run.rows) == 5 and run.rescored > 3 * 5  # more than one settling round
        assert all(truth[int(r.id)] == float(r.score) for r in run.rows)  # the user's own
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
