"""A run's stream events: written in batches by its worker, tailed by any process."""

from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import Connection, Row

from core.db.engine import Database
from core.errors import NotFoundError
from core.runs import store
from core.runs.signals import RunSignals

# Tokens are written at most this often (one transaction per batch, not per token);
# step boundaries are written at once.
FLUSH_SECONDS = 0.05
POLL_SECONDS = 0.5  # the fallback when a notification was missed


class EventWriter:
    """Buffers a run's events and appends them in order, ``seq`` continuing."""

    def __init__(self, run_id: uuid.UUID, first_seq: int) -> None:
        self.run_id = run_id
        self.seq = first_seq
        self.buffer: list[tuple[str, Any]] = []
        self.flushed_at = time.monotonic()

    def add(self, name: str, data: Any) -> None:
        self.buffer.append((name, data))

    def due(self, *, boundary: bool) -> bool:
        if not self.buffer:
            return False
        return boundary or time.monotonic() - self.flushed_at >= FLUSH_SECONDS

    def flush(self, conn: Connection) -> None:
        if self.buffer:
            store.append_events(conn, self.run_id, self.seq, self.buffer)
            self.seq += len(self.buffer)
            self.buffer = []
        self.flushed_at = time.monotonic()


def read_after(
    db: Database, signals: RunSignals, run_id: uuid.UUID, after: int, timeout: float
) -> tuple[list[tuple[int, str, Any]], bool]:
    """The run's events after ``after`` (waiting up to ``timeout`` for one) and whether
    the run has ended."""
    deadline = time.monotonic() + timeout
    while True:
        seen = signals.generation(run_id)
        with db.engine.connect() as conn:
            status, events = store.read_events(conn, run_id, after)
        if status is None:
            raise NotFoundError(f"no run {run_id}")
        ended = status in store.FINISHED
        left = deadline - time.monotonic()
        if events or ended or left <= 0:
            return events, ended
        signals.wait(run_id, seen, min(left, POLL_SECONDS))


def wait_for_end(
    db: Database, signals: RunSignals, thread_id: uuid.UUID, run_id: uuid.UUID
) -> Row[Any]:
    """Block until the run has ended; its final row."""
    while True:
        seen = signals.generation(run_id)
        ended = signals.ended_row(run_id)
        if ended is not None and ended.thread_id == thread_id:
            return ended  # ended by this process: the row its end committed
        with db.engine.connect() as conn:
            row = store.get_run(conn, thread_id, run_id)
        if row.status in store.FINISHED:
            return row
        signals.wait(run_id, seen, POLL_SECONDS)
