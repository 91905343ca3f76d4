"""Model/dimension mismatch detection and re-embedding without losing search."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings, load_settings
from core.api.app import create_app
from core.cli.main import app as cli
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from core.errors import EmbeddingMismatchError
from core.memory import reembed
from core.memory.bulk import build_index
from core.memory.embeddings import Embedder, get_embedder
from core.memory.indexer import embed_pending, index_document
from core.memory.search import search
from core.memory.service import check_memory
from core.memory.space import column_dims, current_space
from tests.conftest import create_test_user, fresh_database
from tests.core.db.test_migrations import autogenerate_diff

DOCS = ["cats purr on the sofa", "dogs bark at the mailman", "cars need fuel"]


@pytest.fixture
def rdb(pg_server: Any, template_db: str, test_settings: Settings) -> Iterator[Database]:
    database = fresh_database(pg_server, test_settings, "reembed")
    yield database
    database.dispose()


def vector_top(db: Database, query: str, settings: Settings, embedder: Embedder) -> uuid.UUID:
    with db.engine.begin() as conn:
        hits = search(
            conn, query, user_id=None, mode="vector", settings=settings, embedder=embedder
        )
    return hits[0].entity_id


def test_mismatch_is_detected_at_start_and_reembed_switches_without_downtime(
    rdb: Database, test_settings: Settings, embedder: Embedder, use_database: Any
) -> None:
    user, _ = create_test_user(rdb, "re@embed.org")
    ids = [uuid.uuid4() for _ in DOCS]
    with rdb.engine.begin() as conn:
        for i, body in zip(ids, DOCS, strict=True):
            index_document(
                conn, entity_type="note", entity_id=i, text=body, user_id=user.id, embedder=embedder
            )
    assert check_memory(rdb.engine, test_settings).model == "all-MiniLM-L6-v2"

    with ScriptedLLM() as llm:
        new = load_settings(
            AGENTRY_EMBEDDING_PROVIDER="openai",
            AGENTRY_EMBEDDING_BASE_URL=llm.base_url,
            AGENTRY_EMBEDDING_MODEL="text-embedding-3-small",
            AGENTRY_EMBEDDING_DIMS="1536",
        )
        new_embedder = get_embedder(new)
        # A server configured for another model refuses to start, saying what to do.
        with pytest.raises(EmbeddingMismatchError, match="agentry index --reembed"):
            check_memory(rdb.engine, new)
        with (
            pytest.raises(EmbeddingMismatchError, match="AGENTRY_EMBEDDING_DIMS=1536"),
            TestClient(create_app(rdb, new)),
        ):
            pass

        assert reembed.begin(rdb.engine, new_embedder) == 3
        with rdb.engine.begin() as conn:
            assert reembed.fill_batch(conn, new_embedder, limit=2) == 2
        # Half-way: searches are still served from the old vectors, old servers still fine.
        assert vector_top(rdb, "felines on furniture", test_settings, embedder) == ids[0]
        check_memory(rdb.engine, test_settings)
        with rdb.engine.connect() as conn:
            space = current_space(conn)
            assert space is not None and space.model == "all-MiniLM-L6-v2"
            assert space.next_model == "text-embedding-3-small"
        # An old server writes (and embeds) a message while the re-embed runs.
        late = uuid.uuid4()
        with rdb.engine.begin() as conn:
            index_document(
                conn,
                entity_type="note",
                entity_id=late,
                text="late bicycles arrive",
                user_id=user.id,
            )
            assert embed_pending(conn, embedder) == 1

        with rdb.engine.begin() as conn:
            assert reembed.fill_batch(conn, new_embedder, limit=10) == 2
        build_index(
            rdb.conninfo,
            new,
            column="embedding_next",
            name=reembed.NEXT_INDEX_NAME,
            concurrently=True,
        )
        reembed.switch(rdb.engine, new_embedder)

        with rdb.engine.connect() as conn:
            assert column_dims(conn) == 1536
            models = conn.execute(text("SELECT DISTINCT embedding_model FROM search_index"))
            assert set(models.scalars()) == {"text-embedding-3-small"}
            assert autogenerate_diff(conn) == []
        check_memory(rdb.engine, new)
        with pytest.raises(EmbeddingMismatchError):
            check_memory(rdb.engine, test_settings)
        # An old-model worker notices the switch instead of writing 384-d vectors.
        with rdb.engine.begin() as conn:
            index_document(
                conn, entity_type="note", entity_id=uuid.uuid4(), text="newer", user_id=user.id
            )
        with pytest.raises(EmbeddingMismatchError), rdb.engine.begin() as conn:
            embed_pending(conn, embedder)
        assert vector_top(rdb, "cats purr", new, new_embedder) == ids[0]
        assert vector_top(rdb, "late bicycles", new, new_embedder) == late

    # And back to the local model from the command line, with a progress bar.
    use_database(rdb)
    result = CliRunner().invoke(cli, ["index", "--reembed", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert "re-embedded 5 index rows with all-MiniLM-L6-v2" in result.output
    check_memory(rdb.engine, test_settings)
    assert vector_top(rdb, "felines on furniture", test_settings, embedder) == ids[0]
    again = CliRunner().invoke(cli, ["index", "--reembed"])
    assert again.exit_code == 2 and "nothing to re-embed" in again.output
