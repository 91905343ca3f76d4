"""``/v1/conversations``: sessions with agents, their messages, statistics and switches.

A user sees only their own conversations; admins see all. A foreign id answers
404, like a missing one.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import select

from config.settings import Settings
from core.api.deps import CurrentUser, RuntimeDep, SessionDep, SettingsDep
from core.api.sse import Event, sse_response
from core.auth.users import Principal
from core.conversations.messages import list_messages
from core.conversations.store import (
    conversation_json,
    conversation_stats,
    create_conversation,
    delete_conversation,
    get_conversation,
    list_conversations,
    list_switches,
)
from core.errors import AgentryError, ForbiddenError, PayloadTooLargeError, ValidationFailed
from core.limits.buckets import take_turn
from core.models import Agent, ConversationStatus
from core.registry.access import may_use
from core.registry.specs import AgentSpec
from core.runtime.control import TurnControl, is_resume_map
from core.runtime.service import AgentRuntime
from core.runtime.turns import TurnEvent, run_turn

log = logging.getLogger(__name__)
router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
DEFAULT_AGENT = "assistant"


class ConversationCreate(BaseModel):
    agent: str | None = Field(default=None, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)


class MessageCreate(BaseModel):
    content: str


class ResumeBody(BaseModel):
    """The person's answer to a paused turn: one ``decision``, or ``decisions`` by
    interrupt id when several wait."""

    model_config = ConfigDict(extra="forbid")

    decision: Any = None
    decisions: dict[str, Any] | None = None

    def control(self) -> TurnControl:
        if "decision" in self.model_fields_set and self.decision is None:
            raise ValidationFailed("decision: must not be null")
        if self.decisions is not None and self.decision is not None:
            raise ValidationFailed("decisions: give decision or decisions, not both")
        if self.decisions is not None:
            if not self.decisions:
                raise ValidationFailed("decisions: name at least one interrupt id")
            if not is_resume_map(self.decisions):
                raise ValidationFailed("decisions: keys must be interrupt ids")
            return TurnControl(resume=self.decisions)
        if self.decision is None:
            raise ValidationFailed("decision: required (or decisions)")
        return TurnControl(resume=self.decision)


def body_limit(request: Request, settings: SettingsDep) -> None:
    """413 before the body is parsed when its declared size is far above any valid message."""
    limit = settings.max_message_chars * 4 + 4096  # UTF-8 worst case plus JSON framing
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLargeError(
            f"request body of {declared} bytes is over the limit of {limit} bytes"
            f" (AGENTRY_MAX_MESSAGE_CHARS={settings.max_message_chars})"
        )


def _check_agent(session: SessionDep, name: str, user: Principal) -> None:
    row = (
        session.connection()
        .execute(select(Agent.spec).where(Agent.name == name, Agent.is_active.is_(True)))
        .first()
    )
    if row is None or not row.spec.get("system_prompt"):
        raise ValidationFailed(f"unknown agent {name!r}: see GET /v1/agents")
    if not may_use(user, AgentSpec.from_json({"name": name, **row.spec})):
        raise ForbiddenError(f"agent {name!r} is for admins")


@router.post("", status_code=201, summary="Start a conversation")
def create(body: ConversationCreate, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    agent = body.agent or DEFAULT_AGENT
    _check_agent(session, agent, user)
    return conversation_json(
        create_conversation(session.connection(), user, agent, metadata=body.metadata)
    )


@router.get("", summary="Conversations, newest first (cursor pagination)")
def list_all(
    user: CurrentUser,
    session: SessionDep,
    status: ConversationStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 20,
    cursor: str | None = None,
) -> dict[str, Any]:
    rows, next_cursor = list_conversations(
        session.connection(), user, status=status, limit=limit, after=cursor
    )
    return {"items": [conversation_json(r) for r in rows], "next_cursor": next_cursor}


@router.get("/{conversation_id}", summary="One conversation")
def get_one(conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return conversation_json(get_conversation(session.connection(), user, conversation_id))


@router.delete("/{conversation_id}", status_code=204, summary="Delete (soft)")
def delete(conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> None:
    delete_conversation(session.connection(), user, conversation_id)


@router.get("/{conversation_id}/messages", summary="Messages in order (cursor pagination)")
def messages(
    conversation_id: uuid.UUID,
    user: CurrentUser,
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: str | None = None,
) -> dict[str, Any]:
    conn = session.connection()
    get_conversation(conn, user, conversation_id)
    items, next_cursor = list_messages(conn, conversation_id, limit=limit, after=cursor)
    return {"items": items, "next_cursor": next_cursor}


@router.get("/{conversation_id}/stats", summary="Message count, tokens, last message time")
def stats(conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    conn = session.connection()
    return conversation_stats(conn, get_conversation(conn, user, conversation_id))


@router.get("/{conversation_id}/switches", summary="Agent switches (handoffs)")
def switches(
    conversation_id: uuid.UUID, user: CurrentUser, session: SessionDep
) -> list[dict[str, Any]]:
    conn = session.connection()
    get_conversation(conn, user, conversation_id)
    return list_switches(conn, conversation_id)


def _sse_events(first: TurnEvent, events: Iterator[TurnEvent]) -> Iterator[Event]:
    yield Event(first.data, first.type)
    try:
        for event in events:
            yield Event(event.data, event.type)
    except AgentryError as exc:
        yield Event({"status": exc.status, "title": exc.title, "detail": exc.message}, "error")
    except Exception:  # the trace goes to the log; the client gets a clean event
        log.exception("turn failed")
        yield Event(
            {
                "status": 500,
                "title": "Internal error",
                "detail": "the turn failed; see the server log",
            },
            "error",
        )


def _respond(request: Request, events: Iterator[TurnEvent], settings: Settings) -> Any:
    """SSE when asked for (``Accept: text/event-stream``), else one JSON answer."""
    if "text/event-stream" not in request.headers.get("accept", ""):
        collected = list(events)
        final = collected[-1].data
        return JSONResponse(
            {
                "messages": final["messages"],
                "current_agent": final["current_agent"],
                "messages_count": final["messages_count"],
                "resumed": any(e.type == "resumed" for e in collected),
                # Set when the turn paused for a person: answer with POST .../resume.
                "interrupts": final.get("interrupts"),
            }
        )
    # The first event is produced here, so a refusal (404, 409, 503) is still a
    # plain problem response, not a stream. A client that leaves stops the turn at
    # its next event (it stays pending, like a crashed one).
    first = next(events)
    return sse_response(_sse_events(first, events), keepalive=settings.sse_keepalive)


def _turn(
    request: Request,
    runtime: AgentRuntime,
    settings: Settings,
    user: Principal,
    cid: uuid.UUID,
    content: str | None,
    control: TurnControl | None = None,
) -> Any:
    streaming = "text/event-stream" in request.headers.get("accept", "")
    take_turn(runtime.db, user, settings)
    turn = run_turn(runtime, user, cid, content, stream_tokens=streaming, control=control)
    return _respond(request, turn, settings)


@router.post(
    "/{conversation_id}/messages",
    summary="Send a message and run one turn (JSON, or SSE with Accept: text/event-stream)",
    dependencies=[Depends(body_limit)],
)
def post_message(
    conversation_id: uuid.UUID,
    body: MessageCreate,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
) -> Any:
    content = body.content.strip()
    if not content:
        raise ValidationFailed("content: must not be empty")
    if len(content) > settings.max_message_chars:
        raise PayloadTooLargeError(
            f"content is {len(content)} characters; the limit is {settings.max_message_chars}"
            " (AGENTRY_MAX_MESSAGE_CHARS)"
        )
    return _turn(request, runtime, settings, user, conversation_id, content)


@router.post(
    "/{conversation_id}/resume",
    summary="Answer a paused turn ({decision}), or complete one cut short by a crash (no body)",
)
def resume(
    conversation_id: uuid.UUID,
    request: Request,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
    body: ResumeBody | None = None,
) -> Any:
    control = body.control() if body is not None else None
    return _turn(request, runtime, settings, user, conversation_id, None, control)
