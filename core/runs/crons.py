"""Crons: schedules that start an ordinary run at every tick (the ``crons`` table).

A cron is a row of ``crons``: a standard cron expression read in an IANA timezone
(UTC by default), the run's options (``payload``) and the next tick
(``next_run_at``, UTC). The ticks are fired by :mod:`core.runs.scheduler`.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterError, croniter
from sqlalchemy import Connection, Row, text

from core.auth.users import Principal
from core.errors import NotFoundError, ValidationFailed

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
