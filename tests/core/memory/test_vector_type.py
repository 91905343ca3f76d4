"""AGENTRY_VECTOR_TYPE: the column, the HNSW index and the queries follow it; re-embed moves it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings, reset_settings
from core.cli.main import app as cli
from core.db import Database, prepare_database
from core.errors import EmbeddingMismatchError
from core.memory.bulk import BulkRow, bulk_load
from core.memory.embeddings import Embedder
from core.memory.filters import SearchFilter
from core.memory.indexer import embed_pending, index_document
from core.memory.search import search
from core.memory.service import check_memory
from core.memory.storage import column_type
from core.memory.strategy import PlanKind
from core.memory.synthetic import clustered_vectors
from core.memory.vector_query import run_vector_query
from core.models.search import HNSW_INDEX_NAME
from tests.conftest import fresh_database

DOCS = [
    "cats purr on the sofa all afternoon",
    "dogs bark at the mailman every morning",
    "the car needs fuel before the long drive",
    "a recipe for lemon cake with poppy seeds",
]
QUERIES = {"felines resting on furniture": 0, "baking a citrus dessert": 3}
INDEX_DEF_SQL = text("SELECT indexdef FROM pg_indexes WHERE indexname = :n")


def typed(settings: Settings, kind: str) -> Settings:
    return settings.model_copy(update={"vector_type": kind})


@pytest.fixture
def vdb(pg_server: Any, template_db: str, test_settings: Settings) -> Iterator[Database]:
    database = fresh_database(pg_server, test_settings, "vector_type")
    yield database
    database.dispose()


def fill(db: Database, embedder: Embedder) -> list[uuid.UUID]:
    ids = [uuid.uuid4() for _ in DOCS]
    with db.engine.begin() as conn:
        for i, body in zip(ids, DOCS, strict=True):
            index_document(
                conn, entity_type="note", entity_id=i, text=body, user_id=None, embedder=embedder
            )
    return ids


def tops(db: Database, settings: Settings, embedder: Embedder) -> dict[str, uuid.UUID]:
    with db.engine.begin() as conn:
        return {
            q: search(conn, q, user_id=None, mode="vector", settings=settings, embedder=embedder)[
                0
            ].entity_id
            for q in QUERIES
        }


def index_def(db: Database) -> str:
    with db.engine.connect() as conn:
        return str(conn.execute(INDEX_DEF_SQL, {"n": HNSW_INDEX_NAME}).scalar_one())


@pytest.mark.parametrize("kind", ["vector", "halfvec"])
def test_search_ranks_the_same_top_result_under_both_types(
    kind: str, vdb: Database, test_settings: Settings, embedder: Embedder
) -> None:
    settings = typed(test_settings, kind)
    prepare_database(vdb, settings)  # an empty index takes the configured type at once
    with vdb.engine.connect() as conn:
        assert column_type(conn) == kind
    assert f"{kind}_cosine_ops" in index_def(vdb)
    ids = fill(vdb, embedder)
    assert tops(vdb, settings, embedder) == {q: ids[i] for q, i in QUERIES.items()}
    check_memory(vdb.engine, settings)
    with pytest.raises(EmbeddingMismatchError, match="AGENTRY_VECTOR_TYPE"):
        check_memory(vdb.engine, typed(test_settings, "halfvec" if kind == "vector" else "vector"))


def test_bulk_copy_and_the_index_serve_halfvec(vdb: Database, test_settings: Settings) -> None:
    settings = typed(test_settings, "halfvec")
    prepare_database(vdb, settings)
    vectors = clustered_vectors(600, settings.embedding_dims, seed=3)
    rows = (BulkRow("doc", uuid.uuid4(), f"doc {i}", v, "synthetic") for i, v in enumerate(vectors))
    built: list[tuple[int, int]] = []
    report = bulk_load(
        vdb.conninfo, rows, settings, expected=600, build_progress=lambda d, t: built.append((d, t))
    )
    assert report.rows == 600 and report.index_bytes > 0
    assert built and built[-1][0] == built[-1][1] > 0  # the build's progress ends complete
    with vdb.engine.begin() as conn:
        hnsw = run_vector_query(conn, vectors[7], SearchFilter(), limit=5, settings=settings)
        exact = run_vector_query(
            conn, vectors[7], SearchFilter(), limit=5, settings=settings, force=PlanKind.exact
        )
        conn.execute(text("SET LOCAL enable_seqscan = off"))  # 600 rows: a seq scan is cheaper
        plan = conn.execute(
            text("EXPLAIN SELECT id FROM search_index ORDER BY embedding <=> CAST(:q AS halfvec) "
                 "LIMIT 5"),
            {"q": "[" + ",".join(str(float(x)) for x in vectors[7]) + "]"},
        ).scalars().all()  # fmt: skip
    assert hnsw.rows[0].content == exact.rows[0].content == "doc 7"
    assert np.isclose(float(hnsw.rows[0].distance), 0.0, atol=1e-3)
    assert any(HNSW_INDEX_NAME in line for line in plan)


def test_reembed_moves_the_column_between_types(
    vdb: Database, test_settings: Settings, embedder: Embedder, use_database: Any, monkeypatch: Any
) -> None:
    prepare_database(vdb, typed(test_settings, "vector"))
    ids = fill(vdb, embedder)
    expected = {q: ids[i] for q, i in QUERIES.items()}
    use_database(vdb)
    for kind in ("halfvec", "vector"):
        monkeypatch.setenv("AGENTRY_VECTOR_TYPE", kind)
        reset_settings()
        settings = typed(test_settings, kind)
        # An index holding vectors keeps its type at start: the server says what to run.
        prepare_database(vdb, settings)
        with pytest.raises(EmbeddingMismatchError, match="agentry index --reembed"):
            check_memory(vdb.engine, settings)
        result = CliRunner().invoke(cli, ["index", "--reembed"])
        assert result.exit_code == 0, result.output
        assert f"moved {4 if kind == 'halfvec' else 5} index rows to {kind}" in result.output
        with vdb.engine.connect() as conn:
            assert column_type(conn) == kind
            models = conn.execute(text("SELECT DISTINCT embedding_model FROM search_index"))
            assert set(models.scalars()) == {embedder.model}
        assert f"{kind}_cosine_ops" in index_def(vdb)
        check_memory(vdb.engine, settings)
        assert tops(vdb, settings, embedder) == expected
        # New rows still get their vectors (the worker's binary write into the new type).
        with vdb.engine.begin() as conn:
            index_document(conn, entity_type="note", entity_id=uuid.uuid4(), text="x", user_id=None)
            assert embed_pending(conn, embedder) == 1
    again = CliRunner().invoke(cli, ["index", "--reembed"])
    assert again.exit_code == 2 and "nothing to re-embed" in again.output
