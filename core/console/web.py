"""What every console page shares: templates, the signed-in user, CSRF, errors as pages.

The console signs in with an API key and keeps it in an HttpOnly, SameSite=Strict cookie
scoped to ``/console``: page scripts never see it, and other sites' pages cannot send it.
Every state-changing request also carries a CSRF token (a form field, or the
``X-CSRF-Token`` header htmx and the chat script send), an HMAC of the key: a page
of another origin cannot read it, so it cannot forge one. The user behind the key is
found by the REST API's own ``get_current_user``, so whatever it checks holds here too.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import Depends, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials
from fastapi.templating import Jinja2Templates

from core.api.deps import DbDep, get_current_user
from core.auth.users import Principal
from core.db.engine import Database
from core.errors import AgentryError, AuthError, ForbiddenError

PREFIX = "/console"
COOKIE = "agentry_console"
LOGIN_COOKIE = "agentry_console_login"  # double-submit token of the sign-in form
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

templates = Jinja2Templates(directory=Path(__file__).parent / "templates")


class SignInRequired(Exception):
    """No (valid) console cookie: the page sends the browser to the sign-in form."""


def csrf_token(api_key: str) -> str:
    """The CSRF token of a console session: derived from its key, so nothing is stored."""
    return hmac.new(api_key.encode(), b"agentry-console-csrf", hashlib.sha256).hexdigest()


def set_cookie(response: Response, request: Request, name: str, value: str) -> None:
    response.set_cookie(
        name,
        value,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path=PREFIX,
    )


async def _sent_token(request: Request) -> str:
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        value = (await request.form()).get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""


def _key(request: Request) -> str:
    key = request.cookies.get(COOKIE)
    if not key:
        raise SignInRequired
    return key


def key_owner(request: Request, db: Database, key: str) -> Principal:
    """The key's owner, found by the REST API's own dependency (so its rules hold here)."""
    bearer = HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
    return get_current_user(db=db, credentials=bearer, api_key=None)


def console_user(request: Request, db: DbDep) -> Principal:
    """The signed-in user, as the REST API finds a key's owner; else the sign-in page."""
    key = _key(request)
    try:
        user = key_owner(request, db, key)
    except AuthError:
        raise SignInRequired from None
    request.state.console_user = user
    request.state.csrf = csrf_token(key)
    return user


async def check_csrf(request: Request) -> None:
    """Refuse a state-changing request without the session's CSRF token (403)."""
    if request.method in SAFE_METHODS:
        return
    expected = csrf_token(_key(request))
    if not hmac.compare_digest(await _sent_token(request), expected):
        raise ForbiddenError("the form's CSRF token is missing or stale: reload the page")


ConsoleUser = Annotated[Principal, Depends(console_user)]


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> Response:
    """A page (or an htmx fragment) with the signed-in user and CSRF token at hand."""
    user: Principal | None = getattr(request.state, "console_user", None)
    return templates.TemplateResponse(
        request,
        template,
        {"user": user, "csrf": getattr(request.state, "csrf", ""), **context},
        status_code=status_code,
    )


def redirect(url: str, request: Request) -> Response:
    """303 to ``url``; htmx requests get ``HX-Redirect`` (it does not follow redirects)."""
    if request.headers.get("hx-request"):
        return Response(status_code=204, headers={"HX-Redirect": url})
    return RedirectResponse(url, status_code=303)


class ConsoleRoute(APIRoute):
    """Console routes answer HTML: errors become a page, a missing sign-in the form."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def console_handler(request: Request) -> Response:
            try:
                return await handler(request)
            except SignInRequired:
                return redirect(f"{PREFIX}/login?next={quote(request.url.path)}", request)
            except AgentryError as exc:
                return render(
                    request, "error.html", exc.status, title=exc.title, detail=exc.message
                )
            except RequestValidationError as exc:
                detail = "; ".join(
                    f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
                )
                return render(request, "error.html", 422, title="Invalid input", detail=detail)

        return console_handler
