"""Hybrid's halves overlap on one connection (core/memory/hybrid.py): the vector half is
sent pipelined while the keyword half adds up what it read, and fuses to what the two
halves give one after the other, filtered or not, and when its first plan comes back
short. Decoded blocks kept by segment generation (core/memory/block_cache.py) answer as
the round statement did, and a database made again under its name never finds the
blocks of the one before."""

from __future__ import annotations

import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, event, text

from config import Settings
from core.db import Database, open_database
from core.db.embedded import ensure_database, socket_dir
from core.memory import bm25_reads
from core.memory.block_cache import block_cache
from core.memory.bm25 import KeywordPlan, keyword_rows
from core.memory.filters import SearchFilter
from core.memory.hybrid import hybrid_hits
from core.memory.indexer import vector_literal
from core.memory.keyword_segment import compact
from core.memory.search import Hit, fuse, keyword_hits, vector_search
from core.memory.synthetic import clustered_vectors
from tests.conftest import TEMPLATE_DB, create_test_user
from tests.core.memory.test_bm25 import QUERIES, _add, _text

SMALL_BLOCK = 16
N = 400


def _embed(conn: Connection, dims: int, seed: int) -> list[Any]:
    """Give every chunk a vector (the worker's job, done here in one statement)."""
    ids = list(conn.execute(text("SELECT id FROM search_index ORDER BY id")).scalars())
    vectors = clustered_vectors(len(ids), dims, seed=seed)
    conn.execute(
        text(
            "UPDATE search_index s SET embedding = CAST(v.e AS vector) FROM "
            "unnest(CAST(:ids AS bigint[]), CAST(:vs AS text[])) AS v(id, e) WHERE s.id = v.id"
        ),
        {"ids": ids, "vs": [vector_literal(v) for v in vectors]},
    )
    return list(vectors)


@pytest.fixture
def owner(db: Database, test_settings: Settings) -> Iterator[tuple[uuid.UUID, list[Any]]]:
    """400 embedded chunks, a tenth of them one user's, compacted into small blocks."""
    user, _ = create_test_user(db, f"overlap-{uuid.uuid4().hex[:6]}@kw.org")
    rng = random.Random(57)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for i in range(N):
            _add(conn, _text(rng), user_id=user.id if i % 10 == 0 else None)
        vectors = _embed(conn, test_settings.embedding_dims, seed=9)
    compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
    yield user.id, vectors
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))


def _one_after_the_other(
    conn: Connection, query: str, vector: Any, flt: SearchFilter, k: int, settings: Settings
) -> list[Hit]:
    depth = max(k, settings.hybrid_depth)
    ranked = {
        "vector": vector_search(conn, vector, flt, k=depth, settings=settings),
        "keyword": keyword_hits(
            conn, query, flt, k=depth, settings=settings, chunks_per_hit=1,
            budget=settings.hybrid_keyword_budget, ranks=True,
        ),
    }  # fmt: skip
    weights = {"vector": settings.hybrid_vector_weight, "keyword": settings.hybrid_keyword_weight}
    return fuse(ranked, k=2 * depth, rrf_k=settings.rrf_k, weights=weights)[:k]


def _key(hits: list[Hit]) -> list[tuple[Any, ...]]:
    """What a hit shows: the snippet, metadata and date came with the halves' rows."""
    return [(h.entity_id, h.chunk, h.ranks, h.snippet, h.metadata, h.created_at) for h in hits]


class _VectorStatements:
    """Counts the vector statements SQLAlchemy sends (a pipelined one goes around it),
    and the statements reading content (a read after fusing would)."""

    def __init__(self, db: Database) -> None:
        self.count = self.content = 0
        event.listen(db.engine, "before_cursor_execute", self._seen)
        self._db = db

    def _seen(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.count += "<=>" in statement
        self.content += "content" in statement

    def close(self) -> None:
        event.remove(self._db.engine, "before_cursor_execute", self._seen)


def _keyword_runs(
    db: Database, settings: Settings, queries: list[str], budget: int = 300
) -> list[list[tuple[int, float]]]:
    """(id, score) of the blocks plan and of the ranked plan, per query."""
    out = []
    with db.engine.connect() as conn:
        for query in queries:
            for ranks in (False, True):
                run = keyword_rows(
                    conn, query, SearchFilter(), limit=10, settings=settings,
                    budget=budget, ranks=ranks,
                )  # fmt: skip
                assert run.plan is KeywordPlan.blocks and run.blocks_read > 0
                out.append([(int(r.id), round(float(r.score), 9)) for r in run.rows])
    return out


def test_the_vector_half_runs_beside_the_keyword_half(
    db: Database, test_settings: Settings, owner: tuple[uuid.UUID, list[Any]]
) -> None:
    user, vectors = owner
    # A small depth, so one user's 40 chunks are planned through the index (the keyword
    # half's ranked plan, the vector half's iterative scan) and not as a small scope.
    settings = test_settings.model_copy(update={"search_exact_threshold": 0, "hybrid_depth": 20})
    seen = _VectorStatements(db)
    try:
        with db.engine.connect() as conn:
            for flt in (SearchFilter(), SearchFilter(user_id=user)):
                for i, query in enumerate(QUERIES):
                    vector = vectors[7 * i]
                    seen.count = seen.content = 0
                    hits = hybrid_hits(
                        conn, query, vector, flt, k=10, settings=settings, concurrent=False
                    )
                    assert seen.count == 0  # the vector half went through the pipeline
                    assert seen.content == 0  # and nothing was read after fusing
                    assert len(hits) == 10 and all(h.snippet for h in hits)
                    assert _key(hits) == _key(
                        _one_after_the_other(conn, query, vector, flt, 10, settings)
                    )
                    assert seen.count > 0  # the reference did go through SQLAlchemy
                    conn.rollback()
    finally:
        seen.close()


def test_a_short_first_vector_plan_goes_on_after_the_overlap(
    db: Database, test_settings: Settings, owner: tuple[uuid.UUID, list[Any]]
) -> None:
    # Right after a load, most chunks still wait for their vectors: the index scan sent
    # beside the keyword half comes back short and the query goes on to the exact scan.
    _, vectors = owner
    seen = _VectorStatements(db)
    try:
        with db.engine.connect() as conn:
            conn.execute(
                text(
                    "UPDATE search_index SET embedding = NULL WHERE id NOT IN "
                    "(SELECT id FROM search_index ORDER BY id LIMIT 30)"
                )
            )
            for i, query in enumerate(QUERIES):
                seen.count = 0
                hits = hybrid_hits(
                    conn, query, vectors[i], SearchFilter(), k=40, settings=test_settings,
                    concurrent=False,
                )  # fmt: skip
                assert seen.count > 0  # the plans after the first, statement by statement
                reference = _one_after_the_other(
                    conn, query, vectors[i], SearchFilter(), 40, test_settings
                )
                assert _key(hits) == _key(reference) and len(hits) == 40
                # The 30 vectors there are were all found (pending chunks rank by keyword).
                assert 0 < sum("vector" in h.ranks for h in hits) <= 30
            conn.rollback()
    finally:
        seen.close()


def test_cached_blocks_answer_as_the_statement_did(
    db: Database, test_settings: Settings, owner: tuple[uuid.UUID, list[Any]]
) -> None:
    cache = block_cache(test_settings)
    assert cache is not None
    off = test_settings.model_copy(update={"keyword_block_cache_mb": 0})
    assert block_cache(off) is None
    cache.clear()

    cold = _keyword_runs(db, test_settings, QUERIES)
    assert cache.misses > 0 and len(cache) > 0 and cache.size_bytes > 0
    cache.hits = cache.misses = 0
    warm = _keyword_runs(db, test_settings, QUERIES)
    assert cache.hits > 0
    assert warm == cold == _keyword_runs(db, off, QUERIES)


def test_a_database_made_again_under_its_name_finds_none_of_the_old_blocks(
    pg_server: Any, template_db: str, test_settings: Settings
) -> None:
    name = f"t_again_{uuid.uuid4().hex[:8]}"
    answers = []
    generations = []
    # The same first row in both, so the same words get the same term ids; the gull rows
    # differ. Old blocks served under the new database would rank the old gull rows.
    first = ["lighthouse gull"] * 20 + ["lighthouse keeper harbour storm"] * 40
    second = ["lighthouse gull"] + ["lighthouse keeper"] * 39 + ["lighthouse gull"] * 20
    for words in (first, second):
        ensure_database(pg_server, name, template=TEMPLATE_DB)
        db = open_database(test_settings, database=name)
        try:
            with db.engine.begin() as conn:
                for i, body in enumerate(words):
                    _add(conn, f"{body} {i}")
            compact(db.engine, test_settings, force=True, block=SMALL_BLOCK)
            with db.engine.connect() as conn:
                generations.append(
                    conn.execute(
                        text("SELECT segment_generation FROM search_keyword_stats")
                    ).scalar_one()
                )
                run = keyword_rows(
                    conn, "lighthouse gull", SearchFilter(), limit=5, settings=test_settings
                )
                exact = keyword_rows(
                    conn, "lighthouse gull", SearchFilter(), limit=5, settings=test_settings,
                    force=KeywordPlan.exact,
                )  # fmt: skip
                assert run.plan is KeywordPlan.blocks
                assert [int(r.id) for r in run.rows] == [int(r.id) for r in exact.rows]
                answers.append({r.content for r in run.rows})
        finally:
            db.dispose()
        _drop(pg_server, name)
    assert generations[0] != generations[1]
    assert all("gull" in c for c in answers[1])
    assert answers[0] != answers[1]  # each database's own rows


def _drop(server: Any, name: str) -> None:
    import psycopg
    from psycopg import sql

    from core.db.embedded import SUPERUSER

    with psycopg.connect(
        host=socket_dir(server), user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(name)))


def test_a_cached_first_round_takes_its_tails_from_the_terms_statement(
    db: Database,
    test_settings: Settings,
    owner: tuple[uuid.UUID, list[Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = block_cache(test_settings)
    assert cache is not None
    cache.clear()
    off = test_settings.model_copy(update={"keyword_block_cache_mb": 0})
    first_rounds: list[str] = []  # the query of each first round that sent ROUND_SQL
    real = bm25_reads._statement

    def counted(pg: Any, terms: Any, lists: Any, *rest: Any) -> None:
        if all(d == 0 for d in lists.depth):
            first_rounds.append(" ".join(terms.terms))
        real(pg, terms, lists, *rest)

    monkeypatch.setattr(bm25_reads, "_statement", counted)

    # A few postings written since the segment: every tail is read whole with the terms.
    rng = random.Random(3)
    with db.engine.begin() as conn:
        for _ in range(3):
            _add(conn, "gull harbour storm lighthouse " + _text(rng))
    cold = _keyword_runs(db, test_settings, QUERIES)
    assert first_rounds  # the blocks were not cached yet
    first_rounds.clear()
    warm = _keyword_runs(db, test_settings, QUERIES)
    assert first_rounds == []  # cached blocks and the tails read with the terms
    assert warm == cold == _keyword_runs(db, off, QUERIES)
    assert first_rounds  # without the cache every round is a statement

    # A rare term with more tail than was read with the terms (within the budget it is
    # read whole and needs all of it): its first round is a statement again.
    with db.engine.begin() as conn:
        for _ in range(300):
            _add(conn, "salt " + _text(rng))
    query = ["salt pier"]
    _keyword_runs(db, test_settings, query, 10_000)
    first_rounds.clear()
    warm = _keyword_runs(db, test_settings, query, 10_000)
    assert len(first_rounds) == 2 and all("salt" in q for q in first_rounds)
    assert warm == _keyword_runs(db, off, query, 10_000)
