"""One check at the edge: a NUL character anywhere in the path, the query or a JSON
body answers 422 naming the field, on every route (PostgreSQL text cannot hold it).

A pure ASGI middleware: it buffers a JSON body to inspect it and hands the same
bytes on, so routes and streaming responses are untouched.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.api.problems import problem
from core.nul import NUL, find_nul


class RejectNulMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        field = _in_path_or_query(scope)
        if field is None and _is_json(scope):
            messages, body = await _read_body(receive)
            field = _in_body(body)
            receive = _replay(messages, receive)
        if field is None:
            await self.app(scope, receive, send)
            return
        detail = f"{field}: NUL characters (\\u0000) are not allowed"
        response = problem(
            422,
            "Invalid request",
            detail,
            errors=[{"field": field, "message": "NUL characters (\\u0000) are not allowed"}],
        )
        await response(scope, receive, send)


def _in_path_or_query(scope: Scope) -> str | None:
    path: str = scope.get("path", "")
    if NUL in path:
        segment = next(s for s in path.split("/") if NUL in s)
        return f"path ({segment.replace(NUL, '%00')!s})"
    query = scope.get("query_string", b"").decode("latin-1")
    for name, value in parse_qsl(query, keep_blank_values=True, encoding="utf-8", errors="replace"):
        if NUL in name or NUL in value:
            return f"query.{name.replace(NUL, '%00')}"
    return None


def _is_json(scope: Scope) -> bool:
    for key, value in scope.get("headers", ()):
        if key == b"content-type":
            kind = value.decode("latin-1").split(";")[0].strip().lower()
            return kind == "application/json" or kind.endswith("+json")
    # FastAPI reads a body without a content type as JSON too.
    return scope.get("method") in ("POST", "PUT", "PATCH", "DELETE")


async def _read_body(receive: Receive) -> tuple[list[Message], bytes]:
    messages: list[Message] = []
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return messages, b"".join(chunks)


def _in_body(body: bytes) -> str | None:
    # A raw NUL byte makes the JSON invalid (FastAPI answers 422 itself); only the
    # escape can smuggle one into a string.
    if b"\\u0000" not in body:
        return None
    try:
        decoded: Any = json.loads(body)
    except ValueError:
        return None
    return find_nul(decoded, "body")


def _replay(messages: list[Message], receive: Receive) -> Receive:
    pending = list(messages)

    async def replayed() -> Message:
        if pending:
            return pending.pop(0)
        return await receive()

    return replayed
