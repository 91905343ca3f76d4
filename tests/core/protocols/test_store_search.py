"""The store's query search is vector memory's hybrid search: items are found by meaning."""

from __future__ import annotations

from config import get_settings
from core.db import Database
from core.memory.embeddings import get_embedder
from core.memory.indexer import embed_pending
from core.protocols import store
from tests.conftest import create_test_user


def test_store_search_uses_vector_memory(db: Database) -> None:
    assert store.text_search()[0] == "hybrid"
    principal, _ = create_test_user(db, "semantic@example.org")
    other, _ = create_test_user(db, "someone-else@example.org")
    with db.engine.begin() as conn:
        store.put_item(conn, principal.id, ["pets"], "cat", {"text": "a small feline purring"})
        store.put_item(conn, principal.id, ["cars"], "van", {"text": "a delivery vehicle"})
        store.put_item(conn, other.id, ["pets"], "dog", {"text": "a young cat"})
        store.put_item(conn, principal.id, ["pets"], "quiet", {"text": "kitten"}, index=False)
    with db.engine.begin() as conn:
        while embed_pending(conn, get_embedder(get_settings())):
            pass
    with db.engine.begin() as conn:
        # no word in common with "kitten": only the vectors can find it
        found = store.search_items(conn, principal.id, [], query="kitten", limit=2)
        assert found[0]["key"] == "cat" and found[0]["score"] > 0
        # the namespace prefix applies to what the index returns; others' items never show
        assert [
            i["key"] for i in store.search_items(conn, principal.id, ["cars"], query="kitten")
        ] == ["van"]
        keys = {i["key"] for i in store.search_items(conn, principal.id, [], query="kitten")}
        assert "dog" not in keys
        # index=False: stored and listed, but not searchable by query
        assert "quiet" not in keys
        assert "quiet" in {i["key"] for i in store.search_items(conn, principal.id, ["pets"])}
