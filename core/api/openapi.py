"""The OpenAPI document, told true: problem responses and strict request bodies.

Routes declare their success response; what every route can answer besides is added
here once, from what the route depends on, instead of on each signature:
- 422 (invalid input, a NUL character) and 503 (the database away) everywhere,
- 401 and 403 where an API key is required, 404 and 409 where the request has
  parameters or a body, 400 (not JSON) and 413 where a body is sent.
Bodies that accept unknown keys only to refuse them (Agent Protocol options Agentry
does not support answer 422 unless they are null) say so: their extra properties
must be null.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel

from core.api.problems import PROBLEM_JSON

PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "description": "An RFC 9457 problem document.",
    "type": "object",
    "required": ["type", "title", "status", "detail"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {"field": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
}
REASONS = {
    400: "The body is not JSON",
    401: "No or an unknown API key",
    403: "The key's user may not do this",
    404: "No such thing (or not the caller's)",
    409: "In conflict with the current state (a running turn, a duplicate)",
    413: "The body is over the size limit",
    422: "Invalid input: the problem names the field",
    503: "A dependency is away (the database, every model)",
}


def _problem(status: int) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Problem"}
    return {"description": REASONS[status], "content": {PROBLEM_JSON: {"schema": schema}}}


def _statuses(path: str, operation: dict[str, Any]) -> list[int]:
    statuses = [422, 503]
    if operation.get("security"):
        statuses += [401, 403]
    has_body = "requestBody" in operation
    if has_body or operation.get("parameters"):
        statuses += [404, 409]
    if has_body:
        statuses += [400, 413]
    return sorted(statuses)


def _body_models() -> dict[str, type[BaseModel]]:
    found: dict[str, type[BaseModel]] = {}
    pending: list[type[BaseModel]] = [BaseModel]
    while pending:
        for sub in pending.pop().__subclasses__():
            if sub.__module__.startswith("core.api"):
                found.setdefault(sub.__name__, sub)
            pending.append(sub)
    return found


def _null_extras(schemas: dict[str, Any]) -> None:
    """Extra keys of ``extra="allow"`` bodies: accepted as null, refused otherwise."""
    models = _body_models()
    for name, schema in schemas.items():
        model = models.get(name.removesuffix("-Input"))
        if model is None or model.model_config.get("extra") != "allow":
            continue
        if schema.get("additionalProperties", True) is True:
            schema["additionalProperties"] = {"type": "null"}


def install_openapi(app: FastAPI) -> None:
    """Replace ``app.openapi`` with the generator of the complete document."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        doc = get_openapi(
            title=app.title,
            version=app.version,
            summary=app.summary,
            routes=app.routes,
        )
        schemas = doc.setdefault("components", {}).setdefault("schemas", {})
        schemas["Problem"] = PROBLEM_SCHEMA
        # FastAPI's own 422 schema is replaced: Agentry answers problem documents.
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        _null_extras(schemas)
        for path, item in doc["paths"].items():
            for operation in item.values():
                responses = operation.setdefault("responses", {})
                for status in _statuses(path, operation):
                    # A route's own declaration wins (e.g. /health's 503 report); FastAPI's
                    # default 422 does not: Agentry answers a problem document instead.
                    if status == 422 or str(status) not in responses:
                        responses[str(status)] = _problem(status)
        app.openapi_schema = doc
        return doc

    app.openapi = openapi  # type: ignore[method-assign]
