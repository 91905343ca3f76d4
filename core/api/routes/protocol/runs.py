"""Runs: ``/threads/{id}/runs...`` (stateful) and ``/runs...`` (stateless).

A run is one turn of the runtime (see :mod:`core.protocols.runs`). One run at a
time per thread (``multitask_strategy`` ``reject``): a second one gets 409.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from config.settings import Settings
from core.api.deps import CurrentUser, DbDep, RuntimeDep, SessionDep, SettingsDep
from core.api.routes.protocol.threads import CHANNEL, run_registry
from core.api.sse import Event, json_with_heartbeat, sse_response
from core.auth.users import Principal
from core.conversations.store import create_conversation, delete_conversation, get_conversation
from core.errors import AgentryError, ConflictError, ValidationFailed
from core.protocols.runs import Run, launch
from core.protocols.threads import (
    ASSISTANT_KEY,
    choose_agent,
    input_text,
    resolve_agent,
    thread_config,
)
from core.protocols.translate import GRAPH_MODES, STREAM_MODES, TOKEN_MODES, Translator
from core.runtime.service import AgentRuntime
from core.runtime.turns import run_turn

router = APIRouter(tags=["agent protocol"])

# Options Agentry cannot honour: any value other than these defaults is a 422.
UNSUPPORTED: dict[str, tuple[Any, ...]] = {
    "command": (None,),
    "interrupt_before": (None, []),
    "interrupt_after": (None, []),
    "webhook": (None,),
    "checkpoint": (None,),
    "checkpoint_id": (None,),
    "checkpoint_during": (None,),
    "after_seconds": (None, 0),
    "feedback_keys": (None, []),
    "langsmith_tracer": (None,),
    "strict_resume": (None, False),
    "multitask_strategy": (None, "reject"),
    "if_not_exists": (None, "reject"),
    "durability": (None, "sync"),
    "context": (None, {}),
}


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="allow")

    assistant_id: str = Field(min_length=1, max_length=100)
    input: Any = None
    metadata: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    stream_mode: str | list[str] = "values"
    on_disconnect: Literal["cancel", "continue"] | None = None
    on_completion: Literal["delete", "keep"] | None = None
    # Agentry graphs have no subgraphs: streaming them adds nothing, so both are honoured.
    stream_subgraphs: bool | None = None
    # Every run keeps its events: a stream can be rejoined (Last-Event-ID) while it runs.
    stream_resumable: bool | None = None


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


def start_run(
    request: Request,
    user: Principal,
    runtime: AgentRuntime,
    body: RunCreate,
    thread_id: uuid.UUID | None,
) -> Run:
    """Validate, pick or make the thread, take the turn's first step, run the rest."""
    modes = _check(body, thread_id)
    content = input_text(body.input)
    spec = resolve_agent(runtime, user, body.assistant_id)
    with runtime.db.engine.begin() as conn:
        if thread_id is None:
            if content is None:
                raise ValidationFailed("input: a stateless run needs a user message")
            row = create_conversation(
                conn,
                user,
                spec.name,
                metadata={"graph_id": spec.name, ASSISTANT_KEY: spec.name, "stateless": True},
                channel=CHANNEL,
            )
        else:
            row = get_conversation(conn, user, thread_id)
            choose_agent(conn, row, spec.name)
    values = (
        {}
        if thread_id is None
        else runtime.compiled().graph.get_state(thread_config(row.id)).values
    )
    run = Run(
        run_id=uuid.uuid4(),
        thread_id=row.id,
        owner_id=row.user_id,
        assistant_id=spec.name,
        stream_modes=modes,
        metadata=body.metadata or {},
        kwargs={"input": body.input, "stream_mode": modes},
    )
    if thread_id is None and body.on_completion != "keep":
        run.on_finish = lambda r: _forget(runtime, user, r.thread_id)
    tokens = any(m in TOKEN_MODES for m in modes)
    graph_modes = [m for m in modes if m in GRAPH_MODES]
    turn = run_turn(
        runtime, user, row.id, content, stream_tokens=tokens, raw=True, graph_modes=graph_modes
    )
    try:
        translator = Translator(run.run_id, run.thread_id, modes, values or {})
        launch(run_registry(request), run, turn, translator, body.input)
    except AgentryError:
        if thread_id is None:
            _forget(runtime, user, row.id)
        raise
    return run


def _forget(runtime: AgentRuntime, user: Principal, conversation_id: uuid.UUID) -> None:
    """A stateless run's conversation is deleted when it ends (``on_completion`` delete)."""
    with runtime.db.engine.begin() as conn:
        delete_conversation(conn, user, conversation_id)


def run_path(run: Run) -> str:
    """Where a run is (``Content-Location``; stateless runs too have a thread)."""
    return f"/threads/{run.thread_id}/runs/{run.run_id}"


async def _run_events(run: Run, start: int) -> AsyncIterator[Event]:
    position = start
    while True:
        # Wait in a worker thread for the next events (the SSE helper sends keep-alives).
        events, ended = await run_in_threadpool(run.batch, position, 5.0)
        for name, data in events:
            yield Event(data, name, position)
            position += 1
        if ended and not events:
            return


def _sse(run: Run, settings: Settings, cancel_on_disconnect: bool, start: int = 0) -> Response:
    """The run's events from ``start`` on; ``Location`` is where a dropped client
    rejoins (the SDK reconnects there with ``Last-Event-ID``)."""
    return sse_response(
        _run_events(run, start),
        keepalive=settings.sse_keepalive,
        headers={"Location": f"{run_path(run)}/stream", "Content-Location": run_path(run)},
        on_disconnect=run.cancel.set if cancel_on_disconnect else None,
    )


def _wait(run: Run, settings: Settings, on_disconnect: str | None) -> Response:
    """The run's final values once it ends; newlines keep the connection open meanwhile."""

    def outcome() -> dict[str, Any]:
        run.wait()
        return run.outcome()

    return json_with_heartbeat(
        outcome,
        interval=settings.sse_keepalive,
        headers={"Location": f"{run_path(run)}/join", "Content-Location": run_path(run)},
        on_disconnect=run.cancel.set if (on_disconnect or "cancel") == "cancel" else None,
    )


def _created(run: Run) -> JSONResponse:
    return JSONResponse(run.json(), headers={"Content-Location": run_path(run)})


# --- stateful runs ---------------------------------------------------------------


@router.post("/threads/{thread_id}/runs", summary="Start a run in the background")
def create(
    thread_id: uuid.UUID, body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep
) -> JSONResponse:
    if body.on_disconnect is not None:
        raise ValidationFailed("on_disconnect: only for streamed or waited runs")
    return _created(start_run(request, user, runtime, body, thread_id))


@router.post("/threads/{thread_id}/runs/stream", summary="Run and stream its events (SSE)")
def stream(
    thread_id: uuid.UUID,
    body: RunCreate,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> Response:
    run = start_run(request, user, runtime, body, thread_id)
    return _sse(run, settings, (body.on_disconnect or "cancel") == "cancel")


@router.post("/threads/{thread_id}/runs/wait", summary="Run and answer the final values")
def wait(
    thread_id: uuid.UUID,
    body: RunCreate,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> Response:
    run = start_run(request, user, runtime, body, thread_id)
    return _wait(run, settings, body.on_disconnect)


@router.get("/threads/{thread_id}/runs", summary="The thread's runs (this process), newest first")
def list_runs(
    thread_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    session: SessionDep,
    limit: int = Query(default=10, ge=1, le=1000),
    offset: int = Query(default=0, ge=0),
    status: str | None = None,
) -> list[dict[str, Any]]:
    get_conversation(session.connection(), user, thread_id)
    runs = [
        r
        for r in run_registry(request).of_thread(thread_id)
        if status is None or r.status == status
    ]
    return [r.json() for r in runs[offset : offset + limit]]


def _run(request: Request, user: Principal, db: DbDep, tid: uuid.UUID, rid: uuid.UUID) -> Run:
    """The run, if the caller may see its thread (a short connection: callers may wait)."""
    with db.engine.connect() as conn:
        get_conversation(conn, user, tid)
    return run_registry(request).get(tid, rid)


@router.get("/threads/{thread_id}/runs/{run_id}", summary="One run")
def get_run(
    thread_id: uuid.UUID, run_id: uuid.UUID, request: Request, user: CurrentUser, db: DbDep
) -> dict[str, Any]:
    return _run(request, user, db, thread_id, run_id).json()


@router.get("/threads/{thread_id}/runs/{run_id}/join", summary="Wait for a run; its final values")
def join(
    thread_id: uuid.UUID, run_id: uuid.UUID, request: Request, user: CurrentUser, db: DbDep
) -> dict[str, Any]:
    run = _run(request, user, db, thread_id, run_id)
    run.wait()
    return run.outcome()


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
    run = _run(request, user, db, thread_id, run_id)
    # httpx sends an absent (None) stream_mode as an empty value.
    extra = {m for m in stream_mode or [] if m} - set(run.stream_modes)
    if extra:
        raise ValidationFailed(
            f"stream_mode: {sorted(extra)[0]!r} was not requested when the run started"
        )
    try:
        start = int(last_event_id) + 1 if last_event_id else 0
    except ValueError:
        raise ValidationFailed("Last-Event-ID: must be an event id of this run") from None
    return _sse(run, settings, cancel_on_disconnect, max(start, 0))


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
    if action != "interrupt":
        raise ValidationFailed(f"action: {action!r} is not supported (only 'interrupt')")
    run = _run(request, user, db, thread_id, run_id)
    run.cancel.set()
    if wait:
        run.wait()
        return Response(
            status_code=200, content=json.dumps(run.json()), media_type="application/json"
        )
    return Response(status_code=202)


@router.delete("/threads/{thread_id}/runs/{run_id}", status_code=204, summary="Forget a run")
def delete_run(
    thread_id: uuid.UUID, run_id: uuid.UUID, request: Request, user: CurrentUser, db: DbDep
) -> Response:
    run = _run(request, user, db, thread_id, run_id)
    if not run.done:
        raise ConflictError("the run is still going: cancel it first")
    run_registry(request).forget(run.run_id)
    return Response(status_code=204)


# --- stateless runs ---------------------------------------------------------------


@router.post("/runs", summary="Start a stateless run in the background")
def create_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep
) -> JSONResponse:
    if body.on_disconnect is not None:
        raise ValidationFailed("on_disconnect: only for streamed or waited runs")
    return _created(start_run(request, user, runtime, body, None))


@router.post("/runs/stream", summary="Stateless run, streamed (SSE)")
def stream_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep, settings: SettingsDep
) -> Response:
    run = start_run(request, user, runtime, body, None)
    return _sse(run, settings, (body.on_disconnect or "cancel") == "cancel")


@router.post("/runs/wait", summary="Stateless run; the final values")
def wait_stateless(
    body: RunCreate, request: Request, user: CurrentUser, runtime: RuntimeDep, settings: SettingsDep
) -> Response:
    run = start_run(request, user, runtime, body, None)
    return _wait(run, settings, body.on_disconnect)
