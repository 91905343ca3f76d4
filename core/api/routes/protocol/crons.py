"""Crons: ``/runs/crons...`` and ``/threads/{id}/runs/crons`` (``langgraph_sdk`` ``client.crons``).

A cron's runs are ordinary runs with the options given at create (checked then,
like a run's); the logic is in :mod:`core.runs.crons`.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Literal

import pydantic
from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Connection

from config import Settings
from core.api.deps import CurrentUser, RuntimeDep, SessionDep
from core.api.routes.protocol.runs import RunCreate, _check
from core.auth.users import Principal
from core.conversations.store import get_conversation
from core.errors import ValidationFailed
from core.protocols.control import run_control
from core.protocols.threads import input_text, resolve_agent
from core.runs import crons
from core.runs.webhooks import check_webhook
from core.runtime.service import AgentRuntime

router = APIRouter(tags=["agent protocol"])

# Options of a run that make no sense for a cron's runs: nobody is there to stream,
# and there is no paused turn to resume.
NOT_FOR_CRONS = ("on_disconnect", "on_completion", "command")


class CronCreate(BaseModel):
    """The cron's own fields; every other field is an option of its runs (as for a run)."""

    model_config = ConfigDict(extra="allow")

    assistant_id: str = Field(min_length=1, max_length=100)
    schedule: str = Field(min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=100)
    end_time: datetime | None = None
    enabled: bool = True
    on_run_completed: Literal["delete", "keep"] | None = None
    metadata: dict[str, Any] | None = None


class CronUpdate(BaseModel):
    model_config = ConfigDict(extra="allow")

    schedule: str | None = Field(default=None, min_length=1, max_length=200)
    timezone: str | None = Field(default=None, max_length=100)
    end_time: datetime | None = None
    enabled: bool | None = None
    on_run_completed: Literal["delete", "keep"] | None = None
    metadata: dict[str, Any] | None = None


class CronSearch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: str | None = None
    thread_id: uuid.UUID | None = None
    enabled: bool | None = None
    metadata: dict[str, Any] | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0)
    sort_by: Literal[tuple(crons.SORT_COLUMNS)] = "created_at"  # type: ignore[valid-type]
    sort_order: Literal["asc", "desc"] = "desc"
    select: list[Literal[crons.FIELDS]] | None = None  # type: ignore[valid-type]


class CronCount(BaseModel):
    model_config = ConfigDict(extra="forbid")

    assistant_id: str | None = None
    thread_id: uuid.UUID | None = None
    metadata: dict[str, Any] | None = None


def _utc(moment: datetime | None) -> datetime | None:
    """A naive end time is read as UTC."""
    if moment is not None and moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment


def _run_options(
    payload: dict[str, Any], assistant_id: str, thread_id: uuid.UUID | None, settings: Settings
) -> RunCreate:
    """The cron's run options checked as a run's would be (422 naming the field)."""
    for name in NOT_FOR_CRONS:
        if payload.get(name) is not None:
            raise ValidationFailed(f"{name}: not an option of a cron's runs")
    try:
        body = RunCreate.model_validate({**payload, "assistant_id": assistant_id})
    except pydantic.ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise ValidationFailed(f"{where}: {first['msg']}") from None
    _check(body, thread_id)
    run_control(body.model_extra or {})  # interrupt_before/after: checked, kept in payload
    check_webhook(body.webhook, settings)
    if input_text(body.input) is None:
        raise ValidationFailed("input: a cron's runs need a user message ({'messages': [...]})")
    return body


def _create(
    conn: Connection,
    user: Principal,
    runtime: AgentRuntime,
    body: CronCreate,
    thread_id: uuid.UUID | None,
) -> dict[str, Any]:
    if thread_id is not None:
        get_conversation(conn, user, thread_id)
        if body.on_run_completed is not None:
            raise ValidationFailed("on_run_completed: only for stateless crons (POST /runs/crons)")
    resolve_agent(runtime, user, body.assistant_id)
    payload = {k: v for k, v in (body.model_extra or {}).items() if v is not None}
    if body.metadata is not None:
        payload["metadata"] = body.metadata
    _run_options(payload, body.assistant_id, thread_id, runtime.settings)
    row = crons.create_cron(
        conn,
        user,
        assistant_id=body.assistant_id,
        thread_id=thread_id,
        schedule=body.schedule,
        timezone=body.timezone,
        payload=payload,
        metadata=body.metadata or {},
        on_run_completed=body.on_run_completed,
        end_time=_utc(body.end_time),
        enabled=body.enabled,
    )
    return crons.cron_json(row)


@router.post("/runs/crons", summary="Create a stateless cron (a new thread at every tick)")
def create_stateless(
    body: CronCreate, user: CurrentUser, runtime: RuntimeDep, session: SessionDep
) -> dict[str, Any]:
    return _create(session.connection(), user, runtime, body, None)


@router.post("/threads/{thread_id}/runs/crons", summary="Create a cron on a thread")
def create_for_thread(
    thread_id: uuid.UUID,
    body: CronCreate,
    user: CurrentUser,
    runtime: RuntimeDep,
    session: SessionDep,
) -> dict[str, Any]:
    return _create(session.connection(), user, runtime, body, thread_id)


@router.post("/runs/crons/search", summary="Search the caller's crons")
def search(body: CronSearch, user: CurrentUser, session: SessionDep) -> list[dict[str, Any]]:
    rows = crons.search_crons(
        session.connection(),
        user,
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        enabled=body.enabled,
        metadata=body.metadata,
        limit=body.limit,
        offset=body.offset,
        sort_by=body.sort_by,
        sort_order=body.sort_order,
    )
    return [crons.cron_json(row, body.select) for row in rows]


@router.post("/runs/crons/count", summary="Count the caller's crons")
def count(body: CronCount, user: CurrentUser, session: SessionDep) -> int:
    return crons.count_crons(
        session.connection(),
        user,
        assistant_id=body.assistant_id,
        thread_id=body.thread_id,
        metadata=body.metadata,
    )


@router.patch("/runs/crons/{cron_id}", summary="Change a cron (the next tick is recomputed)")
def update(
    cron_id: uuid.UUID,
    body: CronUpdate,
    user: CurrentUser,
    runtime: RuntimeDep,
    session: SessionDep,
) -> dict[str, Any]:
    conn = session.connection()
    row = crons.get_cron(conn, user, cron_id)
    given = body.model_fields_set
    changes: dict[str, Any] = {k: getattr(body, k) for k in given if k in CronUpdate.model_fields}
    for name in ("schedule", "enabled"):
        if name in changes and changes[name] is None:
            raise ValidationFailed(f"{name}: cannot be null")
    if "end_time" in changes:
        changes["end_time"] = _utc(changes["end_time"])
    if changes.get("on_run_completed") is not None and row.thread_id is not None:
        raise ValidationFailed("on_run_completed: only for stateless crons")
    payload = {k: v for k, v in (body.model_extra or {}).items() if v is not None}
    if body.metadata is not None:
        payload["metadata"] = body.metadata
    else:
        changes.pop("metadata", None)
    _run_options({**row.payload, **payload}, row.assistant_id, row.thread_id, runtime.settings)
    updated = crons.update_cron(conn, user, cron_id, cron=changes, payload=payload)
    return crons.cron_json(updated)


@router.delete("/runs/crons/{cron_id}", status_code=204, summary="Delete a cron")
def delete(cron_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> Response:
    crons.delete_cron(session.connection(), user, cron_id)
    return Response(status_code=204)
