"""Refusing request bodies past ``AGENTRY_MAX_BODY_BYTES`` with 413, before they are read whole.

A pure ASGI middleware: a ``Content-Length`` past the limit is answered at once (nothing
of the body is read); a body without one (chunked) is counted as it arrives and refused
as soon as the count passes the limit. The app never sees more than the limit. Whatever
the app had begun to answer by then is replaced: the client gets the 413.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.observability.metrics import BODY_REFUSED

PROBLEM_JSON = b"application/problem+json"


class _TooLarge(Exception):
    """Raised into the app from ``receive`` when the body passed the limit."""


class BodyLimitMiddleware:
    """413 for bodies over ``limit`` bytes (``limits`` per path prefix win over it)."""

    def __init__(self, app: ASGIApp, limit: int, limits: dict[str, int] | None = None) -> None:
        self.app = app
        self.limit = limit
        self.limits = limits or {}

    def _limit_for(self, path: str) -> int:
        for prefix, limit in self.limits.items():
            if path == prefix or path.startswith(prefix + "/"):
                return limit
        return self.limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit_for(scope["path"])
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = -1
                if declared > limit:
                    await _refuse(send, limit)
                    return
                break
        seen = 0
        refused = False
        started = False

        async def counted_receive() -> Message:
            nonlocal seen, refused
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    raise _TooLarge
            return message

        async def guarded_send(message: Message) -> None:
            nonlocal started
            if refused:
                return  # the app's answer to the cut body (400, 500) is not what happened
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, counted_receive, guarded_send)
        except Exception:
            # _TooLarge, or whatever the app raised reading a cut body: the 413 below answers.
            if not refused:
                raise
        if refused and not started:
            await _refuse(send, limit)


async def _refuse(send: Send, limit: int) -> None:
    BODY_REFUSED.inc()
    body = json.dumps(
        {
            "type": "about:blank",
            "title": "Payload too large",
            "status": 413,
            "detail": f"the request body is larger than {limit} bytes (AGENTRY_MAX_BODY_BYTES)",
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", PROBLEM_JSON),
                (b"content-length", str(len(body)).encode()),
                # The rest of the body is not read: the connection cannot be reused.
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
