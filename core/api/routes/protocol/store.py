"""``/store``: the Agent Protocol store, per user (see :mod:`core.protocols.store`)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from pydantic import BaseModel, ConfigDict, Field

from core.api.deps import CurrentUser, SessionDep
from core.api.routes.protocol.assistants import reject_extra
from core.errors import ValidationFailed
from core.protocols import store

router = APIRouter(prefix="/store", tags=["agent protocol"])


class ItemPut(BaseModel):
    model_config = ConfigDict(extra="allow")

    namespace: list[str]
    key: str = Field(min_length=1, max_length=1024)
    value: dict[str, Any]
    index: bool | list[str] | None = None
    ttl: float | None = None


class ItemDelete(BaseModel):
    model_config = ConfigDict(extra="allow")

    namespace: list[str]
    key: str


class ItemSearch(BaseModel):
    model_config = ConfigDict(extra="allow")

    namespace_prefix: list[str] = Field(default_factory=list)
    filter: dict[str, Any] | None = None
    query: str | None = None
    limit: int = Field(default=10, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2**31 - 1)
    refresh_ttl: bool | None = None


class NamespaceList(BaseModel):
    model_config = ConfigDict(extra="allow")

    prefix: list[str] = Field(default_factory=list)
    suffix: list[str] = Field(default_factory=list)
    max_depth: int | None = None
    limit: int = Field(default=100, ge=1, le=1000)
    offset: int = Field(default=0, ge=0, le=2**31 - 1)


def _no_ttl(ttl: Any, name: str) -> None:
    if ttl:
        raise ValidationFailed(f"{name}: time-to-live is not supported by Agentry")


@router.put("/items", status_code=204, summary="Store (or replace) an item")
def put_item(body: ItemPut, user: CurrentUser, session: SessionDep) -> Response:
    reject_extra(body)
    _no_ttl(body.ttl, "ttl")
    store.put_item(session.connection(), user.id, body.namespace, body.key, body.value, body.index)
    return Response(status_code=204)


@router.get("/items", summary="One item (namespace joined with '.')")
def get_item(
    namespace: str,
    key: str,
    user: CurrentUser,
    session: SessionDep,
    refresh_ttl: bool | None = None,
) -> dict[str, Any]:
    _no_ttl(refresh_ttl, "refresh_ttl")
    labels = namespace.split(".") if namespace else []
    return store.get_item(session.connection(), user.id, labels, key)


@router.delete("/items", status_code=204, summary="Delete an item")
def delete_item(body: ItemDelete, user: CurrentUser, session: SessionDep) -> Response:
    reject_extra(body)
    store.delete_item(session.connection(), user.id, body.namespace, body.key)
    return Response(status_code=204)


@router.post("/items/search", summary="Items under a prefix; ranked by a query")
def search_items(body: ItemSearch, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    reject_extra(body)
    _no_ttl(body.refresh_ttl, "refresh_ttl")
    items = store.search_items(
        session.connection(),
        user.id,
        body.namespace_prefix,
        filter=body.filter,
        query=body.query,
        limit=body.limit,
        offset=body.offset,
    )
    return {"items": items}


@router.post("/namespaces", summary="Namespaces of the caller's items")
def list_namespaces(body: NamespaceList, user: CurrentUser, session: SessionDep) -> dict[str, Any]:
    reject_extra(body)
    namespaces = store.list_namespaces(
        session.connection(),
        user.id,
        prefix=body.prefix,
        suffix=body.suffix,
        max_depth=body.max_depth,
        limit=body.limit,
        offset=body.offset,
    )
    return {"namespaces": namespaces}
