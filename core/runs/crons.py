"""Crons: schedules that start an ordinary run at every tick.

A cron is a row of ``crons``: a standard cron expression read in an IANA timezone
(UTC by default), the run's options (``payload``) and the next tick
(``next_run_at``, UTC). Every server process (and ``agentry worker``) polls for due
crons; :func:`fire_due` claims them with ``FOR UPDATE SKIP LOCKED`` and, in the same
transaction, advances ``next_run_at`` and starts the run, so each tick starts exactly
one run across all processes. A tick missed while no process ran fires once, late;
the ones in between are skipped.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from sqlalchemy import Connection, Engine, Row, text

from core.auth.users import Principal
from core.errors import AgentryError, NotFoundError, ValidationFailed
from core.models import UserRole
from core.protocols.runs import queue_run
from core.runs.poller import Poller
from core.runtime.service import AgentRuntime

log = logging.getLogger(__name__)

COLUMNS = (
    "id, user_id, assistant_id, thread_id, schedule, timezone, payload, metadata,"
    " on_run_completed, next_run_at, end_time, enabled, created_at, updated_at"
)
INSERT_SQL = text(
    "INSERT INTO crons (user_id, assistant_id, thread_id, schedule, timezone, payload,"
    " metadata, on_run_completed, next_run_at, end_time, enabled)"
    " VALUES (:uid, :assistant_id, :thread_id, :schedule, :timezone, CAST(:payload AS jsonb),"
    " CAST(:metadata AS jsonb), :on_run_completed, :next_run_at, :end_time, :enabled)"
    f" RETURNING {COLUMNS}"
)
# The caller's crons (admins: everyone's).
VISIBLE = "(user_id = :uid OR :admin)"
GET_SQL = text(f"SELECT {COLUMNS} FROM crons WHERE id = :id AND {VISIBLE}")
DELETE_SQL = text(f"DELETE FROM crons WHERE id = :id AND {VISIBLE} RETURNING id")
UPDATE_SQL = text(
    "UPDATE crons SET schedule = :schedule, timezone = :timezone,"
    " payload = CAST(:payload AS jsonb), metadata = CAST(:metadata AS jsonb),"
    " on_run_completed = :on_run_completed,"
    " next_run_at = :next_run_at, end_time = :end_time, enabled = :enabled, updated_at = now()"
    f" WHERE id = :id RETURNING {COLUMNS}"
)
FILTERS = (
    f" WHERE {VISIBLE}"
    " AND (CAST(:assistant_id AS text) IS NULL OR assistant_id = :assistant_id)"
    " AND (CAST(:thread_id AS uuid) IS NULL OR thread_id = :thread_id)"
    " AND (CAST(:enabled AS boolean) IS NULL OR enabled = :enabled)"
    " AND metadata @> CAST(:metadata AS jsonb)"
)
COUNT_SQL = text("SELECT count(*) FROM crons" + FILTERS)
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

SORT_COLUMNS = {
    "cron_id": "id",
    "assistant_id": "assistant_id",
    "thread_id": "thread_id",
    "created_at": "created_at",
    "updated_at": "updated_at",
    "next_run_date": "next_run_at",
    "end_time": "end_time",
}
FIELDS = (
    "cron_id",
    "assistant_id",
    "thread_id",
    "end_time",
    "schedule",
    "timezone",
    "created_at",
    "updated_at",
    "user_id",
    "payload",
    "next_run_date",
    "metadata",
    "now",
    "on_run_completed",
    "enabled",
)
# One cron per transaction: a tick's run creation never holds other crons' locks, and
# the processes polling share a burst of due crons between them.
CLAIM_BATCH = 1

# Starts the run of one tick in the claiming transaction (``conn``); returns its id.
RunStarter = Callable[[Connection, Row[Any], Principal], uuid.UUID]


def zone(timezone: str | None) -> ZoneInfo:
    """The IANA timezone (UTC when unset).

    Raises:
        ValidationFailed: an unknown name (names the ``timezone`` field).
    """
    try:
        return ZoneInfo(timezone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise ValidationFailed(
            f"timezone: {timezone!r} is not an IANA timezone (e.g. 'Europe/Paris')"
        ) from None


def next_tick(
    schedule: str, timezone: str | None, after: datetime, end_time: datetime | None = None
) -> datetime | None:
    """The first tick of ``schedule`` after ``after``, in UTC; None past ``end_time``.

    The expression is read in ``timezone`` (so ``0 9 * * *`` is 9:00 local time on
    both sides of a daylight-saving change).

    Raises:
        ValidationFailed: not a standard cron expression (names ``schedule``).
    """
    fields = schedule.split()
    if not (len(fields) == 5 or (len(fields) == 1 and fields[0].startswith("@"))):
        raise ValidationFailed(
            f"schedule: {schedule!r} is not a standard cron expression"
            " (five fields: minute hour day-of-month month day-of-week, or @hourly, @daily...)"
        )
    if not croniter.is_valid(schedule):
        raise ValidationFailed(f"schedule: {schedule!r} is not a valid cron expression")
    local = after.astimezone(zone(timezone))
    try:
        tick: datetime = croniter(schedule, local).get_next(datetime)
    except CroniterError:  # e.g. "* * 31 2 *": a date that never comes
        raise ValidationFailed(f"schedule: {schedule!r} never fires") from None
    tick = tick.astimezone(UTC)
    if end_time is not None and tick > end_time:
        return None
    return tick


def cron_json(row: Row[Any], select: list[str] | None = None) -> dict[str, Any]:
    """A cron as ``langgraph_sdk`` expects it (``Cron``), optionally only ``select``."""
    body = {
        "cron_id": str(row.id),
        "assistant_id": row.assistant_id,
        "thread_id": str(row.thread_id) if row.thread_id else None,
        "user_id": str(row.user_id),
        "schedule": row.schedule,
        "timezone": row.timezone,
        "payload": row.payload,
        "metadata": row.metadata,
        "on_run_completed": row.on_run_completed,
        "next_run_date": row.next_run_at.isoformat() if row.next_run_at else None,
        "end_time": row.end_time.isoformat() if row.end_time else None,
        "enabled": row.enabled,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "now": datetime.now(UTC).isoformat(),
    }
    if select:
        return {k: body[k] for k in select}
    del body["now"]
    return body


def _params(principal: Principal) -> dict[str, Any]:
    return {"uid": principal.id, "admin": principal.is_admin}


def create_cron(
    conn: Connection,
    principal: Principal,
    *,
    assistant_id: str,
    thread_id: uuid.UUID | None,
    schedule: str,
    timezone: str | None,
    payload: dict[str, Any],
    metadata: dict[str, Any],
    on_run_completed: str | None,
    end_time: datetime | None,
    enabled: bool,
) -> Row[Any]:
    """A new cron of ``principal``; the caller has checked the thread and the run options."""
    next_run_at = next_tick(schedule, timezone, datetime.now(UTC), end_time)
    row = conn.execute(
        INSERT_SQL,
        {
            "uid": principal.id,
            "assistant_id": assistant_id,
            "thread_id": thread_id,
            "schedule": schedule,
            "timezone": timezone,
            "payload": json.dumps(payload),
            "metadata": json.dumps(metadata),
            "on_run_completed": on_run_completed,
            "next_run_at": next_run_at,
            "end_time": end_time,
            "enabled": enabled,
        },
    ).one()
    return row


def get_cron(conn: Connection, principal: Principal, cron_id: uuid.UUID) -> Row[Any]:
    """The cron if the principal may see it; 404 otherwise (also for someone else's)."""
    row = conn.execute(GET_SQL, {"id": cron_id, **_params(principal)}).first()
    if row is None:
        raise NotFoundError(f"no cron {cron_id}")
    return row


def search_crons(
    conn: Connection,
    principal: Principal,
    *,
    assistant_id: str | None = None,
    thread_id: uuid.UUID | None = None,
    enabled: bool | None = None,
    metadata: dict[str, Any] | None = None,
    limit: int = 10,
    offset: int = 0,
    sort_by: str = "created_at",
    sort_order: str = "desc",
) -> list[Row[Any]]:
    """The principal's crons matching every filter given."""
    column = SORT_COLUMNS[sort_by]
    direction = "ASC" if sort_order == "asc" else "DESC"
    sql = text(
        f"SELECT {COLUMNS} FROM crons{FILTERS}"
        f" ORDER BY {column} {direction} NULLS LAST, id LIMIT :limit OFFSET :offset"
    )
    params = _filters(principal, assistant_id, thread_id, enabled, metadata)
    return list(conn.execute(sql, {**params, "limit": limit, "offset": offset}))


def count_crons(
    conn: Connection,
    principal: Principal,
    *,
    assistant_id: str | None = None,
    thread_id: uuid.UUID | None = None,
    metadata: dict[str, Any] | None = None,
) -> int:
    params = _filters(principal, assistant_id, thread_id, None, metadata)
    return int(conn.execute(COUNT_SQL, params).scalar_one())


def _filters(
    principal: Principal,
    assistant_id: str | None,
    thread_id: uuid.UUID | None,
    enabled: bool | None,
    metadata: dict[str, Any] | None,
) -> dict[str, Any]:
    return {
        **_params(principal),
        "assistant_id": assistant_id,
        "thread_id": thread_id,
        "enabled": enabled,
        "metadata": json.dumps(metadata or {}),
    }


def update_cron(
    conn: Connection,
    principal: Principal,
    cron_id: uuid.UUID,
    *,
    cron: dict[str, Any],
    payload: dict[str, Any],
) -> Row[Any]:
    """Change a cron: ``cron`` holds new values of its own columns (schedule, timezone,
    end_time, enabled, metadata, on_run_completed), ``payload`` new run options.
    The next tick is computed afresh from now."""
    row = get_cron(conn, principal, cron_id)
    values = {
        "schedule": row.schedule,
        "timezone": row.timezone,
        "metadata": row.metadata,
        "on_run_completed": row.on_run_completed,
        "end_time": row.end_time,
        "enabled": row.enabled,
        **cron,
    }
    merged = {**row.payload, **payload}
    next_run_at = next_tick(
        values["schedule"], values["timezone"], datetime.now(UTC), values["end_time"]
    )
    return conn.execute(
        UPDATE_SQL,
        {
            **values,
            "id": row.id,
            "payload": json.dumps(merged),
            "metadata": json.dumps(values["metadata"]),
            "next_run_at": next_run_at,
        },
    ).one()


def delete_cron(conn: Connection, principal: Principal, cron_id: uuid.UUID) -> None:
    if conn.execute(DELETE_SQL, {"id": cron_id, **_params(principal)}).first() is None:
        raise NotFoundError(f"no cron {cron_id}")


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
