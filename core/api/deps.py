"""Typed dependencies shared by the routers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from config import Settings
from core.auth.users import Principal, authenticate
from core.db.engine import Database
from core.errors import AuthError, ForbiddenError
from core.limits.buckets import authenticate_limited
from core.runtime.lifecycle import get_runtime
from core.runtime.service import AgentRuntime

bearer = HTTPBearer(auto_error=False, description="An Agentry API key (agentry users create)")
# langgraph_sdk clients (Agent Chat UI, LangGraph Studio) send their key in x-api-key.
api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, description="An Agentry API key (langgraph_sdk style)"
)


def get_db(request: Request) -> Database:
    db: Database = request.app.state.db
    return db


def get_app_settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


def get_session(db: Annotated[Database, Depends(get_db)]) -> Iterator[Session]:
    """One session and one transaction per request: committed on success."""
    with Session(db.engine) as session, session.begin():
        yield session


DbDep = Annotated[Database, Depends(get_db)]
SettingsDep = Annotated[Settings, Depends(get_app_settings)]
# scope="function": commit when the route returns, before the response is sent, so a
# client's next request always sees the write (the default "request" scope commits after
# the response went out).
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def get_current_user(
    request: Request,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)] = None,
) -> Principal:
    """The caller behind the bearer API key (or ``x-api-key``); 401 without a valid one,
    429 past the key's request rate or its address's wrong-key rate."""
    if credentials is not None and credentials.scheme.lower() == "bearer":
        key = credentials.credentials
    elif api_key:
        key = api_key
    else:
        raise AuthError("missing API key: send 'Authorization: Bearer <key>'")
    settings: Settings = request.app.state.settings
    with db.engine.connect() as conn:
        if not settings.rate_limits:
            return authenticate(conn, key)
        address = request.client.host if request.client else ""
        return authenticate_limited(conn, key, address, settings)


CurrentUser = Annotated[Principal, Depends(get_current_user)]


def get_admin_user(user: CurrentUser) -> Principal:
    """The caller, who must be an admin; 403 otherwise."""
    if not user.is_admin:
        raise ForbiddenError("this route is for admins")
    return user


AdminUser = Annotated[Principal, Depends(get_admin_user)]


def get_agent_runtime(request: Request) -> AgentRuntime:
    """The process's agent runtime (graphs, checkpointer, model router)."""
    return get_runtime(request.app)


RuntimeDep = Annotated[AgentRuntime, Depends(get_agent_runtime)]
