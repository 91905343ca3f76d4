"""``/v1/memory/blocks``: the caller's memory blocks (admins: any user's with ``?user=``)."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from core.api.deps import CurrentUser, SessionDep
from core.auth.users import Principal
from core.errors import ForbiddenError
from core.memory.blocks import MAX_LIMIT, block_history, list_blocks, write_block

router = APIRouter(prefix="/v1/memory", tags=["memory"])

AgentQuery = Query(None, max_length=100, description="the agent's own block; omit: shared")
UserQuery = Query(None, alias="user", description="admins: whose blocks (default: the caller's)")


class BlockSet(BaseModel):
    value: str = Field(max_length=MAX_LIMIT)
    agent: str | None = Field(None, max_length=100, description="omit: shared by all agents")
    limit: int | None = Field(None, ge=1, le=MAX_LIMIT, description="size limit (characters)")


class BlockAppend(BaseModel):
    text: str = Field(min_length=1, max_length=MAX_LIMIT)
    agent: str | None = Field(None, max_length=100)


class BlockReplace(BaseModel):
    old: str = Field(min_length=1, max_length=MAX_LIMIT)
    new: str = Field(max_length=MAX_LIMIT)
    agent: str | None = Field(None, max_length=100)


def _owner(user: Principal, requested: uuid.UUID | None) -> uuid.UUID:
    if requested is None or requested == user.id:
        return user.id
    if not user.is_admin:
        raise ForbiddenError("user: only admins edit other users' memory blocks")
    return requested


@router.get("/blocks", summary="Memory blocks (shared ones and, with ?agent=, that agent's)")
def blocks(
    user: CurrentUser,
    session: SessionDep,
    agent: str | None = AgentQuery,
    owner: uuid.UUID | None = UserQuery,
) -> list[dict[str, Any]]:
    return list_blocks(session.connection(), _owner(user, owner), agent)


@router.put("/blocks/{label}", summary="Create a block or set its whole value (and limit)")
def set_block(
    label: str,
    body: BlockSet,
    user: CurrentUser,
    session: SessionDep,
    owner: uuid.UUID | None = UserQuery,
) -> dict[str, Any]:
    return write_block(
        session.connection(),
        _owner(user, owner),
        label,
        op="set",
        actor=user.actor,
        agent=body.agent,
        value=body.value,
        limit=body.limit,
    )


@router.post("/blocks/{label}/append", summary="Append a line to a block")
def append_block(
    label: str,
    body: BlockAppend,
    user: CurrentUser,
    session: SessionDep,
    owner: uuid.UUID | None = UserQuery,
) -> dict[str, Any]:
    return write_block(
        session.connection(),
        _owner(user, owner),
        label,
        op="append",
        actor=user.actor,
        agent=body.agent,
        value=body.text,
    )


@router.post("/blocks/{label}/replace", summary="Replace exact text within a block")
def replace_block(
    label: str,
    body: BlockReplace,
    user: CurrentUser,
    session: SessionDep,
    owner: uuid.UUID | None = UserQuery,
) -> dict[str, Any]:
    return write_block(
        session.connection(),
        _owner(user, owner),
        label,
        op="replace",
        actor=user.actor,
        agent=body.agent,
        value=body.new,
        old=body.old,
    )


@router.get("/blocks/{label}/versions", summary="Every version of a block, oldest first")
def versions(
    label: str,
    user: CurrentUser,
    session: SessionDep,
    agent: str | None = AgentQuery,
    owner: uuid.UUID | None = UserQuery,
) -> list[dict[str, Any]]:
    return block_history(session.connection(), _owner(user, owner), label, agent)
