"""Worker loops: claim a run from the table, run its turn, record its events and end.

Every ``agentry up`` process (and ``agentry worker``) runs a few worker threads and
one heartbeat thread. A run is held under a lease the heartbeat extends; a process
that dies stops extending it, and once it expires any worker claims the run again
(attempt + 1) and completes it from its checkpoint (:func:`core.runtime.turns.run_turn`
crash semantics). The user's message of a run has the id ``u-<run id>``, so a
takeover knows whether it was already stored and never stores it twice.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, Row, text

from core.db.engine import Database
from core.errors import AgentryError, ConflictError
from core.protocols.threads import thread_config
from core.protocols.translate import GRAPH_MODES, TOKEN_MODES, Translator
from core.registry.assistants import agent_name, parse_id
from core.runs import store
from core.runs.events import EventWriter
from core.runs.settle import settle_cancelled
from core.runs.signals import RunSignals
from core.runtime.control import TurnControl, for_retry, pending_of
from core.runtime.service import AgentRuntime, CompiledRegistry
from core.runtime.turns import TurnEvent, run_turn

log = logging.getLogger(__name__)

FinishHook = Callable[[Connection, Row[Any]], None]
_finish_hooks: list[FinishHook] = []
FORGET_SQL = text(
    "UPDATE conversations SET deleted_at = now() WHERE id = :id AND deleted_at IS NULL"
)
BUSY_RETRY_SECONDS = 0.5  # a thread whose turn lock is held elsewhere is tried again


def on_run_finished(hook: FinishHook) -> Callable[[], None]:
    """Call ``hook(conn, run_row)`` in the transaction that records a run's end.

    Each hook runs in a savepoint: one that fails is logged and rolled back alone,
    the run's end is still recorded. Returns a function that unregisters the hook.
    """
    _finish_hooks.append(hook)
    return lambda: _finish_hooks.remove(hook) if hook in _finish_hooks else None


def version_of(compiled: CompiledRegistry, assistant_id: str) -> int | None:
    """The version of ``assistant_id`` in the registry the run's turn is compiled from
    (the turn reuses this compiled registry unless the registry changes meanwhile)."""
    parsed = parse_id(assistant_id)
    name = agent_name(parsed) if parsed else assistant_id
    if name not in compiled.snapshot.agents:
        return None
    return compiled.snapshot.versions.get(name, 1)


def _close(turn: Iterator[TurnEvent]) -> None:
    close = getattr(turn, "close", None)
    if close is not None:
        close()


class Stop(Exception):
    """The held run must stop (cancelled, process shutting down, or lease lost)."""


@dataclass
class Held:
    run: Row[Any]
    stop: threading.Event = field(default_factory=threading.Event)
    reason: str = ""  # interrupt | rollback | shutdown | lost

    def halt(self, reason: str) -> None:
        if not self.stop.is_set():
            self.reason = reason
            self.stop.set()


class RunWorkers:
    """The worker threads of one process."""

    def __init__(
        self,
        db: Database,
        runtime: Callable[[], AgentRuntime],
        signals: RunSignals,
        *,
        threads: int,
        lease: float,
        poll: float = 0.5,
    ) -> None:
        self.db = db
        self.runtime = runtime
        self.signals = signals
        self.threads = threads
        self.lease = lease
        self.poll = poll
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._held: dict[uuid.UUID, Held] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        signals.cancel_handlers.append(self.cancel_requested)

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> RunWorkers:
        for i in range(self.threads):
            self._threads.append(
                threading.Thread(target=self._loop, name=f"run-worker-{i}", daemon=True)
            )
        self._threads.append(
            threading.Thread(target=self._heartbeat, name="run-heartbeat", daemon=True)
        )
        for thread in self._threads:
            thread.start()
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop claiming; runs held now go back to the queue for another process."""
        self._stop.set()
        self.signals.work.set()
        with self._lock:
            for held in self._held.values():
                held.halt("shutdown")
        deadline = time.monotonic() + timeout
        for thread in self._threads:
            thread.join(timeout=max(0.1, deadline - time.monotonic()))
        if self.cancel_requested in self.signals.cancel_handlers:
            self.signals.cancel_handlers.remove(self.cancel_requested)

    def cancel_requested(self, run_id: uuid.UUID) -> None:
        """A cancel notification: stop the run if this process holds it."""
        with self._lock:
            held = self._held.get(run_id)
        if held is None:
            return
        with self.db.engine.connect() as conn:
            action = conn.execute(
                text("SELECT cancel FROM runs WHERE id = :id"), {"id": run_id}
            ).scalar()
        held.halt(str(action or "interrupt"))

    # --- threads -----------------------------------------------------------------
    def _loop(self) -> None:
        while not self._stop.is_set():
            self.signals.work.clear()
            try:
                with self.db.engine.begin() as conn:
                    run = store.claim(conn, self.name, self.lease)
            except Exception as exc:  # database away: try again shortly
                log.warning("run worker: claim failed: %s", exc)
                run = None
            if run is None:
                self.signals.work.wait(self.poll)
                continue
            self.signals.work.set()  # there may be more: let another thread look
            held = Held(run)
            with self._lock:
                self._held[run.id] = held
            try:
                self._execute(held)
            except Exception:
                log.exception("run %s: the worker failed", run.id)
                self._fail(run)
            finally:
                with self._lock:
                    self._held.pop(run.id, None)

    def _heartbeat(self) -> None:
        while not self._stop.wait(self.lease / 3):
            with self._lock:
                held = dict(self._held)
            if not held:
                continue
            try:
                with self.db.engine.begin() as conn:
                    rows = store.heartbeat(conn, self.name, list(held), self.lease)
            except Exception as exc:
                log.warning("run heartbeat failed: %s", exc)
                continue
            alive = {r.id: r for r in rows}
            for run_id, item in held.items():
                row = alive.get(run_id)
                if row is None or row.attempt != item.run.attempt:
                    item.halt("lost")  # taken over (or finished) elsewhere
                elif row.cancel:
                    item.halt(row.cancel)  # the cancel notification may have been missed

    # --- one run -------------------------------------------------------------------
    def _execute(self, held: Held) -> None:
        run = held.run
        if run.cancel:  # cancelled while its last holder was dying
            self._end_cancelled(run, str(run.cancel), None)
            return
        runtime = self.runtime()
        kwargs = run.kwargs
        modes = list(kwargs.get("stream_mode") or ["values"])
        content: str | None = kwargs.get("content")
        control = TurnControl.from_json(kwargs.get("control"))
        message_id = f"u-{run.id}"
        # One transaction for the run's start (each one saved is a round trip per run).
        with self.db.engine.begin() as conn:
            principal = store.principal_of(conn, run.user_id)
            if (
                content is not None
                and run.attempt > 1
                and store.input_stored(conn, run.thread_id, message_id)
            ):
                content = None  # the message is in: complete the turn from its checkpoint
            # A first attempt has written no events yet (a re-claim counts as an attempt).
            first_seq = 0 if run.attempt == 1 else store.next_seq(conn, run.id)
            if run.attempt > 1 and control is not None:
                control = for_retry(control, pending_of(conn, run.thread_id))
            compiled = runtime.compiled(conn)
            snapshot = compiled.graph.get_state(thread_config(run.thread_id))
            checkpoint = (snapshot.config or {}).get("configurable", {}).get("checkpoint_id")
            store.record_start(conn, run.id, checkpoint, version_of(compiled, run.assistant_id))
        turn = run_turn(
            runtime,
            principal,
            run.thread_id,
            content,
            stream_tokens=any(m in TOKEN_MODES for m in modes),
            raw=True,
            message_id=message_id,
            control=control,
            graph_modes=[m for m in modes if m in GRAPH_MODES],
        )
        translator = Translator(run.id, run.thread_id, modes, snapshot.values or {})
        writer = EventWriter(run.id, first_seq)
        status, error = "success", None
        try:
            first = next(turn)
        except ConflictError:  # a turn of the thread runs elsewhere: queue again
            with self.db.engine.begin() as conn:
                store.release(conn, run, self.name, BUSY_RETRY_SECONDS)
            return
        except StopIteration:
            first = None
        except AgentryError as exc:
            _close(turn)
            self._finish(run, writer, "error", None, {"error": exc.title, "message": exc.message})
            return
        try:
            self._drive(held, turn, first, translator, writer, kwargs.get("input"))
        except Stop:
            status = "interrupted"
        except AgentryError as exc:
            status, error = "error", {"error": exc.title, "message": exc.message}
            writer.add("error", error)
        except Exception as exc:  # the trace goes to the log; the client gets a clean event
            log.exception("run %s failed", run.id)
            status = "error"
            error = {"error": type(exc).__name__, "message": "the run failed; see the server log"}
            writer.add("error", error)
        finally:
            _close(turn)  # releases the turn lock when the run stopped early
        if status == "interrupted" and held.reason in ("shutdown", "lost"):
            if held.reason == "shutdown":
                with self.db.engine.begin() as conn:
                    writer.flush(conn)
                    store.release(conn, run, self.name, 0)
            return
        if status == "interrupted":
            self._end_cancelled(run, held.reason, writer, translator.values())
            return
        if status == "success" and translator.interrupts is not None:
            status = "interrupted"  # paused for a person, as LangGraph servers say
        self._finish(run, writer, status, translator.outcome() if error is None else None, error)

    def _drive(
        self,
        held: Held,
        turn: Iterator[TurnEvent],
        first: TurnEvent | None,
        translator: Translator,
        writer: EventWriter,
        graph_input: Any,
    ) -> None:
        for name, data in translator.start(graph_input):
            if name == "metadata":
                data = {**data, "attempt": held.run.attempt}
            writer.add(name, data)
        event = first
        while event is not None:
            if held.stop.is_set():
                raise Stop
            for name, data in translator.translate(event):
                writer.add(name, data)
            # The final event's batch goes with the run's end, in its transaction.
            if event.type != "final" and writer.due(boundary=event.type not in ("chunk", "token")):
                with self.db.engine.begin() as conn:
                    writer.flush(conn)
                self.signals.run_changed(held.run.id)  # tails in this process: no NOTIFY wait
            event = next(turn, None)
        for name, data in translator.finish():
            writer.add(name, data)

    def _end_cancelled(
        self,
        run: Row[Any],
        action: str,
        writer: EventWriter | None,
        values: dict[str, Any] | None = None,
    ) -> None:
        """Settle the thread (:mod:`core.runs.settle`), then record the run interrupted."""
        graph = self.runtime().compiled().graph
        with self.db.engine.begin() as conn:
            settle_cancelled(conn, graph, run.id, action)
            writer = writer or EventWriter(run.id, 0)
            row = self._finish_in(
                conn, run, writer, "interrupted", None if action == "rollback" else values, None
            )
        self._ended(row)

    def _fail(self, run: Row[Any]) -> None:
        """End a run whose worker failed outside its turn (else it is retried for ever)."""
        error = {"error": "RunFailed", "message": "the run failed; see the server log"}
        try:
            with self.db.engine.begin() as conn:
                writer = EventWriter(run.id, store.next_seq(conn, run.id))
                writer.add("error", error)
                self._finish_in(conn, run, writer, "error", None, error)
        except Exception:
            log.exception("run %s: recording its failure failed", run.id)

    def _finish(
        self,
        run: Row[Any],
        writer: EventWriter,
        status: str,
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> None:
        with self.db.engine.begin() as conn:
            row = self._finish_in(conn, run, writer, status, output, error)
        self._ended(row)

    def _ended(self, row: Row[Any] | None) -> None:
        """After the commit of a run's end: wake this process's waiters and workers now
        (other processes hear the NOTIFY sent on commit)."""
        if row is not None:
            self.signals.run_ended(row.id, row)
            self.signals.work.set()  # a run queued behind this one may start

    def _finish_in(
        self,
        conn: Connection,
        run: Row[Any],
        writer: EventWriter,
        status: str,
        output: dict[str, Any] | None,
        error: dict[str, Any] | None,
    ) -> Row[Any] | None:
        writer.flush(conn)
        row = store.finish(conn, run, self.name, status, output, error)
        if row is None:
            log.warning("run %s was taken over before it ended here", run.id)
            return None
        if run.stateless and run.kwargs.get("on_completion") != "keep":
            conn.execute(FORGET_SQL, {"id": run.thread_id})
        for hook in list(_finish_hooks):
            try:
                with conn.begin_nested():
                    hook(conn, row)
            except Exception:
                log.exception("run %s: a finish hook failed", run.id)
        return row
