"""OpenAI-compatible chat: ``/v1/chat/completions`` (model = agent name) and the models list.

A conversation is continued when the request names it: the header
``X-Agentry-Conversation: <id>`` or ``metadata={"conversation_id": "<id>"}``. Then only
the last (user) message is sent to the agent; the conversation holds the history.
Without it a new conversation starts, seeded with the request's earlier messages;
every answer carries its id (header ``X-Agentry-Conversation`` and the body's
``conversation_id``). The same routes are served under ``/openai/v1`` too, where
``GET /openai/v1/models`` is always OpenAI-shaped (``/v1/models`` is the model
registry unless the caller is an OpenAI SDK; see :func:`is_openai_client`).
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Header, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from langchain_core.messages import HumanMessage, convert_to_messages
from pydantic import BaseModel, ConfigDict, Field

from core.api.deps import CurrentUser, RuntimeDep, SessionDep, SettingsDep
from core.api.problems import error_headers, problem
from core.api.sse import Event, sse_response
from core.auth.users import Principal
from core.conversations.store import create_conversation, get_conversation
from core.errors import AgentryError, ValidationFailed
from core.limits.buckets import take_turn
from core.protocols.threads import (
    ASSISTANT_KEY,
    append_messages,
    choose_agent,
    plain_text,
    resolve_agent,
)
from core.registry.access import usable_rows
from core.runtime.service import AgentRuntime
from core.runtime.turns import TurnEvent, run_turn


class OpenAIErrorRoute(APIRoute):
    """Problems carry an OpenAI ``error`` object too, so OpenAI clients show the detail."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def handle(request: Request) -> Response:
            try:
                return await handler(request)
            except AgentryError as exc:
                response = _error(exc.status, exc.title, exc.message)
                response.headers.update(error_headers(exc))
                return response
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body')}: {e.get('msg')}"
                    for e in exc.errors()
                )
                return _error(422, "Invalid request", detail)

        return handle


def _error(status: int, title: str, detail: str) -> Response:
    response = problem(
        status, title, detail, error={"message": detail, "type": title, "code": status}
    )
    if status == 401:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


router = APIRouter(prefix="/v1", tags=["openai-compatible"], route_class=OpenAIErrorRoute)
prefixed = APIRouter(prefix="/openai/v1", tags=["openai-compatible"], route_class=OpenAIErrorRoute)
HEADER = "X-Agentry-Conversation"
CHANNEL = "openai"
# Values of options that mean "the default" and so are honoured by ignoring them.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (None, 1),
    "stream_options": (None, {"include_usage": False}),
}


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[dict[str, Any]] | None = None


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = Field(min_length=1, max_length=100)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    metadata: dict[str, str] | None = None


def is_openai_client(request: Request) -> bool:
    """The official OpenAI SDKs (and clients built on them) send ``X-Stainless-*`` headers."""
    return any(h.lower().startswith("x-stainless-") for h in request.headers)


def models_json(session: SessionDep, user: Principal) -> dict[str, Any]:
    """Agents as an OpenAI model list (model id = agent name)."""
    rows = usable_rows(session.connection(), user)
    return {
        "object": "list",
        "data": [
            {
                "id": r.name,
                "object": "model",
                "created": int(r.created_at.timestamp()),
                "owned_by": "agentry",
            }
            for r in rows
        ],
    }


@prefixed.get("/models", summary="Agents as an OpenAI model list")
def list_models(user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    return models_json(session, user)


def _check(body: ChatRequest) -> None:
    for name, value in (body.model_extra or {}).items():
        if value not in NEUTRAL.get(name, (None,)):
            raise ValidationFailed(f"{name}: not supported by Agentry's chat completions")
    for i, message in enumerate(body.messages):
        if message.model_extra:
            field = next(iter(message.model_extra))
            raise ValidationFailed(f"messages[{i}].{field}: not supported")
    if body.messages[-1].role != "user":
        raise ValidationFailed("messages: the last message must be the user's")


def _conversation(
    runtime: AgentRuntime,
    user: Principal,
    body: ChatRequest,
    named: str | None,
) -> tuple[uuid.UUID, str]:
    """The conversation to continue (or a new one seeded with the history) and the
    user's new message."""
    spec = resolve_agent(runtime, user, body.model)
    raw = [m.model_dump(exclude_none=True) for m in body.messages]
    for message in raw:
        if message["role"] == "developer":
            message["role"] = "system"
    converted = convert_to_messages(raw)
    last = converted[-1]
    assert isinstance(last, HumanMessage)
    content = plain_text(last, f"messages[{len(raw) - 1}]")
    extra = {k: v for k, v in (body.metadata or {}).items() if k != "conversation_id"}
    if named:
        try:
            cid = uuid.UUID(named)
        except ValueError:
            raise ValidationFailed(f"conversation id {named!r} is not a UUID") from None
        with runtime.db.engine.begin() as conn:
            row = get_conversation(conn, user, cid)
            choose_agent(conn, row, spec.name)
        return cid, content
    with runtime.db.engine.begin() as conn:
        row = create_conversation(
            conn, user, spec.name, metadata={**extra, ASSISTANT_KEY: spec.name}, channel=CHANNEL
        )
    if len(raw) > 1:
        append_messages(runtime, user, row.id, raw[:-1])
    return row.id, content


def _answer(final: dict[str, Any]) -> str:
    replies = [m for m in final["messages"] if m["role"] == "assistant"]
    return replies[-1]["content"] if replies else ""


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


@router.post("/chat/completions", summary="OpenAI-compatible chat (model = agent name)")
@prefixed.post("/chat/completions", summary="OpenAI-compatible chat (model = agent name)")
def chat_completions(
    body: ChatRequest,
    user: CurrentUser,
    runtime: RuntimeDep,
    settings: SettingsDep,
    x_agentry_conversation: str | None = Header(default=None),
) -> Any:
    _check(body)
    named = x_agentry_conversation or (body.metadata or {}).get("conversation_id")
    cid, content = _conversation(runtime, user, body, named)
    take_turn(runtime.db, user, settings)
    turn = run_turn(runtime, user, cid, content, stream_tokens=body.stream)
    first = next(turn)  # refusals (409, 503) are still plain problem responses
    headers = {HEADER: str(cid)}
    created = int(time.time())
    if not body.stream:
        events = [first, *turn]
        final = events[-1].data
        tokens = sum(m.get("token_count") or 0 for m in final["messages"])
        return JSONResponse(
            {
                "id": _completion_id(),
                "object": "chat.completion",
                "created": created,
                "model": final["current_agent"],
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": _answer(final)},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 0, "completion_tokens": tokens, "total_tokens": tokens},
                "conversation_id": str(cid),
            },
            headers=headers,
        )
    return sse_response(
        _chunks(first, turn, body.model, created, cid),
        keepalive=settings.sse_keepalive,
        headers=headers,
    )


def _chunks(
    first: TurnEvent, turn: Iterator[TurnEvent], model: str, created: int, cid: uuid.UUID
) -> Iterator[Event]:
    completion = _completion_id()

    def chunk(delta: dict[str, Any], finish: str | None = None, agent: str = model) -> Event:
        data = {
            "id": completion,
            "object": "chat.completion.chunk",
            "created": created,
            "model": agent,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "conversation_id": str(cid),
        }
        return Event(data)

    yield chunk({"role": "assistant", "content": ""})
    agent = model
    try:
        for event in itertools.chain([first], turn):
            if event.type == "token":
                agent = event.data.get("agent") or agent
                yield chunk({"content": event.data["text"]}, agent=agent)
            elif event.type == "final":
                agent = event.data["current_agent"]
        yield chunk({}, "stop", agent)
    except AgentryError as exc:
        error = {"message": exc.message, "type": exc.title, "code": exc.status}
        yield Event({"error": error})
    yield Event("[DONE]")
