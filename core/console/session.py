"""Signing in and out of the console with an API key."""

from __future__ import annotations

import hmac
import secrets

from fastapi import APIRouter, Form, Request, Response

from core.api.deps import DbDep
from core.console.web import (
    COOKIE,
    LOGIN_COOKIE,
    PREFIX,
    ConsoleRoute,
    check_csrf,
    key_owner,
    redirect,
    render,
    set_cookie,
)
from core.errors import AuthError

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
HOME = f"{PREFIX}/conversations"


def _safe_next(target: str | None) -> str:
    """Only a console path: a crafted ``next`` never sends the browser elsewhere."""
    if target and target.startswith(PREFIX + "/") and "//" not in target and "\\" not in target:
        return target
    return HOME


def _form(request: Request, target: str, error: str | None = None, status: int = 200) -> Response:
    token = secrets.token_urlsafe(24)
    response = render(request, "login.html", status, login_token=token, next=target, error=error)
    set_cookie(response, request, LOGIN_COOKIE, token)
    return response


@router.get("")
def home(request: Request) -> Response:
    return redirect(HOME, request)


@router.get("/login")
def login_form(request: Request, next: str | None = None) -> Response:
    return _form(request, _safe_next(next))


@router.post("/login")
def login(
    request: Request,
    db: DbDep,
    api_key: str = Form(max_length=200),
    csrf_token: str = Form(default=""),
    next: str = Form(default=HOME),
) -> Response:
    target = _safe_next(next)
    # The sign-in form is protected too: another site cannot sign a browser in as itself.
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token, expected):
        return _form(request, target, "The form expired: sign in again.", 403)
    try:
        key_owner(request, db, api_key.strip())
    except AuthError:
        return _form(request, target, "That API key is not valid.", 401)
    response = redirect(target, request)
    set_cookie(response, request, COOKIE, api_key.strip())
    response.delete_cookie(LOGIN_COOKIE, path=PREFIX)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    await check_csrf(request)
    response = redirect(f"{PREFIX}/login", request)
    response.delete_cookie(COOKIE, path=PREFIX)
    return response
