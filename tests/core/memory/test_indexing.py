"""Indexing on write, the embedding worker, chunking, backlog, re-indexing and deletion."""

from __future__ import annotations

import threading
import time
import uuid

from sqlalchemy import Connection, func, select, text

from config import load_settings
from core.db import Database
from core.memory.backlog import run_backlog, sync_row
from core.memory.embeddings import Embedder
from core.memory.indexer import embed_pending, has_pending, index_document
from core.memory.search import search
from core.memory.sources import SearchableSource, register_source, unregister_source
from core.memory.worker import start_worker
from core.models import SearchIndex
from tests.conftest import create_test_user

SETTINGS = load_settings(
    AGENTRY_EMBED_INTERVAL="0.05", AGENTRY_CHUNK_SIZE="200", AGENTRY_CHUNK_OVERLAP="40"
)


def add_message(conn: Connection, user_id: uuid.UUID, content: str, *, index: bool) -> uuid.UUID:
    conv = conn.execute(
        text(
            "INSERT INTO conversations (session_id, user_id) VALUES (:s, :u) "
            "ON CONFLICT (session_id) DO UPDATE SET session_id = EXCLUDED.session_id RETURNING id"
        ),
        {"s": f"s-{user_id}", "u": user_id},
    ).scalar_one()
    mid = conn.execute(
        text(
            "INSERT INTO messages (conversation_id, user_id, role, content) "
            "VALUES (:c, :u, 'user', :t) RETURNING id"
        ),
        {"c": conv, "u": user_id, "t": content},
    ).scalar_one()
    if index:
        index_document(
            conn,
            entity_type="message",
            entity_id=mid,
            text=content,
            user_id=user_id,
            metadata={"conversation_id": str(conv), "role": "user"},
            settings=SETTINGS,
        )
    return mid


def index_rows(conn: Connection, entity_id: uuid.UUID) -> list[tuple[int, bool, str | None]]:
    rows = conn.execute(
        select(SearchIndex.chunk, SearchIndex.embedding.is_not(None), SearchIndex.embedding_model)
        .where(SearchIndex.entity_id == entity_id)
        .order_by(SearchIndex.chunk)
    )
    return [tuple(r) for r in rows]  # type: ignore[misc]


def test_message_is_keyword_searchable_at_once_and_vector_searchable_shortly_after(
    db: Database, embedder: Embedder
) -> None:
    alice, _ = create_test_user(db, "alice@idx.org")
    with db.engine.begin() as conn:
        mid = add_message(conn, alice.id, "My cat Tom adores sardines", index=True)
    with db.engine.begin() as conn:
        kw = search(conn, "sardines", user_id=alice.id, mode="keyword", settings=SETTINGS)
        assert [h.entity_id for h in kw] == [mid]
        # Not embedded yet: the write path only stored text.
        assert index_rows(conn, mid) == [(0, False, None)]
        assert search(conn, "pet food for felines", user_id=alice.id, mode="vector") == []

    worker = start_worker(db.engine, SETTINGS)
    assert worker is not None
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with db.engine.connect() as conn:
                if not has_pending(conn):
                    break
            time.sleep(0.05)
    finally:
        stopped = time.monotonic()
        worker.stop()
    # Every embedding thread (AGENTRY_EMBED_THREADS, 2 by default) is woken and ends.
    assert time.monotonic() - stopped < 5
    names = {t.name for t in threading.enumerate()}
    assert not {f"agentry-embedder-{i}" for i in range(SETTINGS.embed_threads)} & names
    assert SETTINGS.embed_threads == 2
    assert worker.embedded >= 1
    with db.engine.begin() as conn:
        assert index_rows(conn, mid) == [(0, True, "all-MiniLM-L6-v2")]
        hits = search(
            conn, "pet food for felines", user_id=alice.id, mode="vector", embedder=embedder
        )
        assert [h.entity_id for h in hits] == [mid]
        assert hits[0].ranks == {"vector": 1} and 0 < hits[0].score <= 1


def test_long_content_is_chunked_and_reindexing_never_duplicates(
    db: Database, embedder: Embedder
) -> None:
    bob, _ = create_test_user(db, "bob@idx.org")
    long_text = " ".join(f"sentence{i} about gardening and tomatoes." for i in range(60))
    doc = uuid.uuid4()
    with db.engine.begin() as conn:
        n = index_document(
            conn,
            entity_type="note",
            entity_id=doc,
            text=long_text,
            user_id=bob.id,
            embedder=embedder,
            settings=SETTINGS,
        )
        assert n == len(index_rows(conn, doc)) > 5
        assert all(embedded for _, embedded, _ in index_rows(conn, doc))
        # Same text again: no new rows, vectors kept; new text: replaced.
        again = index_document(
            conn,
            entity_type="note",
            entity_id=doc,
            text=long_text,
            user_id=bob.id,
            settings=SETTINGS,
        )
        assert again == n and all(e for _, e, _ in index_rows(conn, doc))
        index_document(
            conn,
            entity_type="note",
            entity_id=doc,
            text="short now",
            user_id=bob.id,
            settings=SETTINGS,
        )
        assert index_rows(conn, doc) == [(0, False, None)]
        assert embed_pending(conn, embedder) >= 1
        total = conn.execute(
            select(func.count()).select_from(SearchIndex).where(SearchIndex.entity_id == doc)
        ).scalar_one()
        assert total == 1


def test_deleted_messages_and_soft_deleted_conversations_leave_the_index(db: Database) -> None:
    carol, _ = create_test_user(db, "carol@idx.org")
    with db.engine.begin() as conn:
        gone = add_message(conn, carol.id, "zebra crossing report", index=True)
        kept = add_message(conn, carol.id, "zebra stripes essay", index=True)
        conn.execute(text("DELETE FROM messages WHERE id = :i"), {"i": gone})
        hits = search(conn, "zebra", user_id=carol.id, mode="keyword")
        assert [h.entity_id for h in hits] == [kept]
        conn.execute(
            text("UPDATE conversations SET deleted_at = now() WHERE user_id = :u"), {"u": carol.id}
        )
        assert search(conn, "zebra", user_id=carol.id, mode="keyword") == []


CHARACTER_TABLE = """
CREATE TABLE character (
    id uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name text NOT NULL, backstory text, role text,
    created_by uuid, is_deleted boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz
)
"""


def test_backlog_indexes_every_source_once_and_purges_deleted_rows(
    db: Database, embedder: Embedder
) -> None:
    dave, _ = create_test_user(db, "dave@idx.org")
    with db.engine.begin() as conn:
        conn.execute(text(CHARACTER_TABLE))
        ids = [
            conn.execute(
                text(
                    "INSERT INTO character (name, backstory, role, created_by, is_deleted) "
                    "VALUES (:n, :b, :r, :u, :d) RETURNING id"
                ),
                {"n": n, "b": b, "r": r, "u": dave.id, "d": d},
            ).scalar_one()
            for n, b, r, d in [
                ("Ada", "a mathematician who dreams of engines", "hero", False),
                ("Brutus", "a traitor in the senate", "villain", False),
                ("Ghost", "never seen, already deleted", "extra", True),
            ]
        ]
        backlog_msg = add_message(conn, dave.id, "a message written before indexing", index=False)
    source = SearchableSource(
        "character", "character", ("name", "backstory"), metadata_columns=("role",)
    )
    register_source(source)
    try:
        progress: list[tuple[str, int, int]] = []
        report = run_backlog(
            db.engine, embedder, SETTINGS, batch_size=1, progress=lambda *a: progress.append(a)
        )
        assert report.indexed["character"] == 2 and report.indexed["message"] >= 1
        assert report.embedded >= 3
        assert ("index character", 2, 2) in progress
        with db.engine.begin() as conn:
            hits = search(
                conn,
                "calculating machines",
                user_id=dave.id,
                mode="vector",
                embedder=embedder,
                entity_type="character",
            )
            assert hits[0].entity_id == ids[0] and ids[2] not in {h.entity_id for h in hits}
            villains = search(
                conn,
                "senate",
                user_id=dave.id,
                mode="hybrid",
                embedder=embedder,
                metadata={"role": "villain"},
            )
            meta = conn.execute(
                text("SELECT metadata FROM search_index WHERE entity_id = :i"), {"i": ids[1]}
            ).scalar_one()
            assert meta == {"role": "villain"}
            assert [h.entity_id for h in villains] == [ids[1]]
            msgs = search(conn, "indexing", user_id=dave.id, mode="keyword")
            assert backlog_msg in {h.entity_id for h in msgs}
            # One row after a write (what the mechanic's CRUD calls): update, then delete.
            conn.execute(
                text("UPDATE character SET backstory = 'now a loyal gardener' WHERE id = :i"),
                {"i": ids[0]},
            )
            assert sync_row(conn, "character", ids[0], settings=SETTINGS) == 1
            kw = search(conn, "gardener", user_id=dave.id, mode="keyword")
            assert [h.entity_id for h in kw] == [ids[0]]
            conn.execute(
                text("UPDATE character SET is_deleted = true WHERE id = :i"), {"i": ids[0]}
            )
            assert sync_row(conn, "character", ids[0], settings=SETTINGS) == 0
            assert search(conn, "gardener", user_id=dave.id, mode="keyword") == []
            # The other one is soft-deleted behind the indexer's back: the backlog purges it.
            conn.execute(
                text("UPDATE character SET is_deleted = true WHERE id = :i"), {"i": ids[1]}
            )

        second = run_backlog(db.engine, embedder, SETTINGS)
        assert second.indexed["character"] == 0 and second.removed["character"] == 1
        with db.engine.begin() as conn:
            assert search(conn, "senate traitor", user_id=dave.id, mode="keyword") == []
            count = conn.execute(
                select(func.count())
                .select_from(SearchIndex)
                .where(SearchIndex.entity_type == "character")
            ).scalar_one()
            assert count == 0
    finally:
        unregister_source("character")


def test_search_memory_tool_is_scoped_and_json_ready(db: Database, embedder: Embedder) -> None:
    import json

    from core.memory.tool import search_memory

    erin, _ = create_test_user(db, "erin@idx.org")
    frank, _ = create_test_user(db, "frank@idx.org")
    with db.engine.begin() as conn:
        mine = uuid.uuid4()
        index_document(
            conn,
            entity_type="message",
            entity_id=mine,
            text="Erin's passport number is in the blue drawer",
            user_id=erin.id,
            embedder=embedder,
        )
        index_document(
            conn,
            entity_type="message",
            entity_id=uuid.uuid4(),
            text="Frank keeps his passport in the safe",
            user_id=frank.id,
            embedder=embedder,
        )
        hits = search_memory(conn, "where is my passport", user_id=erin.id, k=5)
    assert [h["entity_id"] for h in hits] == [str(mine)]
    assert hits[0]["rank"] == {"vector": 1, "keyword": 1}
    json.dumps(hits)


def test_sources_accept_plain_identifiers_only() -> None:
    import pytest

    with pytest.raises(ValueError, match="bad identifiers"):
        SearchableSource("x", "x; DROP TABLE users", ("name",))
    with pytest.raises(ValueError, match="bad identifiers"):
        SearchableSource("x", "x", ())
    with pytest.raises(ValueError, match="bad identifiers"):
        SearchableSource("x", "x", ("name",), metadata_columns=("a-b",))


def test_two_workers_share_the_queue_without_embedding_a_row_twice(
    db: Database, embedder: Embedder
) -> None:
    import threading

    from core.memory.worker import EmbeddingWorker

    gina, _ = create_test_user(db, "gina@idx.org")
    with db.engine.begin() as conn:
        for i in range(40):
            index_document(
                conn,
                entity_type="queue",
                entity_id=uuid.uuid4(),
                text=f"queued note number {i}",
                user_id=gina.id,
                settings=SETTINGS,
            )
    with db.engine.connect() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM search_index WHERE embedding IS NULL")
        ).scalar_one()
    assert pending >= 40
    small = load_settings(AGENTRY_EMBEDDING_BATCH_SIZE="8")
    workers = [EmbeddingWorker(db.engine, small) for _ in range(2)]

    def drain(worker: EmbeddingWorker) -> None:
        while worker.run_once():
            pass

    threads = [threading.Thread(target=drain, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    with db.engine.connect() as conn:
        assert not has_pending(conn)
    # SKIP LOCKED: every row embedded exactly once between them, and both took part.
    assert sum(w.embedded for w in workers) == pending
    assert all(w.embedded > 0 for w in workers)


def test_hybrid_finds_a_document_still_waiting_for_its_vector(
    db: Database, embedder: Embedder
) -> None:
    """Right after a write (or while the worker lags) the new text is found by its words."""
    owner, _ = create_test_user(db, "pending-vector@idx.org")
    with db.engine.begin() as conn:
        for i in range(8):  # embedded neighbours: they fill every vector rank
            index_document(
                conn,
                entity_type="message",
                entity_id=uuid.uuid4(),
                text=f"a note about pets and their names, number {i}",
                user_id=owner.id,
                embedder=embedder,
            )
        fresh = uuid.uuid4()
        index_document(  # no embedder: queued for the worker, vector still NULL
            conn,
            entity_type="message",
            entity_id=fresh,
            text="my cat is named Tiramisu",
            user_id=owner.id,
            settings=SETTINGS,
        )
        hits = search(conn, "Tiramisu", user_id=owner.id, k=5, settings=SETTINGS)
        assert hits[0].entity_id == fresh
        assert hits[0].ranks == {"keyword": 1}
        # Once embedded, it ranks by both halves as usual.
        while embed_pending(conn, embedder):
            pass
        hits = search(conn, "Tiramisu", user_id=owner.id, k=5, settings=SETTINGS)
        assert hits[0].entity_id == fresh and set(hits[0].ranks) == {"vector", "keyword"}
