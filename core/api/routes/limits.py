"""``/v1/users/{user_id}/limits``: a user's own rate limits (admin)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from core.api.deps import AdminUser, SessionDep, SettingsDep
from core.limits.buckets import UserLimits, get_limits, set_limits

router = APIRouter(prefix="/v1", tags=["users"])
UNSET = "null: the role's default (AGENTRY_RATE_*); 0: unlimited"


class Limits(BaseModel):
    requests_per_minute: int | None = Field(default=None, ge=0, le=10_000_000, description=UNSET)
    turns_per_minute: int | None = Field(default=None, ge=0, le=10_000_000, description=UNSET)


class Effective(BaseModel):
    requests_per_minute: int = Field(description="in force (0: unlimited)")
    turns_per_minute: int = Field(description="in force (0: unlimited)")
    enabled: bool = Field(description="AGENTRY_RATE_LIMITS")


class LimitsView(Limits):
    effective: Effective


@router.get(
    "/users/{user_id}/limits", summary="A user's own rate limits and those in force (admin)"
)
def read_limits(
    user_id: uuid.UUID, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> dict[str, Any]:
    return LimitsView.model_validate(
        get_limits(session.connection(), user_id, settings)
    ).model_dump()


@router.put("/users/{user_id}/limits", summary="Set a user's own rate limits (admin)")
def write_limits(
    user_id: uuid.UUID, body: Limits, admin: AdminUser, session: SessionDep, settings: SettingsDep
) -> LimitsView:
    conn = session.connection()
    get_limits(conn, user_id, settings)  # 404 for an unknown user
    own = UserLimits(body.requests_per_minute, body.turns_per_minute)
    set_limits(conn, user_id, own, actor=admin.actor)
    return LimitsView.model_validate(get_limits(conn, user_id, settings))
