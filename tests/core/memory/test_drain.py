"""Draining the embedding queue with overlapping transactions (core/memory/drain.py)."""

from __future__ import annotations

import json
import threading
import uuid
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from config import load_settings
from core.db import Database
from core.memory.drain import drain_pending
from core.memory.embeddings import Embedder, Vectors
from core.memory.indexer import count_pending, index_document

SETTINGS = load_settings()
PHRASES = ["thanks!", "ok.", "see you at the station at noon", "is the museum open today?"]


class Recording:
    """A real embedder that records what it was asked to embed, and by which thread."""

    def __init__(self, inner: Embedder, *, fail_after: int | None = None) -> None:
        self.inner = inner
        self.model, self.dims = inner.model, inner.dims
        self.calls: list[tuple[str, int]] = []
        self.fail_after = fail_after
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> Vectors:
        with self._lock:
            if self.fail_after is not None and len(self.calls) >= self.fail_after:
                raise RuntimeError("model crashed")
            self.calls.append((threading.current_thread().name, len(texts)))
        return self.inner.embed(texts)

    def embed_query(self, text: str) -> Vectors:
        return self.inner.embed_query(text)


def write(db: Database, texts: list[str], *, per_commit: int = 50) -> None:
    for i in range(0, len(texts), per_commit):
        with db.engine.begin() as conn:
            for t in texts[i : i + per_commit]:
                index_document(
                    conn,
                    entity_type="drain",
                    entity_id=uuid.uuid4(),
                    text=t,
                    user_id=None,
                    settings=SETTINGS,
                )


def stored(db: Database) -> list[tuple[str, Any, str]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT content, CAST(embedding AS text), embedding_model FROM search_index "
                "WHERE entity_type = 'drain' ORDER BY id"
            )
        ).all()
    return [(r[0], None if r[1] is None else np.asarray(json.loads(r[1])), r[2]) for r in rows]


@pytest.fixture(autouse=True)
def _empty(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index WHERE entity_type = 'drain'"))


def test_two_threads_drain_everything_once_with_the_right_vectors(
    db: Database, embedder: Embedder
) -> None:
    # Half the texts repeat two short phrases, as chat does ("thanks!", "ok.").
    texts = [PHRASES[i % 4] if i % 2 == 0 else f"unique note {i}" for i in range(240)]
    write(db, texts)
    recording = Recording(embedder)
    seen: list[tuple[int, int]] = []
    done = drain_pending(
        db.engine,
        recording,
        batch_size=16,
        threads=2,
        progress=lambda d, t: seen.append((d, t)),
    )
    assert done == 240
    # Progress bars get rows done out of everything pending at the start.
    assert seen[-1] == (240, 240) and [d for d, _ in seen] == sorted(d for d, _ in seen)
    assert len(seen) == 15 and {t for _, t in seen} == {240}
    with db.engine.connect() as conn:
        assert count_pending(conn) == 0
    rows = stored(db)
    assert len(rows) == 240 and {m for _, _, m in rows} == {"all-MiniLM-L6-v2"}
    # Binary vectors went in intact: each row holds its own text's vector.
    contents = sorted({c for c, _, _ in rows})
    expected = dict(zip(contents, embedder.embed(contents), strict=True))
    assert min(float(v @ expected[c]) for c, v, _ in rows) > 0.9999
    # Repeated texts within a batch were embedded once: 10 distinct per batch of 16.
    assert sum(n for _, n in recording.calls) == 150
    # Both threads took batches.
    assert {name for name, _ in recording.calls} == {"agentry-drain-0", "agentry-drain-1"}


def test_draining_while_documents_are_still_being_written(db: Database, embedder: Embedder) -> None:
    texts = [f"note {i}: {PHRASES[i % 4]}" for i in range(150)]
    written = threading.Event()

    def writer() -> None:
        try:
            write(db, texts, per_commit=10)
        finally:
            written.set()

    thread = threading.Thread(target=writer)
    thread.start()
    done = drain_pending(db.engine, embedder, batch_size=32, threads=2, writers_done=written)
    thread.join()
    assert done == 150
    assert all(v is not None for _, v, _ in stored(db))


def test_a_failing_batch_stops_every_thread_and_is_raised(db: Database, embedder: Embedder) -> None:
    write(db, [f"failing {i}" for i in range(100)])
    with pytest.raises(RuntimeError, match="model crashed"):
        drain_pending(db.engine, Recording(embedder, fail_after=2), batch_size=10, threads=2)
    assert not [t for t in threading.enumerate() if t.name.startswith("agentry-drain")]
    with db.engine.connect() as conn:
        pending = count_pending(conn)
    # The failed batch rolled back: its rows wait for the next drain, none is lost.
    assert 0 < pending <= 100 - 20
    assert drain_pending(db.engine, embedder, batch_size=50, threads=2) == pending
