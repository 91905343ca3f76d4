"""Draining the embedding queue with overlapping transactions.

Each batch costs two things on different processes: the model (this process) and
the HNSW insertion of the new vectors (the PostgreSQL backend). With one thread the
two alternate and each leaves a core idle; with two, one thread's batch is inserted
while the other embeds, and ``FOR UPDATE SKIP LOCKED`` hands each its own rows.
Measured on 2 cores: 2 threads ingest about 1.3x faster than 1.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from sqlalchemy import Engine

from core.memory.embeddings import Embedder
from core.memory.indexer import count_pending, embed_pending, has_pending

POLL_SECONDS = 0.02


def drain_pending(
    engine: Engine,
    embedder: Embedder,
    *,
    batch_size: int,
    threads: int = 2,
    writers_done: threading.Event | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> int:
    """Embed pending index rows until none is left; one transaction per batch.

    Args:
        engine: the database (each thread checks out its own connection).
        embedder: the index's active model.
        batch_size: rows per transaction.
        threads: concurrent transactions (see the module docstring).
        writers_done: when given, keep waiting for new rows until it is set: for
            draining while documents are still being written.
        progress: called after each batch with rows done and rows to do (pending at
            the start, or more once more were done), from any of the threads.

    Returns:
        The number of rows embedded.

    Raises:
        Whatever a batch raised (EmbeddingMismatchError, database errors); the
        other threads stop after their current batch.
    """
    pending = 0
    if progress:
        with engine.connect() as conn:
            pending = count_pending(conn)
    total = [0]
    failures: list[BaseException] = []
    lock = threading.Lock()
    stop = threading.Event()

    def finished() -> bool:
        if writers_done is not None and not writers_done.is_set():
            return False
        with engine.connect() as conn:
            return not has_pending(conn)  # rows locked by another thread still count

    def run() -> None:
        try:
            while not stop.is_set():
                with engine.begin() as conn:
                    n = embed_pending(conn, embedder, limit=batch_size)
                if n:
                    with lock:
                        total[0] += n
                        if progress:
                            progress(total[0], max(pending, total[0]))
                elif finished():
                    return
                else:
                    time.sleep(POLL_SECONDS)
        except BaseException as exc:
            failures.append(exc)
            stop.set()

    workers = [
        threading.Thread(target=run, name=f"agentry-drain-{i}", daemon=True)
        for i in range(max(1, threads))
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    if failures:
        raise failures[0]
    return total[0]
