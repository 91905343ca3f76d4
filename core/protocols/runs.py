"""Agent Protocol runs: one turn of the runtime, executed in a worker thread.

A run is :func:`core.runtime.turns.run_turn` (no second agent loop): the request
thread takes the first event (so a refusal — unknown thread, a turn already
running, no model — is still a plain HTTP error), then a worker thread drives the
rest and translates the turn's events into the stream modes asked for. Streaming,
waiting and joining all read the run's event buffer.

Runs are kept in memory by the process that runs them (the conversation and its
messages are durable; the run records are not).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from core.errors import AgentryError, NotFoundError
from core.protocols.translate import Translator
from core.runtime.turns import TurnEvent

log = logging.getLogger(__name__)

KEEP_FINISHED = 1000  # finished runs remembered per process


class Cancelled(Exception):
    """The run was cancelled (checked between events)."""


def _now() -> str:
    return datetime.now(UTC).isoformat()


@dataclass
class Run:
    run_id: uuid.UUID
    thread_id: uuid.UUID
    owner_id: uuid.UUID
    assistant_id: str
    stream_modes: list[str]
    metadata: dict[str, Any]
    kwargs: dict[str, Any]
    status: str = "pending"
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)
    events: list[tuple[str, Any]] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    cond: threading.Condition = field(default_factory=threading.Condition)
    on_finish: Callable[[Run], None] | None = None

    @property
    def done(self) -> bool:
        return self.status in ("success", "error", "interrupted")

    def json(self) -> dict[str, Any]:
        return {
            "run_id": str(self.run_id),
            "thread_id": str(self.thread_id),
            "assistant_id": self.assistant_id,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "status": self.status,
            "metadata": self.metadata,
            "multitask_strategy": "reject",
            "kwargs": self.kwargs,
        }

    def publish(self, event: str, data: Any) -> None:
        with self.cond:
            self.events.append((event, data))
            self.cond.notify_all()

    def set_status(self, status: str) -> None:
        with self.cond:
            self.status = status
            self.updated_at = _now()
            self.cond.notify_all()

    def batch(self, start: int, timeout: float) -> tuple[list[tuple[str, Any]], bool]:
        """The events from ``start`` on (waiting up to ``timeout`` for one) and whether
        the run has ended."""
        with self.cond:
            if start >= len(self.events) and not self.done:
                self.cond.wait(timeout=timeout)
            return self.events[start:], self.done

    def wait(self, timeout: float | None = None) -> bool:
        with self.cond:
            return self.cond.wait_for(lambda: self.done, timeout=timeout)

    def outcome(self) -> dict[str, Any]:
        """What ``wait`` and ``join`` answer: the final values, or the error."""
        if self.error is not None:
            return {"__error__": self.error}
        return self.result or {}


class RunRegistry:
    """The runs of this process, by id (finished ones are forgotten oldest first)."""

    def __init__(self) -> None:
        self._runs: OrderedDict[uuid.UUID, Run] = OrderedDict()
        self._lock = threading.Lock()

    def add(self, run: Run) -> None:
        with self._lock:
            self._runs[run.run_id] = run
            finished = [k for k, r in self._runs.items() if r.done]
            for key in finished[: max(0, len(finished) - KEEP_FINISHED)]:
                del self._runs[key]

    def get(self, thread_id: uuid.UUID, run_id: uuid.UUID) -> Run:
        run = self._runs.get(run_id)
        if run is None or run.thread_id != thread_id:
            raise NotFoundError(f"no run {run_id} on thread {thread_id}")
        return run

    def forget(self, run_id: uuid.UUID) -> None:
        with self._lock:
            self._runs.pop(run_id, None)

    def of_thread(self, thread_id: uuid.UUID) -> list[Run]:
        with self._lock:
            runs = [r for r in self._runs.values() if r.thread_id == thread_id]
        return sorted(runs, key=lambda r: r.created_at, reverse=True)

    def busy(self, thread_id: uuid.UUID) -> bool:
        return any(not r.done for r in self.of_thread(thread_id))


def execute(
    run: Run, turn: Iterator[TurnEvent], first: TurnEvent, translator: Translator, graph_input: Any
) -> None:
    """Drive the turn to its end, publishing the translated events (worker thread)."""
    run.set_status("running")
    status = "success"
    try:
        for name, data in translator.start(graph_input):
            run.publish(name, data)
        event: TurnEvent | None = first
        while event is not None:
            if run.cancel.is_set():
                raise Cancelled
            for name, data in translator.translate(event):
                run.publish(name, data)
            event = next(turn, None)
        for name, data in translator.finish():
            run.publish(name, data)
        run.result = translator.outcome()
        if translator.interrupts is not None:
            status = "interrupted"  # paused for a person, as LangGraph servers say
    except Cancelled:
        status = "interrupted"
        run.result = translator.values()
    except AgentryError as exc:
        status = "error"
        run.error = {"error": exc.title, "message": exc.message}
        run.publish("error", run.error)
    except Exception as exc:  # the trace goes to the log; the client gets a clean event
        log.exception("run %s failed", run.run_id)
        status = "error"
        run.error = {"error": type(exc).__name__, "message": "the run failed; see the server log"}
        run.publish("error", run.error)
    finally:
        turn_close = getattr(turn, "close", None)
        if turn_close is not None:
            turn_close()  # releases the turn lock when the run stopped early
        if run.on_finish is not None:
            try:
                run.on_finish(run)
            except Exception:
                log.exception("clean-up of run %s failed", run.run_id)
        run.set_status(status)


def launch(
    registry: RunRegistry,
    run: Run,
    turn: Iterator[TurnEvent],
    translator: Translator,
    graph_input: Any,
) -> None:
    """Take the turn's first event here (refusals raise to the caller), then run the
    rest in a worker thread."""
    try:
        first = next(turn)
    except StopIteration:
        raise AgentryError("the turn ended before it started") from None
    registry.add(run)
    threading.Thread(
        target=execute,
        args=(run, turn, first, translator, graph_input),
        name=f"agentry-run-{run.run_id}",
        daemon=True,
    ).start()
