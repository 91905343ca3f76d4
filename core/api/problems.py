"""Errors at the HTTP edge: every failure is an RFC 9457 problem document."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.api.gaps import SUPPORT_TABLE, operation
from core.db.errors import DRIVER_ERRORS, bad_value, database_unavailable
from core.errors import AgentryError, RateLimited

log = logging.getLogger(__name__)

PROBLEM_JSON = "application/problem+json"


def problem(status: int, title: str, detail: str, **extra: Any) -> JSONResponse:
    """A problem response with the given status, title and detail."""
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON)


def error_headers(exc: AgentryError) -> dict[str, str]:
    """The headers a domain error's response carries (every route's, OpenAI's too)."""
    if isinstance(exc, RateLimited):
        return {"Retry-After": str(exc.retry_after)}
    if exc.status == 401:
        return {"WWW-Authenticate": "Bearer"}
    return {}


# What Starlette's router raises when no route serves a request.
ROUTING_DETAILS = ("Not Found", "Method Not Allowed")


def _unrouted(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """No silent gaps: name the operation (501 for an SDK operation Agentry does not
    serve, see :mod:`core.api.gaps`), never a bare 404 or 405."""
    method, path = request.method, request.url.path
    name = operation(method, path)
    if name is not None:
        detail = f"{name} ({method} {path}) is not supported by Agentry; {SUPPORT_TABLE}"
        return problem(501, "Not supported", detail, operation=name)
    if exc.status_code == 405:
        response = problem(405, "Method not allowed", f"{method} {path}: not served here")
        response.headers.update(exc.headers or {})
        return response
    return problem(exc.status_code, "Not found", f"{method} {path}: no such operation")


def _validation_detail(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body") or "body"
        errors.append({"field": where, "message": err.get("msg", "invalid")})
    summary = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
    return summary, errors


def install_problem_handlers(app: FastAPI) -> None:
    """Map domain errors, validation errors and the unexpected to problem responses."""

    @app.exception_handler(AgentryError)
    async def _domain(request: Request, exc: AgentryError) -> JSONResponse:
        extra = {"retry_after": exc.retry_after} if isinstance(exc, RateLimited) else {}
        response = problem(exc.status, exc.title, exc.message, **extra)
        response.headers.update(error_headers(exc))
        return response

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        summary, errors = _validation_detail(exc)
        return problem(422, "Invalid request", summary, errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.detail in ROUTING_DETAILS:
            return _unrouted(request, exc)
        return problem(exc.status_code, str(exc.detail), str(exc.detail))

    async def _driver(request: Request, exc: Exception) -> JSONResponse:
        refused = bad_value(exc)
        if refused is not None:
            return problem(refused.status, refused.title, refused.message)
        lost = database_unavailable(exc)
        if lost is None:
            return await _unexpected(request, exc)
        log.warning("database unavailable on %s %s: %s", request.method, request.url.path, exc)
        return problem(lost.status, lost.title, lost.message)

    for kind in DRIVER_ERRORS:
        app.add_exception_handler(kind, _driver)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The trace goes to the server log, never to the client.
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return problem(500, "Internal error", "an unexpected error occurred; see the server log")
