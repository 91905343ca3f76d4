"""Wake-ups between processes: one LISTEN connection per process.

PostgreSQL notifications wake the workers (new run), stop a held run (cancel) and
wake the requests tailing a run's events. Every wait also has a short timeout, so a
notification lost while the listener reconnects costs latency, never correctness.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg

from core.runs.store import CANCEL_CHANNEL, EVENTS_CHANNEL, RUNS_CHANNEL

log = logging.getLogger(__name__)


class RunSignals:
    """Per-run generation counters: a tail reads, then waits for the counter to move."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._gen: dict[uuid.UUID, int] = {}
        # Final rows of runs this process ended: a waiter here needs no read after the end.
        self._ended: dict[uuid.UUID, Any] = {}
        self.work = threading.Event()  # set on new work for the workers
        self.cancel_handlers: list[Callable[[uuid.UUID], None]] = []

    def generation(self, run_id: uuid.UUID) -> int:
        with self._cond:
            return self._gen.get(run_id, 0)

    def wait(self, run_id: uuid.UUID, seen: int, timeout: float) -> None:
        """Return when the run's counter moved past ``seen`` or after ``timeout``."""
        with self._cond:
            self._cond.wait_for(lambda: self._gen.get(run_id, 0) != seen, timeout=timeout)

    def run_changed(self, run_id: uuid.UUID) -> None:
        with self._cond:
            self._gen[run_id] = self._gen.get(run_id, 0) + 1
            if len(self._gen) > 10_000:  # forget old runs (a waiter re-reads anyway)
                for key in list(self._gen)[:5_000]:
                    del self._gen[key]
            self._cond.notify_all()

    def run_ended(self, run_id: uuid.UUID, row: Any) -> None:
        """A worker of this process committed the run's end (``row``: its final row)."""
        with self._cond:
            self._ended[run_id] = row
            if len(self._ended) > 1_000:
                for key in list(self._ended)[:500]:
                    del self._ended[key]
        self.run_changed(run_id)

    def ended_row(self, run_id: uuid.UUID) -> Any | None:
        with self._cond:
            return self._ended.get(run_id)

    def dispatch(self, channel: str, payload: str) -> None:
        if channel == RUNS_CHANNEL:
            self.work.set()
            return
        try:
            run_id = uuid.UUID(payload)
        except ValueError:
            return
        if channel == EVENTS_CHANNEL:
            self.run_changed(run_id)
        elif channel == CANCEL_CHANNEL:
            for handler in self.cancel_handlers:
                handler(run_id)


class RunListener:
    """A thread LISTENing on the run channels for this process."""

    def __init__(self, conninfo: str, signals: RunSignals) -> None:
        self.conninfo = conninfo
        self.signals = signals
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="run-listener", daemon=True)

    def start(self, wait: float = 5.0) -> RunListener:
        self._thread.start()
        self._ready.wait(wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    for channel in (RUNS_CHANNEL, CANCEL_CHANNEL, EVENTS_CHANNEL):
                        conn.execute(f"LISTEN {channel}")
                    self._ready.set()
                    self.signals.work.set()  # work queued while we were not listening
                    while not self._stop.is_set():
                        # Each notification is handled as it arrives (not per batch).
                        for note in conn.notifies(timeout=0.25):
                            self.signals.dispatch(note.channel, note.payload)
            except Exception as exc:  # the database restarted: reconnect
                log.warning("run listener: %s; reconnecting", exc)
                self._stop.wait(1.0)
