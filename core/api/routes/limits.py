"""``/v1/users/{user_id}/limits``: a user's own rate limits (admin)."""

from __future__ import annotations

import uuid

from fastapi import APIRouter
from pydantic import BaseModel, Field

from core.api.deps import AdminUser, SessionDep
from core.errors import NotFoundError
from core.limits.buckets import UserLimits, get_limits, set_limits
from core.models import User

router = APIRouter(prefix="/v1", tags=["users"])


class Limits(BaseModel):
    requests_per_minute: int | None = Field(
        default=None, ge=0, le=10_000_000, description="null: the role's default; 0: unlimited"
    )
    turns_per_minute: int | None = Field(
        default=None, ge=0, le=10_000_000, description="null: the role's default; 0: unlimited"
    )


def _known(session: SessionDep, user_id: uuid.UUID) -> None:
    if session.get(User, user_id) is None:
        raise NotFoundError(f"no user {user_id}")


@router.get("/users/{user_id}/limits", summary="A user's own rate limits (admin)")
def read_limits(user_id: uuid.UUID, admin: AdminUser, session: SessionDep) -> Limits:
    _known(session, user_id)
    found = get_limits(session.connection(), user_id)
    return Limits(
        requests_per_minute=found.requests_per_minute, turns_per_minute=found.turns_per_minute
    )


@router.put("/users/{user_id}/limits", summary="Set a user's own rate limits (admin)")
def write_limits(user_id: uuid.UUID, body: Limits, admin: AdminUser, session: SessionDep) -> Limits:
    _known(session, user_id)
    set_limits(
        session.connection(), user_id, UserLimits(body.requests_per_minute, body.turns_per_minute)
    )
    return body
