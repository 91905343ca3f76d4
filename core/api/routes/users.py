"""``/v1/me`` and the admin's ``/v1/users``."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from core.api.deps import AdminUser, CurrentUser, SessionDep
from core.auth.users import create_user, list_users, set_role
from core.models import UserRole

router = APIRouter(prefix="/v1", tags=["users"])


class Me(BaseModel):
    id: uuid.UUID
    email: str
    role: str


class UserCreate(BaseModel):
    email: str = Field(max_length=320)
    name: str | None = Field(default=None, max_length=200)
    admin: bool = False


class UserCreated(Me):
    api_key: str = Field(description="Shown once; only its hash is stored.")


@router.get("/me", summary="The caller")
def me(user: CurrentUser) -> Me:
    return Me(id=user.id, email=user.email, role=user.role.value)


@router.get("/users", summary="All users (admin)")
def users(admin: AdminUser, session: SessionDep) -> list[dict[str, Any]]:
    return list_users(session.connection())


@router.post("/users", status_code=201, summary="Create a user and its API key (admin)")
def add_user(body: UserCreate, admin: AdminUser, session: SessionDep) -> UserCreated:
    principal, key = create_user(
        session.connection(), body.email, name=body.name, admin=body.admin, actor=admin.actor
    )
    return UserCreated(
        id=principal.id, email=principal.email, role=principal.role.value, api_key=key
    )


class RoleChange(BaseModel):
    role: UserRole = Field(description="admin grants the admin role; user revokes it.")


@router.patch("/users/{user_id}", summary="Grant or revoke the admin role (admin; audited)")
def change_role(
    user_id: uuid.UUID, body: RoleChange, admin: AdminUser, session: SessionDep
) -> dict[str, str]:
    return set_role(session.connection(), user_id, body.role, actor=admin.actor)
