"""Strict parsing of numbers, booleans and times, for every route at once.

FastAPI's (pydantic's lax) parsing takes ``offset=1.0``, ``offset=1_0``, ``since=0``
(the epoch), ``flag=yes`` in a query and ``{"offset": false}`` in a body. What the
OpenAPI document promises is stricter, so the app-level dependency below refuses
those with 422 naming the field, before the route's own parsing runs.
"""

from __future__ import annotations

import datetime as dt
import re
import types
from typing import Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from pydantic import BaseModel

from core.errors import ValidationFailed

ISO_DATETIME = (
    r"\d{4}-\d{2}-\d{2}"
    r"([T ]\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|z|[+-]\d{2}(:?\d{2})?)?)?"
)
PATTERNS: dict[type, tuple[re.Pattern[str], str]] = {
    bool: (re.compile(r"true|false"), "must be true or false"),
    int: (re.compile(r"-?\d{1,18}"), "must be an integer (digits only)"),
    dt.datetime: (re.compile(ISO_DATETIME), "must be an ISO 8601 date or date-time"),
}


def _kinds(annotation: Any) -> set[type]:
    """The strictly parsed types among ``annotation`` (unwrapping ``X | None`` and lists)."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType, list):
        return set().union(*(_kinds(a) for a in get_args(annotation)))
    return {annotation} & set(PATTERNS)


def _query_fields(dependant: Dependant) -> list[Any]:
    fields = list(dependant.query_params)
    for sub in dependant.dependencies:
        fields += _query_fields(sub)
    return fields


def _check_query(route: APIRoute, request: Request) -> None:
    for field in _query_fields(route.dependant):
        kinds = _kinds(field.field_info.annotation)
        if len(kinds) != 1:
            continue
        pattern, rule = PATTERNS[kinds.pop()]
        for raw in request.query_params.getlist(field.alias):
            if not pattern.fullmatch(raw):
                raise ValidationFailed(f"query.{field.alias}: {rule}")


async def _check_body(route: APIRoute, request: Request) -> None:
    model = route.body_field.field_info.annotation if route.body_field else None
    if not (isinstance(model, type) and issubclass(model, BaseModel)):
        return
    try:
        body = await request.json()
    except ValueError:
        return  # FastAPI answers malformed JSON itself
    if not isinstance(body, dict):
        return
    for name, info in model.model_fields.items():
        key = info.alias or name
        value = body.get(key)
        kinds = _kinds(info.annotation)
        if int in kinds and bool not in kinds and isinstance(value, (bool, float)):
            raise ValidationFailed(f"{key}: must be an integer, not {value!r}")


async def strict_parsing(request: Request) -> None:
    """App-level dependency: refuse lax numbers, booleans and times (see the module)."""
    route = request.scope.get("route")
    if not isinstance(route, APIRoute):
        return
    _check_query(route, request)
    if route.body_field is not None and request.headers.get("content-type", "").startswith(
        "application/json"
    ):
        await _check_body(route, request)
