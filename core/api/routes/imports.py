"""``POST /v1/import`` (admin): conversations in the JSON Lines import format."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool

from core.api.deps import AdminUser, SessionDep
from core.conversations.importing import (
    ImportReport,
    import_conversations,
    parse_jsonl,
    resolve_user,
)
from core.errors import ValidationFailed

router = APIRouter(prefix="/v1", tags=["import"])

MAX_BODY_BYTES = 64 * 1024 * 1024


@router.post(
    "/import",
    summary="Import conversations from JSON Lines (admin)",
    description=(
        "The body is the JSON Lines import format (README, *Importing history*): one "
        "conversation per line. Each conversation is validated and written whole or "
        "skipped with its reason; conversations already imported are left unchanged. "
        "The messages are indexed; their vectors follow from the embedding worker."
    ),
    openapi_extra={
        "requestBody": {
            "required": True,
            # Any content type is read as JSON Lines (application/x-ndjson, jsonl...);
            # the document names text/plain, which every client can send.
            "content": {"text/plain": {"schema": {"type": "string", "minLength": 1}}},
        }
    },
)
async def import_route(
    request: Request,
    admin: AdminUser,
    session: SessionDep,
    user: str | None = Query(
        None, max_length=320, description="owner of lines that name no user (email or id)"
    ),
) -> dict[str, Any]:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        raise ValidationFailed(f"body: at most {MAX_BODY_BYTES} bytes")
    try:
        lines = body.decode("utf-8").splitlines()
    except UnicodeDecodeError:
        raise ValidationFailed("body: must be UTF-8 JSON Lines") from None
    if not any(line.strip() for line in lines):
        raise ValidationFailed("body: no conversation (one JSON object per line)")

    def run() -> dict[str, Any]:
        report = ImportReport()
        conn = session.connection()
        owner = resolve_user(conn, user) if user else None
        import_conversations(conn, parse_jsonl(lines, report), report, default_user=owner)
        return report.as_json()

    # The database work blocks: off the event loop, like a sync route.
    return await run_in_threadpool(run)
