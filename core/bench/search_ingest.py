"""End-to-end ingest rate of short real texts into an indexed table (``bench search --scale``).

Documents are written through ``index_document`` while the embedding threads drain the
queue, as a server sees it; the baseline in the same run is the model alone.
"""

from __future__ import annotations

import threading
import time
import uuid
from typing import Any

from sqlalchemy import text

from config import Settings
from core.bench.datasets import load_dialogues
from core.errors import ConfigError
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.memory.indexer import index_document

WRITE_BATCH = 100  # documents per write transaction in the ingest measurement


def _short_texts(settings: Settings, n: int) -> list[str]:
    """The first ``n`` DailyDialog utterances."""
    texts: list[str] = []
    try:
        for dialogue in load_dialogues(settings.datasets_dir, 100_000):
            texts += dialogue
            if len(texts) >= n:
                break
    except ConfigError:
        texts = []  # no DailyDialog here: the loop below makes synthetic ones
    while len(texts) < n:  # no dataset: short synthetic sentences
        texts.append(f"note {len(texts)}: remember to water the plants on day {len(texts) % 7}")
    return texts[:n]


def ingest_rate(db: Any, settings: Settings, n: int) -> dict[str, Any]:
    """End to end as a server sees it, in texts per second.

    Documents are written through index_document (a commit every WRITE_BATCH, like a
    stream of requests) while the embedding threads drain the queue; the clock stops
    when the last text has its vector in the HNSW index. The baseline, measured in
    the same run, is the model alone embedding the same texts.
    """
    embedder = get_embedder(settings)
    texts = _short_texts(settings, n)
    embedder.embed(texts[:8])  # warm-up outside the clock
    start = time.perf_counter()
    embedder.embed(texts)
    model_only = time.perf_counter() - start

    written = threading.Event()
    write_seconds: list[float] = []
    write_errors: list[BaseException] = []

    def write() -> None:
        began = time.perf_counter()
        try:
            for i in range(0, n, WRITE_BATCH):
                with db.engine.begin() as conn:
                    for t in texts[i : i + WRITE_BATCH]:
                        index_document(
                            conn,
                            entity_type="ingest",
                            entity_id=uuid.uuid4(),
                            text=t,
                            user_id=None,
                            settings=settings,
                        )
            write_seconds.append(time.perf_counter() - began)
        except BaseException as exc:
            write_errors.append(exc)
        finally:
            written.set()

    start = time.perf_counter()
    writer = threading.Thread(target=write, name="bench-ingest-writer")
    writer.start()
    try:
        embedded = drain_pending(
            db.engine,
            embedder,
            batch_size=settings.embedding_batch_size,
            threads=settings.embed_threads,
            writers_done=written,
        )
    finally:
        writer.join()
    total = time.perf_counter() - start
    if write_errors:
        raise write_errors[0]
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM search_index WHERE entity_type = 'ingest'"))
    rate = n / total
    return {
        "texts": n,
        "distinct_texts": len(set(texts)),
        "embedded_rows": embedded,
        "seconds": round(total, 2),
        "texts_per_second": round(rate, 1),
        "model_only_texts_per_second": round(n / model_only, 1),
        "ratio_to_model_only": round(rate / (n / model_only), 3),
        "write_path_ms_per_text": round(write_seconds[0] / n * 1000, 3),
        "embed_threads": settings.embed_threads,
        "runtime": getattr(embedder, "runtime", settings.embedding_provider),
        "model": embedder.model,
    }
