"""Counting HTTP requests by route template, status and latency (a pure ASGI middleware).

The label is the matched route's template (``/v1/conversations/{conversation_id}``), read
from the scope after routing, never the raw path: ids in paths would make a new series per
request. Requests no route matched are counted under ``unmatched``.
"""

from __future__ import annotations

import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.observability.metrics import HTTP_LATENCY, HTTP_REQUESTS

UNMATCHED = "unmatched"
# Any other method (clients may send made-up ones) is counted as "other": bounded labels.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(scope: Scope) -> str:
    route: Any = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED


class MetricsMiddleware:
    """Observes every HTTP request once its response (or stream) has ended."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = [500]  # what the client gets when the app raises before answering

        async def observed_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, observed_send)
        finally:
            route = route_template(scope)
            method = scope["method"] if scope["method"] in METHODS else "other"
            HTTP_REQUESTS.labels(method, route, str(status[0])).inc()
            HTTP_LATENCY.labels(method, route).observe(time.perf_counter() - started)
