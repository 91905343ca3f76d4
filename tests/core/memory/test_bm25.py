"""BM25 through the postings: equal to the exact scan and to BM25 computed here in Python,
document frequencies that follow inserts and deletes, filters that never come back
short, and the paths for an index whose postings are not there (yet)."""

from __future__ import annotations

import math
import random
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Connection, text

from config import Settings
from core.db import Database
from core.memory.bm25 import KeywordPlan, keyword_rows, query_terms, read_stats
from core.memory.filters import SearchFilter
from core.memory.indexer import index_document, remove_document
from core.memory.keyword_index import backfill, fold_deltas, reweigh_if_drifted
from core.memory.search import keyword_hits
from tests.conftest import create_test_user

WORDS = [
    "lighthouse", "keeper", "harbour", "storm", "lantern", "ship", "anchor", "rope", "gull",
    "tide", "reef", "beacon", "cliff", "wave", "sailor", "compass", "island", "mist", "oar",
    "deck", "mast", "sail", "current", "shore", "pier", "buoy", "fog", "night", "dawn", "salt",
]  # fmt: skip
QUERIES = [
    "lighthouse keeper",
    "storm over the harbour at night",
    "anchor rope and the old sailor",
    "gull",
    "fog mist dawn beacon cliff wave salt pier",
]


def _text(rng: random.Random) -> str:
    # Zipf-like: the first words are common, the last ones rare; lengths vary.
    n = rng.randint(2, 25)
    return " ".join(WORDS[min(int(rng.paretovariate(1.1)) - 1, len(WORDS) - 1)] for _ in range(n))


def _add(conn: Connection, body: str, **kw: Any) -> uuid.UUID:
    doc = uuid.uuid4()
    index_document(
        conn,
        entity_type=kw.pop("entity_type", "note"),
        entity_id=doc,
        text=body,
        user_id=kw.pop("user_id", None),
        **kw,
    )
    return doc


def _reference(conn: Connection, query: str, where: str = "TRUE") -> list[tuple[int, float]]:
    """BM25 in Python from the lexemes PostgreSQL gives, with the index's N, df and avgdl."""
    stats = read_stats(conn)
    lexemes = set(
        conn.execute(text("SELECT lexeme FROM unnest(to_tsvector('english', :q))"), {"q": query})
        .scalars()
        .all()
    )
    rows = conn.execute(
        text(
            "SELECT s.id, length(s.tsv) AS dl, u.lexeme, "
            "COALESCE(array_length(u.positions, 1), 1) AS tf "
            f"FROM search_index s, unnest(s.tsv) u WHERE {where}"
        )
    ).all()
    all_rows = conn.execute(text("SELECT s.id, s.tsv FROM search_index s")).all()
    df: dict[str, int] = {}
    for r in conn.execute(text("SELECT u.lexeme FROM search_index s, unnest(s.tsv) u")):
        df[r.lexeme] = df.get(r.lexeme, 0) + 1
    n = len(all_rows)
    scores: dict[int, float] = {}
    for r in rows:
        if r.lexeme in lexemes:
            idf = math.log(1 + (n - df[r.lexeme] + 0.5) / (df[r.lexeme] + 0.5))
            impact = r.tf * 2.2 / (r.tf + 1.2 * (0.25 + 0.75 * r.dl / stats.avgdl))
            scores[r.id] = scores.get(r.id, 0.0) + idf * impact
    return sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))


def _ids(rows: list[Any]) -> list[int]:
    return [int(r.id) for r in rows]


@pytest.fixture
def collection(db: Database) -> Iterator[None]:
    rng = random.Random(17)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        for _ in range(400):
            _add(conn, _text(rng))
    reweigh_if_drifted(db.engine)
    yield
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))


@pytest.mark.usefixtures("collection")
def test_postings_rank_like_exact_bm25(db: Database, test_settings: Settings) -> None:
    with db.engine.connect() as conn:
        assert read_stats(conn).ready
        assert read_stats(conn).chunks == 400
        for query in QUERIES:
            reference = _reference(conn, query)
            for limit in (1, 10, 30):
                run = keyword_rows(conn, query, SearchFilter(), limit=limit, settings=test_settings)
                exact = keyword_rows(
                    conn,
                    query,
                    SearchFilter(),
                    limit=limit,
                    settings=test_settings,
                    force=KeywordPlan.exact,
                )
                assert run.plan is KeywordPlan.postings and run.proven
                assert exact.plan is KeywordPlan.exact
                assert len(run.rows) == min(limit, len(reference))
                # Same scores (bit for bit: one scoring expression) and the same order.
                assert [(int(r.id), float(r.score)) for r in run.rows] == [
                    (int(r.id), float(r.score)) for r in exact.rows
                ]
                for row, (ref_id, ref_score) in zip(run.rows, reference, strict=False):
                    assert float(row.score) == pytest.approx(ref_score, rel=1e-6)
                    assert int(row.id) == ref_id or float(row.score) == pytest.approx(
                        ref_score, rel=1e-6
                    )


@pytest.mark.usefixtures("collection")
def test_a_small_budget_still_returns_k_good_rows(db: Database, test_settings: Settings) -> None:
    tight = test_settings.model_copy(update={"keyword_budget": 100})
    with db.engine.connect() as conn:
        run = keyword_rows(conn, QUERIES[4], SearchFilter(), limit=10, settings=tight)
        reference = dict(_reference(conn, QUERIES[4]))
    assert run.plan is KeywordPlan.postings and not run.proven
    assert len(run.rows) == 10
    # Stopped early, but every score returned is the exact one (rescored).
    for r in run.rows:
        assert float(r.score) == pytest.approx(reference[int(r.id)], rel=1e-6)


def test_document_frequencies_follow_inserts_and_deletes(
    db: Database, test_settings: Settings
) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        alpha = _add(conn, "quasar quasar nebula")
        beta = _add(conn, "pulsar pulsar nebula")
        for i in range(20):
            _add(conn, f"nebula filler {i} comet")

    def ranking() -> list[uuid.UUID]:
        with db.engine.connect() as conn:
            hits = keyword_hits(conn, "quasar pulsar", SearchFilter(), k=5, settings=test_settings)
        return [h.entity_id for h in hits]

    def df(term: str) -> int:
        with db.engine.connect() as conn:
            stats = read_stats(conn)
            terms = query_terms(conn, term, stats.chunks)
            return terms.dfs[0] if terms.dfs else 0

    # Both rare, tied df: the order is by id (alpha first); equal scores.
    assert ranking() == [alpha, beta]
    assert df("quasar") == 1 and df("nebula") == 22
    # quasar becomes common: its IDF falls and beta's rare pulsar wins.
    with db.engine.begin() as conn:
        extra = [_add(conn, f"quasar catalogue entry {i}") for i in range(15)]
    assert df("quasar") == 16
    assert ranking()[0] == beta
    fold_deltas(db.engine)  # folding changes nothing a query sees
    assert df("quasar") == 16
    assert ranking()[0] == beta
    with db.engine.begin() as conn:
        for doc in extra:
            remove_document(conn, entity_type="note", entity_id=doc)
    assert df("quasar") == 1
    assert ranking() == [alpha, beta]
    with db.engine.connect() as conn:
        assert read_stats(conn).chunks == 22
        # Deleted rows left no postings behind.
        orphans = conn.execute(
            text(
                "SELECT count(*) FROM search_postings p "
                "WHERE NOT EXISTS (SELECT 1 FROM search_index s WHERE s.id = p.row_id)"
            )
        ).scalar_one()
    assert orphans == 0


@pytest.mark.usefixtures("collection")
def test_filters_never_short_on_any_plan(db: Database, test_settings: Settings) -> None:
    owner, _ = create_test_user(db, f"bm25-{uuid.uuid4().hex[:6]}@kw.org")
    with db.engine.begin() as conn:
        for i in range(12):
            _add(conn, f"harbour log {i}", user_id=owner.id)
            _add(conn, f"harbour chart {i}", entity_type="chart")
            _add(conn, f"harbour tag {i}", metadata={"tag": "rare"})
    filters = {
        "user": SearchFilter(user_id=owner.id),
        "entity_type": SearchFilter(entity_type="chart"),
        "metadata": SearchFilter(metadata={"tag": "rare"}),
    }
    # The exact-threshold decides the plan: 0 sends even these small scopes through the
    # postings (most read postings are filtered out, so the lists must be read deeper).
    through_postings = test_settings.model_copy(update={"search_exact_threshold": 0})
    with db.engine.connect() as conn:
        for name, flt in filters.items():
            for settings, plan in (
                (test_settings, KeywordPlan.scope),
                (through_postings, KeywordPlan.postings),
            ):
                run = keyword_rows(conn, "harbour", flt, limit=10, settings=settings)
                assert run.plan is plan, name
                assert len(run.rows) == 10, (name, plan)
                where, params = flt.where()
                count = f"SELECT count(*) FROM search_index WHERE {where} AND content ~ 'harbour'"
                matching = conn.execute(text(count), params).scalar_one()
                wide = keyword_rows(conn, "harbour", flt, limit=50, settings=settings)
                assert len(wide.rows) == matching  # all of them, no more
            # Postings and exact agree under the filter (same collection statistics).
            run = keyword_rows(conn, "harbour storm", flt, limit=10, settings=through_postings)
            exact = keyword_rows(
                conn,
                "harbour storm",
                flt,
                limit=10,
                settings=through_postings,
                force=KeywordPlan.exact,
            )
            assert _ids(run.rows) == _ids(exact.rows)


@pytest.mark.usefixtures("collection")
def test_filter_scope_statistics_match_python(db: Database, test_settings: Settings) -> None:
    with db.engine.begin() as conn:
        for i in range(5):
            _add(conn, f"tide tide reef {i}", entity_type="log")
            _add(conn, f"tide lantern {i}", entity_type="log")
    with db.engine.connect() as conn:
        run = keyword_rows(
            conn, "tide lantern", SearchFilter(entity_type="log"), limit=10, settings=test_settings
        )
        assert run.plan is KeywordPlan.scope
        rows = conn.execute(
            text(
                "SELECT s.id, length(s.tsv) AS dl, u.lexeme, "
                "COALESCE(array_length(u.positions, 1), 1) AS tf "
                "FROM search_index s, unnest(s.tsv) u WHERE s.entity_type = 'log'"
            )
        ).all()
    n = len({r.id for r in rows})
    lengths = {r.id: r.dl for r in rows}  # every 'log' row matches "tide"
    avgdl = sum(lengths.values()) / len(lengths)
    df = {t: len({r.id for r in rows if r.lexeme == t}) for t in ("tide", "lantern")}
    scores: dict[int, float] = {}
    for r in rows:
        if r.lexeme in df:
            idf = math.log(1 + (n - df[r.lexeme] + 0.5) / (df[r.lexeme] + 0.5))
            impact = r.tf * 2.2 / (r.tf + 1.2 * (0.25 + 0.75 * r.dl / avgdl))
            scores[r.id] = scores.get(r.id, 0.0) + idf * impact
    expected = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))
    assert [(int(r.id), pytest.approx(float(r.score))) for r in run.rows] == [
        (i, pytest.approx(s)) for i, s in expected
    ]


@pytest.mark.usefixtures("collection")
def test_exact_paths_setting_and_web_search(db: Database, test_settings: Settings) -> None:
    off = test_settings.model_copy(update={"keyword_index": False})
    with db.engine.connect() as conn:
        on_run = keyword_rows(conn, QUERIES[1], SearchFilter(), limit=10, settings=test_settings)
        off_run = keyword_rows(conn, QUERIES[1], SearchFilter(), limit=10, settings=off)
        web = keyword_rows(conn, '"old sailor" -storm', SearchFilter(), limit=10, settings=off)
        dash = keyword_rows(conn, "storm - reef", SearchFilter(), limit=5, settings=test_settings)
    assert off_run.plan is KeywordPlan.exact and on_run.plan is KeywordPlan.postings
    assert _ids(off_run.rows) == _ids(on_run.rows)
    assert web.plan is KeywordPlan.exact
    assert dash.plan is KeywordPlan.postings  # a dash between spaces is not a negation


def test_backfill_of_rows_that_predate_the_postings(db: Database, test_settings: Settings) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        conn.execute(text("ALTER TABLE search_index DISABLE TRIGGER search_keyword_inserted"))
        rng = random.Random(5)
        for _ in range(120):
            _add(conn, _text(rng))
        conn.execute(text("ALTER TABLE search_index ENABLE TRIGGER search_keyword_inserted"))
        # What revision 0018 records for rows that exist when it runs.
        conn.execute(
            text(
                "UPDATE search_keyword_stats SET backfilled = 0, "
                "backfill_upto = (SELECT max(id) FROM search_index)"
            )
        )
        late = _add(conn, "lighthouse written after the migration")
    with db.engine.connect() as conn:
        assert not read_stats(conn).ready
        before = keyword_rows(conn, "lighthouse", SearchFilter(), limit=200, settings=test_settings)
        assert before.plan is KeywordPlan.scope  # correct while the backfill is pending
    seen: list[tuple[str, int, int]] = []
    done = backfill(db.engine, batch_size=50, progress=lambda *a: seen.append(a))
    assert done == 120 and seen[-1] == ("keyword index", 120, 120) and len(seen) == 3
    with db.engine.connect() as conn:
        assert read_stats(conn).ready and read_stats(conn).chunks == 121
        # Vacuumed after the backfill: index-only scans of the postings skip the heap.
        pages, visible = conn.execute(
            text("SELECT relpages, relallvisible FROM pg_class WHERE relname = 'search_postings'")
        ).one()
        assert pages > 0 and visible == pages
        after = keyword_rows(conn, "lighthouse", SearchFilter(), limit=200, settings=test_settings)
        exact = keyword_rows(
            conn, "lighthouse", SearchFilter(), limit=200, settings=test_settings,
            force=KeywordPlan.exact,
        )  # fmt: skip
        late_id = conn.execute(
            text("SELECT id FROM search_index WHERE entity_id = :e"), {"e": late}
        ).scalar_one()
    assert after.plan is KeywordPlan.postings
    assert _ids(after.rows) == _ids(exact.rows)
    assert set(_ids(after.rows)) == set(_ids(before.rows)) and late_id in _ids(after.rows)


def test_reweighing_after_the_average_length_drifts(db: Database, test_settings: Settings) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        conn.execute(text("UPDATE search_keyword_stats SET avgdl = 3"))  # short notes so far
        for i in range(30):
            _add(conn, " ".join(WORDS[(i + j) % len(WORDS)] for j in range(12)))
    assert reweigh_if_drifted(db.engine)  # live avgdl 12 vs 3
    assert not reweigh_if_drifted(db.engine)
    with db.engine.connect() as conn:
        stats = read_stats(conn)
        assert stats.avgdl == pytest.approx(12) and stats.ready and stats.chunks == 30
        postings = conn.execute(text("SELECT count(*) FROM search_postings")).scalar_one()
        run = keyword_rows(conn, "storm lantern", SearchFilter(), limit=5, settings=test_settings)
        exact = keyword_rows(
            conn, "storm lantern", SearchFilter(), limit=5, settings=test_settings,
            force=KeywordPlan.exact,
        )  # fmt: skip
    assert postings == 30 * 12
    assert _ids(run.rows) == _ids(exact.rows)
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        # Deletes find the rewritten postings by their new weights.
        assert conn.execute(text("SELECT count(*) FROM search_postings")).scalar_one() == 0


def test_embedding_worker_folds_deltas_and_reweighs(db: Database, test_settings: Settings) -> None:
    from core.memory.worker import EmbeddingWorker

    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index"))
        conn.execute(text("UPDATE search_keyword_stats SET avgdl = 50"))
        for i in range(10):
            _add(conn, f"short note {i} harbour")  # 4 lexemes
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM search_term_deltas")).scalar_one() > 0
    EmbeddingWorker(db.engine, test_settings).housekeeping()
    with db.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM search_term_deltas")).scalar_one() == 0
        stats = read_stats(conn)
        assert stats.avgdl == pytest.approx(4) and stats.chunks == 10 and stats.ready
        run = keyword_rows(conn, "harbour", SearchFilter(), limit=10, settings=test_settings)
    assert run.plan is KeywordPlan.postings and len(run.rows) == 10
