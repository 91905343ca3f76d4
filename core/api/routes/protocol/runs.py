"""Runs: ``/threads/{id}/runs...`` (stateful) and ``/runs...`` (stateless).

Thin translations over :mod:`core.runs`: a run is a row any process can read, join,
stream (its events are rows; the SSE id is the event's ``seq``) and cancel, run by
a worker of any process. One run at a time per thread; ``multitask_strategy`` says
what a second one does (reject: 409, enqueue, interrupt, rollback).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import Row

from config.settings import Settings
from core.api.deps import CurrentUser, DbDep, RuntimeDep, SessionDep, SettingsDep
from core.api.sse import Event, json_with_heartbeat, sse_response
from core.auth.users import Principal
from core.conversations.store import get_conversation
from core.db.engine import Database
from core.errors import ConflictError, ValidationFailed
from core.protocols.control import run_control
from core.protocols.runs import start_run
from core.protocols.translate import STREAM_MODES
from core.runs import RunService, cancel_run, store
from core.runs.events import read_after, wait_for_end
from core.runs.signals import RunSignals
from core.runs.store import outcome, run_json
from core.runs.webhooks import check_webhook
from core.runtime.service import AgentRuntime

router = APIRouter(tags=["agent protocol"])

# Options Agentry cannot honour: any value other than these defaults is a 422.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "checkpoint": (None,),
    "checkpoint_id": (None,),
    "checkpoint_during": (None,),
    "after_seconds": (None, 0),
    "feedback_keys": (None, []),
    "langsmith_tracer": (None,),
    "strict_resume": (None, False),
    "if_not_exists": (None, "reject"),
    "durability": (None, "sync"),
    "context": (None, {}),
}
# Human in the loop: read by core.protocols.control.run_control.
HITL_OPTIONS = ("command", "interrupt_before", "interrupt_after")


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    assistant_id: str = Field(min_length=1, max_length=100)
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    multitask_strategy: Literal["reject", "enqueue", "interrupt", "rollback"] | None = None
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    # Agentry graphs have no subgraphs: streaming them adds nothing, so both are honoured.
    stream_subgraphs: bool | None = None
    # Every run keeps its events: a stream can be rejoined (Last-Event-ID) while it runs.
    stream_resumable: bool | None = None
    # POSTed the finished run (core/runs/webhooks.py); only to allowed hosts.
    webhook: str | None = None


def _modes(body: RunCreate) -> list[str]:
    modes = [body.stream_mode] if isinstance(body.stream_mode, str) else list(body.stream_mode)
    for mode in modes:
        if mode not in STREAM_MODES:
            raise ValidationFailed(
                f"stream_mode: {mode!r} is not supported (supported: {', '.join(STREAM_MODES)})"
            )
    return modes


def _check(body: RunCreate, thread_id: uuid.UUID | None) -> list[str]:
    """422 naming the first option that is not supported."""
    extra = dict(body.model_extra or {})
    for name in HITL_OPTIONS:
        extra.pop(name, None)
    for name, accepted in UNSUPPORTED.items():
        value = extra.pop(name, None)
        if value not in accepted:
            raise ValidationFailed(f"{name}: {json.dumps(value)} is not supported by Agentry")
    for name, value in extra.items():
        if value is not None:
            raise ValidationFailed(f"{name}: option not supported by Agentry")
    for key, value in (body.config or {}).items():
        if key == "configurable":
            ours = {"thread_id": str(thread_id)} if thread_id else {}
            unknown = {k: v for k, v in (value or {}).items() if ours.get(k) != str(v)}
            if unknown:
                raise ValidationFailed(
                    f"config.configurable.{next(iter(unknown))}: not supported by Agentry"
                )
        elif value not in (None, [], {}):
            raise ValidationFailed(f"config.{key}: not supported by Agentry")
    if thread_id is not None and body.on_completion is not None:
        raise ValidationFailed("on_completion: only for stateless runs (POST /runs...)")
    return _modes(body)


def _body_run(
    request: Request,
    runtime: AgentRuntime,
    user: Principal,
    body: RunCreate,
    thread_id: uuid.UUID | None,
) -> Row[Any]:
    """Validate the body, then check and queue the run."""
    modes = _check(body, thread_id)
    check_webhook(body.webhook, runtime.settings)
    run = start_run(
        runtime,
        user,
        thread_id,
        body.assistant_id,
        body.input,
        stream_mode=modes,
        metadata=body.metadata,
        multitask_strategy=body.multitask_strategy or "reject",
        on_completion=body.on_completion,
        control=run_control(body.model_extra or {}),
        webhook=body.webhook,
    )
    # Committed: this process's workers look now (others hear the NOTIFY).
    _signals(request).work.set()
    return run


# Without the app's lifespan (no listener), tails fall back to polling.
_POLL_ONLY = RunSignals()


def _signals(request: Request) -> RunSignals:
    service: RunService | None = getattr(request.app.state, "runs", None)
    return _POLL_ONLY if service is None else service.signals


def run_path(run: Row[Any]) -> str:
    """Where a run is (``Content-Location``; stateless runs too have a thread)."""
    return f"/threads/{run.thread_id}/runs/{run.id}"


async def _run_events(
    db: Database, signals: RunSignals, run_id: uuid.UUID, start: int
) -> AsyncIterator[Event]:
    position = start - 1  # the last event sent
    while True:
        # Wait in a worker thread for the next events (the SSE helper sends keep-alives).
        events, ended = await run_in_threadpool(read_after, db, signals, run_id, position, 0.5)
        for seq, name, data in events:
            yield Event(data, name, seq)
            position = seq
        if ended and not events:
            return


def _canceller(db: Database, run: Row[Any]) -> Callable[[], None]:
    def cancel() -> None:
        with db.engine.begin() as conn:
            cancel_run(conn, run.id)

    return cancel


def _sse(
    request: Request,
    db: Database,
    settings: Settings,
    run: Row[Any],
    cancel_on_disconnect: bool,
    start: int = 0,
) -> Response:
    """The run's events from ``start`` on; ``Location`` is where a dropped client
    rejoins (the SDK reconnects there with ``Last-Event-ID``)."""
    return sse_response(
        _run_events(db, _signals(request), run.id, start),
        keepalive=settings.sse_keepalive,
        headers={"Location": f"{run_path(run)}/stream", "Content-Location": run_path(run)},
        on_disconnect=_canceller(db, run) if cancel_on_disconnect else None,
    )


def _wait(
    request: Request, db: Database, settings: Settings, run: Row[Any], on_disconnect: str | None
) -> Response:
    """The run's final values once it ends; newlines keep the connection open meanwhile.
    A client that leaves cancels the run unless it asked ``on_disconnect="continue"``."""
    signals = _signals(request)
    return json_with_heartbeat(
        lambda: outcome(wait_for_end(db, signals, run.thread_id, run.id)),
        interval=settings.sse_keepalive,
        headers={"Location": f"{run_path(run)}/join", "Content-Location": run_path(run)},
        on_disconnect=_canceller(db, run) if (on_disconnect or "cancel") == "cancel" else None,
    )


def _created(run: Row[Any]) -> JSONResponse:
    return JSONResponse(run_json(run), headers={"Content-Location": run_path(run)})


# --- stateful runs ---------------------------------------------------------------


@router.post("/threads/{thread_id}/runs", summary="Start a run in the background")
def create(
    thread_id: uuid.UUID, body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep
) -> JSONResponse:
    if body.on_disconnect is not None:
        raise ValidationFailed("on_disconnect: only for streamed or waited runs")
    return _created(_body_run(request, runtime, user, body, thread_id))


@router.post("/threads/{thread_id}/runs/stream", summary="Run and stream its events (SSE)")
def stream(
    thread_id: uuid.UUID,
    body: RunCreate,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> Response:
    run = _body_run(request, runtime, user, body, thread_id)
    return _sse(request, runtime.db, settings, run, (body.on_disconnect or "cancel") == "cancel")


@router.post("/threads/{thread_id}/runs/wait", summary="Run and answer the final values")
def wait(
    thread_id: uuid.UUID,
    body: RunCreate,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> Response:
    run = _body_run(request, runtime, user, body, thread_id)
    return _wait(request, runtime.db, settings, run, body.on_disconnect)


@router.get("/threads/{thread_id}/runs", summary="The thread's runs, newest first")
def list_runs(
    thread_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: int = Query(default=10, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    status: str | None = None,
) -> list[dict[str, Any]]:
    conn = session.connection()
    get_conversation(conn, user, thread_id)
    rows = store.list_runs(conn, thread_id, limit=limit, offset=offset, status=status)
    return [run_json(r) for r in rows]


def _run(user: Principal, db: Database, tid: uuid.UUID, rid: uuid.UUID) -> Row[Any]:
    """The run, if the caller may see its thread (a short connection: callers may wait)."""
    with db.engine.connect() as conn:
        get_conversation(conn, user, tid)
        return store.get_run(conn, tid, rid)


@router.get("/threads/{thread_id}/runs/{run_id}", summary="One run")
def get_run(
    thread_id: uuid.UUID, run_id: uuid.UUID, user: CurrentUser, db: DbDep
) -> dict[str, Any]:
    return run_json(_run(user, db, thread_id, run_id))


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run; its final values")
def join(
    thread_id: uuid.UUID,
    run_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
) -> Response:
    run = _run(user, db, thread_id, run_id)
    return _wait(request, db, settings, run, "continue")  # leaving a join never cancels


@router.get("/threads/{thread_id}/runs/{run_id}/stream", summary="Join a run's stream (SSE)")
def join_stream(
    thread_id: uuid.UUID,
    run_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    db: DbDep,
    settings: SettingsDep,
    cancel_on_disconnect: bool = False,
    stream_mode: list[str] | None = Query(default=None),
    last_event_id: str | None = Header(default=None),
) -> Response:
    run = _run(user, db, thread_id, run_id)
    # httpx sends an absent (None) stream_mode as an empty value.
    extra = {m for m in stream_mode or [] if m} - set(run.kwargs.get("stream_mode") or [])
    if extra:
        raise ValidationFailed(
            f"stream_mode: {sorted(extra)[0]!r} was not requested when the run started"
        )
    try:
        start = int(last_event_id) + 1 if last_event_id else 0
    except ValueError:
        raise ValidationFailed("Last-Event-ID: must be an event id of this run") from None
    return _sse(request, db, settings, run, cancel_on_disconnect, max(start, 0))


@router.post("/threads/{thread_id}/runs/{run_id}/cancel", summary="Cancel a run")
def cancel(
    thread_id: uuid.UUID,
    run_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    db: DbDep,
    wait: int | bool = False,
    action: str = "interrupt",
) -> Response:
    if action not in ("interrupt", "rollback"):
        raise ValidationFailed(f"action: {action!r} is not supported (interrupt or rollback)")
    run = _run(user, db, thread_id, run_id)
    with db.engine.begin() as conn:
        cancel_run(conn, run.id, action)
    if wait:
        ended = wait_for_end(db, _signals(request), thread_id, run_id)
        return Response(
            status_code=200, content=json.dumps(run_json(ended)), media_type="application/json"
        )
    return Response(status_code=202)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, summary="Delete a run")
def delete_run(thread_id: uuid.UUID, run_id: uuid.UUID, user: CurrentUser, db: DbDep) -> Response:
    run = _run(user, db, thread_id, run_id)
    if run.status not in store.FINISHED:
        raise ConflictError("the run is still going: cancel it first")
    with db.engine.begin() as conn:
        store.delete_run(conn, run.id)
    return Response(status_code=204)


# --- stateless runs ---------------------------------------------------------------


@router.post("/runs", summary="Start a stateless run in the background")
def create_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep
) -> JSONResponse:
    if body.on_disconnect is not None:
        raise ValidationFailed("on_disconnect: only for streamed or waited runs")
    return _created(_body_run(request, runtime, user, body, None))


@router.post("/runs/stream", summary="Stateless run, streamed (SSE)")
def stream_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep, settings: SettingsDep
) -> Response:
    run = _body_run(request, runtime, user, body, None)
    return _sse(request, runtime.db, settings, run, (body.on_disconnect or "cancel") == "cancel")


@router.post("/runs/wait", summary="Stateless run; the final values")
def wait_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep, settings: SettingsDep
) -> Response:
    run = _body_run(request, runtime, user, body, None)
    return _wait(request, runtime.db, settings, run, body.on_disconnect)
