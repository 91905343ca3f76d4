"""The mechanic (admins): changes with their plan; plan, apply, roll back; approve or
refuse a change waiting in the conversation that proposed it.

The pages call the route functions of :mod:`core.api.routes.mechanic` (which require an
admin), so a change is planned, applied and rolled back exactly as over REST. A change a
conversation proposed is approved or refused there (``change_approved`` /
``change_refused`` in the audit log): the page shows that pending decision and sends it to
the conversation's resume route.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi import APIRouter, Depends, Form, Request, Response
from sqlalchemy import Connection

from core.api.deps import DbDep, RuntimeDep, SettingsDep, get_admin_user
from core.api.routes import mechanic as rest
from core.auth.users import Principal
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, check_csrf, redirect, render
from core.conversations.store import conversation_json, get_conversation
from core.errors import NotFoundError, ValidationFailed
from core.mechanic.conversation import AUDIT_OF_CHANGE, PROPOSED
from core.models.mechanic import CHANGE_STATUSES

router = APIRouter(
    prefix=f"{PREFIX}/mechanic",
    route_class=ConsoleRoute,
    include_in_schema=False,
    dependencies=[Depends(check_csrf)],
)


def _admin(user: ConsoleUser) -> Principal:
    return get_admin_user(user)


@router.get("")
def index(
    request: Request, db: DbDep, admin: Principal = Depends(_admin), status: str | None = None
) -> Response:
    wanted = status or None
    if wanted and wanted not in CHANGE_STATUSES:
        raise ValidationFailed(f"status: one of {', '.join(CHANGE_STATUSES)}")
    changes = rest.list_changes(admin, db, status=wanted, limit=100)
    return render(
        request, "mechanic.html", changes=changes, status=status or "", statuses=CHANGE_STATUSES
    )


@router.post("")
def plan(
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    runtime: RuntimeDep,
    admin: Principal = Depends(_admin),
    spec: str = Form(default="", max_length=20000),
    instruction: str = Form(default="", max_length=4000),
) -> Response:
    if spec.strip():
        try:
            parsed = json.loads(spec)
        except ValueError as exc:
            raise ValidationFailed(f"spec: not JSON ({exc})") from None
        if not isinstance(parsed, dict):
            raise ValidationFailed("spec: a JSON object")
        body = rest.ChangeRequest(spec=parsed)
    elif instruction.strip():
        body = rest.ChangeRequest(instruction=instruction.strip())
    else:
        raise ValidationFailed("spec: give a change spec (JSON) or an instruction")
    change = rest.create_change(body, admin, db, settings, runtime)
    return redirect(f"{PREFIX}/mechanic/{change['id']}", request)


def _waiting(conn: Connection, admin: Principal, change_id: uuid.UUID) -> dict[str, Any] | None:
    """The conversation that proposed the change, when it waits for a decision on it."""
    for row in conn.execute(AUDIT_OF_CHANGE, {"change": str(change_id)}).mappings():
        cid = (row["details"] or {}).get("conversation_id")
        if row["action"] != PROPOSED or not cid:
            continue
        try:
            conversation = conversation_json(get_conversation(conn, admin, uuid.UUID(cid)))
        except NotFoundError:
            return None  # deleted since
        for pending in conversation["interrupts"]:
            for ask in pending.get("value") or []:
                args = (ask.get("action_request") or {}).get("args") or {}
                if args.get("change_id") == str(change_id):
                    action = ask["action_request"]["action"]
                    return {"conversation": conversation, "action": action}
    return None


@router.get("/{change_id}")
def show(
    change_id: rest.ChangeRef, request: Request, db: DbDep, admin: Principal = Depends(_admin)
) -> Response:
    change = rest.get_change(change_id, admin, db)
    with db.engine.connect() as conn:
        waiting = _waiting(conn, admin, uuid.UUID(change["id"]))
        history = [
            dict(r) for r in conn.execute(AUDIT_OF_CHANGE, {"change": change["id"]}).mappings()
        ]
    return render(request, "change.html", change=change, waiting=waiting, history=history)


@router.post("/{change_id}/apply")
def apply(
    change_id: rest.ChangeRef,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    admin: Principal = Depends(_admin),
) -> Response:
    change = rest.apply(change_id, request, admin, db, settings)
    return redirect(f"{PREFIX}/mechanic/{change['id']}", request)


@router.post("/{change_id}/rollback")
def rollback(
    change_id: rest.ChangeRef,
    request: Request,
    db: DbDep,
    settings: SettingsDep,
    admin: Principal = Depends(_admin),
) -> Response:
    change = rest.rollback(change_id, request, admin, db, settings)
    return redirect(f"{PREFIX}/mechanic/{change['id']}", request)
