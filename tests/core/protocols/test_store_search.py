"""The store's search is pluggable: semantic search is used once vector memory provides it."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from core.db import Database
from core.memory import search as memory_search
from core.protocols import store
from tests.conftest import create_test_user


def test_keyword_search_until_vector_memory_lands(db: Database) -> None:
    kind, fn = store.text_search()
    assert (kind, fn) == ("keyword", memory_search.keyword_search)


def test_semantic_search_is_used_when_present(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    principal, _ = create_test_user(db, "semantic@example.org")
    calls: list[dict[str, Any]] = []

    def semantic_search(conn: Any, query: str, **kwargs: Any) -> list[memory_search.Hit]:
        calls.append({"query": query, **kwargs})
        # "meaning" without shared words: the keyword index would find nothing
        return [memory_search.Hit(store.ENTITY_TYPE, target, "", 0.9, {}) for target in targets]

    with db.engine.begin() as conn:
        store.put_item(conn, principal.id, ["pets"], "cat", {"text": "a small feline"})
        store.put_item(conn, principal.id, ["cars"], "van", {"text": "a vehicle"})
        targets = [
            row.id
            for row in conn.execute(
                store.GET_SQL, {"uid": principal.id, "ns": ["pets"], "key": "cat"}
            )
        ]
        assert store.search_items(conn, principal.id, [], query="kitten") == []
        monkeypatch.setattr(memory_search, "semantic_search", semantic_search, raising=False)
        assert store.text_search()[0] == "semantic"
        found = store.search_items(conn, principal.id, [], query="kitten")
        assert [(i["key"], i["score"]) for i in found] == [("cat", 0.9)]
        # the namespace prefix still applies to what the index returns
        assert store.search_items(conn, principal.id, ["cars"], query="kitten") == []
    assert calls[0]["query"] == "kitten" and calls[0]["user_id"] == principal.id
    assert calls[0]["entity_type"] == store.ENTITY_TYPE
    assert isinstance(targets[0], uuid.UUID)
