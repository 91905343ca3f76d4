"""The cron scheduler: every process polls for due crons and fires each tick once.

:func:`fire_due` claims a due cron with ``FOR UPDATE SKIP LOCKED`` and, in the same
transaction, advances its ``next_run_at`` and queues its run (an ordinary durable run),
so each tick starts exactly one run however many processes poll. A tick missed while
no process ran fires once, late; the ones in between are skipped.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, Row, text

from core.auth.users import Principal
from core.errors import AgentryError, ValidationFailed
from core.models import UserRole
from core.protocols.control import run_control
from core.protocols.runs import queue_run
from core.runs.crons import COLUMNS, next_tick
from core.runs.poller import Poller
from core.runtime.service import AgentRuntime

log = logging.getLogger(__name__)

# Due crons, each claimed by one process: the others skip rows locked by it.
CLAIM_SQL = text(
    f"SELECT {COLUMNS} FROM crons"
    " WHERE enabled AND next_run_at IS NOT NULL AND next_run_at <= now()"
    " ORDER BY next_run_at LIMIT :limit FOR UPDATE SKIP LOCKED"
)
# A thread cron goes with its thread: soft-deleted threads' crons are removed at the
# next poll, before any is claimed (a hard delete cascades at once).
ORPHANS_SQL = text(
    "DELETE FROM crons c USING conversations t"
    " WHERE c.thread_id = t.id AND t.deleted_at IS NOT NULL"
)
ADVANCE_SQL = text("UPDATE crons SET next_run_at = :next_run_at WHERE id = :id")
OWNER_SQL = text("SELECT id, email, role FROM users WHERE id = :id AND is_active")

# One cron per transaction: a tick's run creation never holds other crons' locks, and
# the processes polling share a burst of due crons between them.
CLAIM_BATCH = 1

# Starts the run of one tick in the claiming transaction (``conn``); returns its id.
RunStarter = Callable[[Connection, Row[Any], Principal], uuid.UUID]


def owner(conn: Connection, user_id: uuid.UUID) -> Principal | None:
    """The cron's owner, who its runs run as (None once the user is deactivated)."""
    row = conn.execute(OWNER_SQL, {"id": user_id}).first()
    if row is None:
        return None
    return Principal(id=row.id, email=row.email, role=UserRole(row.role))


def fire_due(engine: Engine, start: RunStarter, limit: int = CLAIM_BATCH) -> int:
    """Start the run of every due cron (at most ``limit``) and advance its next tick.

    One transaction: the claim (row locks, skipped by other processes), the new
    ``next_run_at`` and the run's creation commit together, so a tick is fired once.
    A run that cannot start (thread busy, assistant gone...) is logged and that tick
    is skipped; the cron goes on.

    Returns:
        How many crons were due.
    """
    with engine.begin() as conn:
        conn.execute(ORPHANS_SQL)
        rows = list(conn.execute(CLAIM_SQL, {"limit": limit}))
        now = datetime.now(UTC)
        for row in rows:
            try:
                upcoming = next_tick(row.schedule, row.timezone, now, row.end_time)
            except ValidationFailed as exc:  # e.g. a timezone this machine does not know
                log.error("cron %s stops: %s", row.id, exc)
                upcoming = None
            conn.execute(ADVANCE_SQL, {"id": row.id, "next_run_at": upcoming})
            principal = owner(conn, row.user_id)
            if principal is None:
                log.warning("cron %s: its owner is gone; tick skipped", row.id)
                continue
            try:
                with conn.begin_nested():
                    run_id = start(conn, row, principal)
                log.info("cron %s: started run %s", row.id, run_id)
            except AgentryError as exc:
                log.warning("cron %s: tick skipped: %s", row.id, exc)
    return len(rows)


def queue_tick(runtime: Callable[[], AgentRuntime]) -> RunStarter:
    """How a tick starts its run: an ordinary durable run, queued in the tick's
    transaction, as the cron's owner, with the options checked when the cron was made."""

    def start(conn: Connection, cron: Row[Any], principal: Principal) -> uuid.UUID:
        options = cron.payload
        modes = options.get("stream_mode") or "values"
        stateless = cron.thread_id is None
        run = queue_run(
            conn,
            runtime(),
            principal,
            cron.thread_id,
            cron.assistant_id,
            options.get("input"),
            stream_mode=[modes] if isinstance(modes, str) else list(modes),
            metadata={**(options.get("metadata") or {}), "cron_id": str(cron.id)},
            multitask_strategy=options.get("multitask_strategy") or "reject",
            on_completion=(cron.on_run_completed or "delete") if stateless else None,
            control=run_control(options),
            webhook=options.get("webhook"),
        )
        run_id: uuid.UUID = run.id
        return run_id

    return start


def start_scheduler(
    engine: Engine, interval: float, runtime: Callable[[], AgentRuntime]
) -> Poller | None:
    """This process's scheduler thread (``AGENTRY_CRON_INTERVAL``; 0: none)."""
    if interval <= 0:
        return None
    start = queue_tick(runtime)
    return Poller("agentry-crons", interval, lambda: fire_due(engine, start)).start()
