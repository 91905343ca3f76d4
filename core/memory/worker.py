"""The in-server embedding worker: drains rows whose embedding is still NULL.

Chat turns only insert index rows (cheap, keyword-searchable at once); this
thread embeds them in batches a moment later, so they become vector-searchable
within about one poll interval (AGENTRY_EMBED_INTERVAL) plus the embedding time.
The queue is the table itself (``embedding IS NULL``, partial index), drained with
``FOR UPDATE SKIP LOCKED`` so any number of server processes can run a worker.
The model is loaded only when there is work, so idle processes stay light.
AGENTRY_EMBED_THREADS threads drain it, so one embeds while PostgreSQL inserts
another's vectors into HNSW (core/memory/drain.py).
"""

from __future__ import annotations

import logging
import threading
import time

from sqlalchemy import Engine

from config import Settings
from core.errors import EmbeddingMismatchError
from core.memory.embeddings import get_embedder
from core.memory.indexer import embed_pending, has_pending
from core.memory.keyword_index import fold_deltas, reweigh_if_drifted, state
from core.memory.keyword_segment import compact
from core.observability.metrics import EMBEDDED

log = logging.getLogger(__name__)
# Larger indexes are re-weighted by `agentry index` (writers wait during each batch).
REWEIGH_IN_WORKER_MAX = 50_000


class EmbeddingWorker:
    """Daemon threads that embed pending index rows every ``interval`` seconds."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.embedded = 0
        self._stop = threading.Event()
        # One wake-up per thread, so no thread can consume another's.
        self._wakes = [threading.Event() for _ in range(settings.embed_threads)]
        self._count_lock = threading.Lock()
        self._compaction_checked = False  # once at start, then after polls that folded writes
        self._threads = [
            threading.Thread(
                target=self._run, args=(wake,), name=f"agentry-embedder-{i}", daemon=True
            )
            for i, wake in enumerate(self._wakes)
        ]

    def start(self) -> EmbeddingWorker:
        for thread in self._threads:
            thread.start()
        return self

    def wake(self) -> None:
        """Check for work now instead of at the next poll."""
        for wake in self._wakes:
            wake.set()

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        self.wake()
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))

    def run_once(self) -> int:
        """Embed one batch; returns how many rows were embedded."""
        with self.engine.connect() as conn:
            if not has_pending(conn):
                return 0
        embedder = get_embedder(self.settings)
        with self.engine.begin() as conn:
            n = embed_pending(conn, embedder, limit=self.settings.embedding_batch_size)
        EMBEDDED.inc(n)  # committed: the vectors are searchable now
        with self._count_lock:
            self.embedded += n
        return n

    def housekeeping(self) -> None:
        """Fold keyword df deltas; re-weigh a small index whose average length drifted;
        rebuild the keyword segment when writes since the last poll grew its tail enough."""
        folded = fold_deltas(self.engine)
        with self.engine.connect() as conn:
            small = state(conn).chunks <= REWEIGH_IN_WORKER_MAX
        if small:
            reweigh_if_drifted(self.engine)
        if folded or not self._compaction_checked:
            self._compaction_checked = True
            report = compact(self.engine, self.settings)
            if report is not None:
                log.info(
                    "keyword segment rebuilt: %d postings, %d blocks in %.1f s",
                    report.postings,
                    report.blocks,
                    report.seconds,
                )

    def _run(self, wake: threading.Event) -> None:
        backoff = self.settings.embed_interval
        keeper = wake is self._wakes[0]  # one thread does the keyword housekeeping
        while not self._stop.is_set():
            if keeper:
                try:
                    self.housekeeping()
                except Exception:  # keyword housekeeping must never stop the embedding
                    log.exception("keyword index housekeeping failed; retrying next poll")
            try:
                n = self.run_once()
                backoff = self.settings.embed_interval
            except EmbeddingMismatchError as exc:
                log.error("embedding worker stopped: %s", exc)
                return
            except Exception:
                # A database hiccup or an endpoint error must not kill the worker.
                log.exception("embedding worker batch failed; retrying")
                n = 0
                backoff = min(max(backoff * 2, 0.5), 30.0)
            if n < self.settings.embedding_batch_size:
                wake.wait(backoff)
                wake.clear()


def start_worker(engine: Engine, settings: Settings) -> EmbeddingWorker | None:
    """Start the worker unless AGENTRY_EMBED_INTERVAL is 0."""
    if settings.embed_interval <= 0:
        return None
    return EmbeddingWorker(engine, settings).start()
