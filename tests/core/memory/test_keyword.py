from __future__ import annotations

import uuid

from sqlalchemy import func, select

from core.db import Database
from core.memory.indexer import index_document, remove_document
from core.memory.search import keyword_search
from core.models import SearchIndex
from tests.conftest import create_test_user


def test_index_search_scope_reindex_and_remove(db: Database) -> None:
    alice, _ = create_test_user(db, "alice@kw.org")
    bob, _ = create_test_user(db, "bob@kw.org")
    doc = uuid.uuid4()
    with db.engine.begin() as conn:
        index_document(
            conn,
            entity_type="message",
            entity_id=doc,
            text="The lighthouse keeper feeds the cats",
            user_id=alice.id,
        )
        index_document(
            conn,
            entity_type="message",
            entity_id=uuid.uuid4(),
            text="Bob's lighthouse notes",
            user_id=bob.id,
        )
    with db.engine.connect() as conn:
        hits = keyword_search(conn, "lighthouses", user_id=alice.id)
        assert [h.entity_id for h in hits] == [doc]
        assert len(keyword_search(conn, "lighthouse", user_id=None)) == 2

    with db.engine.begin() as conn:
        index_document(
            conn,
            entity_type="message",
            entity_id=doc,
            text="The keeper feeds the dogs",
            user_id=alice.id,
        )
        count = conn.execute(
            select(func.count()).select_from(SearchIndex).where(SearchIndex.entity_id == doc)
        ).scalar_one()
        assert count == 1
        assert keyword_search(conn, "cats", user_id=alice.id) == []
        remove_document(conn, entity_type="message", entity_id=doc)
        assert keyword_search(conn, "dogs", user_id=alice.id) == []


def test_sources_registry_keeps_messages_and_registers_entities() -> None:
    from core.memory.sources import (
        SearchableSource,
        register_source,
        source_for,
        sources,
        unregister_source,
    )

    character = SearchableSource("character", "character", ("name", "backstory"))
    register_source(character)
    assert source_for("character") == character
    assert sources()[0].entity_type == "message"
    unregister_source("character")
    unregister_source("message")  # messages are always searchable
    assert source_for("character") is None
    assert source_for("message") is not None
