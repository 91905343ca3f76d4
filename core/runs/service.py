"""Creating, cancelling and serving runs; the per-process run machinery.

:func:`create_run` is how anything (the Agent Protocol routes, crons) queues a run:
in the caller's transaction, so the run exists exactly when the caller's other
writes do. :func:`start_runs` starts a process's listener and workers.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Row

from config import Settings
from core.auth.users import Principal
from core.db.engine import Database
from core.errors import ConflictError, ValidationFailed
from core.runs import store
from core.runs.signals import RunListener, RunSignals
from core.runs.worker import RunWorkers
from core.runtime.control import TurnControl
from core.runtime.service import AgentRuntime

MULTITASK_STRATEGIES = ("reject", "enqueue", "interrupt", "rollback")


def create_run(
    conn: Connection,
    *,
    principal: Principal,
    thread_id: uuid.UUID,
    assistant_id: str,
    content: str | None,
    graph_input: Any = None,
    stream_mode: list[str] | None = None,
    metadata: dict[str, Any] | None = None,
    multitask_strategy: str = "reject",
    stateless: bool = False,
    on_completion: str | None = None,
    run_id: uuid.UUID | None = None,
    control: TurnControl | None = None,
    webhook: str | None = None,
) -> Row[Any]:
    """Queue a run of ``thread_id`` (a conversation ``principal`` may use), in the
    caller's transaction; a worker of any process starts it once it is committed.

    Args:
        conn: the caller's transaction.
        principal: the run's owner; its turn runs as them.
        thread_id: the conversation.
        assistant_id: the agent (recorded; the conversation's current agent answers).
        content: the user's message, or None to only complete a pending turn.
        graph_input: the run's ``input`` as the client sent it (echoed in events).
        stream_mode: the Agent Protocol stream modes recorded as events.
        metadata: the run's metadata.
        multitask_strategy: what to do when the thread has a run already: ``reject``
            (409), ``enqueue`` (run after it), ``interrupt`` (stop it, then run) or
            ``rollback`` (stop it, fork the thread from before it, then run).
        stateless: the conversation is deleted when the run ends (unless
            ``on_completion`` is ``keep``).
        on_completion: ``delete`` or ``keep`` (stateless runs).
        run_id: the id to use (default: a new one).
        control: resume a paused turn and/or breakpoints (kept as JSON, see
            :class:`core.runtime.control.TurnControl`).
        webhook: where the finished run is POSTed (:mod:`core.runs.webhooks`).

    Returns:
        The run's row (status ``pending``).

    Raises:
        ConflictError: ``reject`` and the thread has a run or a turn going.
        ValidationFailed: an unknown strategy.
    """
    if multitask_strategy not in MULTITASK_STRATEGIES:
        raise ValidationFailed(
            f"multitask_strategy: {multitask_strategy!r} is not one of"
            f" {', '.join(MULTITASK_STRATEGIES)}"
        )
    store.lock_thread_runs(conn, thread_id)
    active = store.active_runs(conn, thread_id)
    if multitask_strategy == "reject" and (active or not store.turn_is_free(conn, thread_id)):
        raise ConflictError(
            "the thread has a run going; retry when it ends, or pass multitask_strategy"
            " enqueue, interrupt or rollback"
        )
    if multitask_strategy in ("interrupt", "rollback"):
        for run in active:
            store.request_cancel(conn, run.id, multitask_strategy)
    kwargs: dict[str, Any] = {
        "input": graph_input,
        "stream_mode": stream_mode or ["values"],
        "content": content,
    }
    if on_completion is not None:
        kwargs["on_completion"] = on_completion
    if control is not None:
        kwargs["control"] = control.to_json()
    if webhook is not None:
        kwargs["webhook"] = webhook
    return store.insert_run(
        conn,
        run_id=run_id or uuid.uuid4(),
        thread_id=thread_id,
        user_id=principal.id,
        assistant_id=assistant_id,
        strategy=multitask_strategy,
        kwargs=kwargs,
        metadata=metadata or {},
        stateless=stateless,
    )


def cancel_run(conn: Connection, run_id: uuid.UUID, action: str = "interrupt") -> None:
    """Cancel a run in the caller's transaction: a pending one never starts; the
    process holding a running one stops it (``interrupt``: the thread keeps the state
    reached; ``rollback``: the thread forks from before the run)."""
    if action not in ("interrupt", "rollback"):
        raise ValidationFailed(f"action: {action!r} is not supported (interrupt or rollback)")
    store.request_cancel(conn, run_id, action)


@dataclass
class RunService:
    """A process's run machinery: the LISTEN thread and (optionally) workers."""

    db: Database
    signals: RunSignals
    listener: RunListener
    workers: RunWorkers | None

    def stop(self) -> None:
        if self.workers is not None:
            self.workers.stop()
        self.listener.stop()


def start_runs(
    db: Database,
    runtime: Callable[[], AgentRuntime],
    settings: Settings,
    *,
    workers: int | None = None,
) -> RunService:
    """Listen for run notifications and start ``workers`` worker threads
    (default ``AGENTRY_RUN_WORKERS``; 0: this process only serves)."""
    signals = RunSignals()
    listener = RunListener(db.conninfo, signals).start()
    count = settings.run_workers if workers is None else workers
    # A running run holds its turn's connection and briefly takes a second one for its
    # events: leave the pool room for both and for the HTTP requests.
    count = min(count, max(1, (settings.db_max_connections - 2) // 2)) if count else 0
    pool = None
    if count > 0:
        pool = RunWorkers(
            db, runtime, signals, threads=count, lease=settings.run_lease_seconds
        ).start()
    return RunService(db, signals, listener, pool)
