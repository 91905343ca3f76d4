"""Conversations: list, open, chat (streamed), resume, approve or refuse a pending tool call.

Every page calls the REST route functions of :mod:`core.api.routes.conversations` with
the signed-in user, so the console shows and does exactly what the API lets that user
see and do. The chat script posts to the ``/turn`` and ``/resume`` routes here and reads
the same SSE stream as ``POST /v1/conversations/{id}/messages``.
"""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Body, Depends, Form, Query, Request, Response

from core.api.deps import RuntimeDep, SessionDep, SettingsDep
from core.api.routes import conversations as rest
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, check_csrf, redirect, render
from core.errors import ValidationFailed
from core.models import ConversationStatus
from core.registry.access import usable_rows

router = APIRouter(
    prefix=f"{PREFIX}/conversations",
    route_class=ConsoleRoute,
    include_in_schema=False,
    dependencies=[Depends(check_csrf)],
)
TRANSCRIPT_LIMIT = 500


@router.get("")
def index(
    request: Request,
    user: ConsoleUser,
    session: SessionDep,
    status: str = Query(default="", max_length=20),
    cursor: str | None = None,
) -> Response:
    statuses = [s.value for s in ConversationStatus]
    if status and status not in statuses:
        raise ValidationFailed(f"status: one of {', '.join(statuses)}")
    wanted = ConversationStatus(status) if status else None  # the form's "any" is empty
    page = rest.list_all(user, session, status=wanted, limit=20, cursor=cursor)
    agents = [r.name for r in usable_rows(session.connection(), user)]
    return render(
        request,
        "conversations.html",
        conversations=page["items"],
        next_cursor=page["next_cursor"],
        status=status,
        statuses=statuses,
        agents=agents,
        default_agent=rest.DEFAULT_AGENT,
    )


@router.post("")
def create(
    request: Request, user: ConsoleUser, session: SessionDep, agent: str = Form(max_length=100)
) -> Response:
    made = rest.create(rest.ConversationCreate(agent=agent), user, session)
    return redirect(f"{PREFIX}/conversations/{made['id']}", request)


def _transcript(user: Any, session: Any, conversation_id: uuid.UUID) -> dict[str, Any]:
    conversation = rest.get_one(conversation_id, user, session)
    page = rest.messages(conversation_id, user, session, limit=TRANSCRIPT_LIMIT, cursor=None)
    return {"conversation": conversation, "messages": page["items"]}


@router.get("/{conversation_id}")
def show(
    conversation_id: uuid.UUID, request: Request, user: ConsoleUser, session: SessionDep
) -> Response:
    return render(request, "conversation.html", **_transcript(user, session, conversation_id))


@router.get("/{conversation_id}/transcript")
def transcript(
    conversation_id: uuid.UUID, request: Request, user: ConsoleUser, session: SessionDep
) -> Response:
    """The messages and what the turn waits on: the chat script swaps it in after a turn."""
    return render(request, "transcript.html", **_transcript(user, session, conversation_id))


@router.post("/{conversation_id}/turn")
def turn(
    conversation_id: uuid.UUID,
    request: Request,
    user: ConsoleUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
    body: rest.MessageCreate = Body(),
) -> Any:
    rest.body_limit(request, settings)
    return rest.post_message(conversation_id, body, request, user, runtime, settings)


@router.post("/{conversation_id}/resume")
def resume(
    conversation_id: uuid.UUID,
    request: Request,
    user: ConsoleUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
    body: rest.ResumeBody | None = Body(default=None),
) -> Any:
    """A decision on a pending tool call, or (no body) completing an interrupted turn."""
    return rest.resume(conversation_id, request, user, runtime, settings, body)


@router.post("/{conversation_id}/delete")
def delete(
    conversation_id: uuid.UUID, request: Request, user: ConsoleUser, session: SessionDep
) -> Response:
    rest.delete(conversation_id, user, session)
    return redirect(f"{PREFIX}/conversations", request)
