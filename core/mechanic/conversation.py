"""The mechanic in a conversation: describe, propose, apply (with a person's approval), roll back.

The ``tools/`` modules of the ``mechanic`` agent are thin wrappers around these
functions. Applying and rolling back pause the run inside the tool with an
agent-inbox ``HumanInterrupt`` whose description is the readable plan, so Agent Chat
UI, ``POST /v1/conversations/{id}/resume`` and ``agentry chat`` all ask the person.
Nothing here runs without that approval: the interrupt is in the tool itself, so a
tool call the model (or a forged ``command``) makes still stops for the person; an
approval is for the change it showed; and only changes proposed in the same
conversation can be applied from it.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from fastapi.encoders import jsonable_encoder
from langgraph.types import interrupt
from sqlalchemy import text

from core.errors import AgentryError, ForbiddenError, ValidationFailed
from core.mechanic import registry
from core.mechanic.agentchange import AGENT_ACTIONS, AgentChangeSpec
from core.mechanic.apply import apply_change
from core.mechanic.live import refresh_live
from core.mechanic.plan import plan_change
from core.mechanic.rollback import dependants, rollback_change
from core.mechanic.spec import ChangeSpec
from core.runtime.approval import parse_decision
from core.runtime.context import TurnContext

PROPOSED = "change_proposed"
APPROVED = "change_approved"
REFUSED = "change_refused"
MAX_DIFF_CHARS = 6000

PROPOSED_HERE = text(
    "SELECT 1 FROM audit_log WHERE action = :action"
    " AND details->>'change_id' = :change AND details->>'conversation_id' = :conversation"
    " LIMIT 1"
)
AUDIT_OF_CHANGE = text(
    "SELECT action, actor, status, git_commit, created_at, details FROM audit_log"
    " WHERE details->>'change_id' = :change ORDER BY created_at"
)


def _admin(turn: TurnContext) -> None:
    if not turn.principal.is_admin:
        raise ForbiddenError("only admins may change the schema")


def _change_id(raw: str) -> uuid.UUID:
    try:
        return uuid.UUID(str(raw).strip())
    except ValueError:
        raise ValidationFailed(f"change_id: {raw!r} is not a change id (a UUID)") from None


def _audit(turn: TurnContext, action: str, status: str, details: dict[str, Any]) -> None:
    with turn.db.engine.begin() as conn:
        registry.record_audit(
            conn,
            action=action,
            actor=turn.principal.actor,
            status=status,
            details={**details, "conversation_id": str(turn.conversation_id)},
        )


def describe_entities(turn: TurnContext) -> str:
    """Every entity type with its status, fields and indexes, as text."""
    _admin(turn)
    with turn.db.engine.connect() as conn:
        found = registry.load_entities(conn)
    if not found:
        return "No entity types yet."
    lines = []
    for name, reg in sorted(found.items()):
        lines.append(f"{name} ({reg.status}): {reg.defn.description or ''}".rstrip(": "))
        for f in reg.defn.fields:
            extra = [k for k in ("required", "unique", "index", "searchable") if getattr(f, k)]
            if f.references:
                extra.append(f"references {f.references}")
            if f.values:
                extra.append(f"values {f.values}")
            lines.append(f"  - {f.name}: {f.type}" + (f" [{', '.join(extra)}]" if extra else ""))
        for ix in reg.defn.indexes:
            lines.append(f"  index {ix.model_dump(mode='json')}")
    return "\n".join(lines)


def plan_text(change: dict[str, Any]) -> str:
    """A change's plan as a person reads it in a chat (markdown)."""
    plan = change["plan"] or {}
    lint = plan.get("lint") or {}
    dry = plan.get("dry_run") or {}
    findings = lint.get("findings") or []
    diff = plan.get("diff") or ""
    if len(diff) > MAX_DIFF_CHARS:
        diff = diff[:MAX_DIFF_CHARS] + f"\n... ({len(plan['diff']) - MAX_DIFF_CHARS} more chars)"
    head = f"change `{change['id']}` · status {change['status']}"
    files = "**Files:** " + ", ".join(f"`{f['path']}`" for f in plan.get("files", []))
    if change["action"] in AGENT_ACTIONS:  # no SQL: the agent's YAML and the checks
        checks = "; ".join(dry.get("steps") or [])
        return "\n\n".join(
            [
                f"### {plan.get('message') or change['action']}",
                head,
                files,
                f"**Checks:** {checks}",
                "**Diff:**\n```diff\n" + diff.strip() + "\n```",
            ]
        )
    parts = [
        f"### {plan.get('message') or change['action']}",
        f"{head} · revision {change['revision']} on {change['down_revision'] or 'core'}",
        files,
        "**SQL:**\n```sql\n" + (plan.get("sql") or "").strip() + "\n```",
        "**Lint:** "
        + (
            "no findings"
            if not findings
            else "; ".join(f"[{f['rule']}] {f['message']}" for f in findings)
        ),
        "**Dry run:** "
        + ("passed" if dry.get("ok") else f"failed: {dry.get('error')}")
        + (f" in {dry['seconds']:.2f} s" if dry.get("seconds") else ""),
        "**Diff:**\n```diff\n" + diff.strip() + "\n```",
    ]
    return "\n\n".join(parts)


def propose(
    turn: TurnContext, spec: ChangeSpec | AgentChangeSpec, instruction: str | None = None
) -> str:
    """Plan ``spec`` (files, SQL, lint, dry run; for an agent, its YAML and the registry
    checks) and return the readable plan."""
    _admin(turn)
    change = plan_change(
        turn.db, turn.settings, spec, actor=turn.principal.actor, instruction=instruction
    )
    _audit(
        turn,
        PROPOSED,
        "planned",
        {"change_id": str(change["id"]), "summary": change["plan"].get("message")},
    )
    return (
        plan_text(change) + f"\n\nTo apply it, call apply_change with change_id {change['id']}; "
        "the person is asked to approve first."
    )


def _ask(action: str, change: dict[str, Any], description: str) -> dict[str, Any]:
    """Pause for the person; their answer as ``{"type", "args"}``."""
    request = [
        {
            "action_request": {"action": action, "args": {"change_id": str(change["id"])}},
            # Editing a change id is not a thing a person approves: words go back instead.
            "config": {
                "allow_accept": True,
                "allow_edit": False,
                "allow_respond": True,
                "allow_ignore": True,
            },
            "description": description,
        }
    ]
    try:
        return parse_decision(interrupt(request))
    except ValidationFailed:  # run_turn checks answers; anything else approves nothing
        return {"type": "ignore", "args": None}


def _refused(turn: TurnContext, what: str, change: dict[str, Any], decision: dict[str, Any]) -> str:
    words = decision["args"]
    if decision["type"] == "edit":
        words = f"please change the request: {json.dumps(decision['args'])}"
    _audit(
        turn,
        REFUSED,
        "succeeded",
        {
            "change_id": str(change["id"]),
            "what": what,
            "decision": decision["type"],
            "words": words,
        },
    )
    said = f" They said: {words}" if words else ""
    return f"The person did not approve the {what} of change {change['id']}.{said}"


def apply(turn: TurnContext, change_id: str) -> str:
    """Ask the person to approve the plan, then apply it; a refusal is recorded."""
    _admin(turn)
    cid = _change_id(change_id)
    with turn.db.engine.connect() as conn:
        change = registry.get_change(conn, cid)
        here = conn.execute(
            PROPOSED_HERE,
            {"action": PROPOSED, "change": str(cid), "conversation": str(turn.conversation_id)},
        ).first()
    if here is None:
        raise ForbiddenError(
            f"change {cid} was not proposed in this conversation: propose it here first"
        )
    if change["status"] == "applied":
        return f"Change {cid} is applied (commit {change['git_commit']})."
    decision = _ask("apply_change", change, "Apply this change?\n\n" + plan_text(change))
    if decision["type"] != "accept":
        return _refused(turn, "apply", change, decision)
    _audit(turn, APPROVED, "succeeded", {"change_id": str(cid), "what": "apply"})
    try:
        done = apply_change(turn.db, turn.settings, cid, actor=turn.principal.actor)
    except AgentryError as exc:
        return f"Applying change {cid} failed (everything was undone): {exc.message}"
    refresh_live(turn.db)
    where = f", revision {done['revision']}" if done["revision"] else ""
    return (
        f"Applied change {cid}: {done['plan'].get('message')} (commit {done['git_commit']}"
        f"{where}). It is live now."
    )


def rollback(turn: TurnContext, change_id: str) -> str:
    """Ask the person to approve rolling a change back, then roll it back."""
    _admin(turn)
    cid = _change_id(change_id)
    with turn.db.engine.connect() as conn:
        change = registry.get_change(conn, cid)
        blocking = dependants(conn, change) if change["status"] == "applied" else []
    if change["status"] != "applied":
        return f"Change {cid} is {change['status']}: only an applied change can be rolled back."
    if blocking:  # no point asking the person for what would be refused
        names = "; ".join(f"{c['id']} ({c['plan'].get('message')})" for c in blocking)
        return f"Change {cid} cannot be rolled back: later changes depend on it: {names}."
    kept = (
        "the agent's previous definition returns"
        if change["action"] in AGENT_ACTIONS
        else ("The data is kept")
    )
    description = (
        f"Roll back change `{cid}` ({change['plan'].get('message')})? {kept}; the commit "
        f"{change['git_commit']} is reverted."
    )
    decision = _ask("rollback_change", change, description)
    if decision["type"] != "accept":
        return _refused(turn, "rollback", change, decision)
    _audit(turn, APPROVED, "succeeded", {"change_id": str(cid), "what": "rollback"})
    try:
        done = rollback_change(turn.db, turn.settings, cid, actor=turn.principal.actor)
    except AgentryError as exc:
        return f"Rolling back change {cid} was refused: {exc.message}"
    refresh_live(turn.db)
    kept = (
        "its previous definition is back"
        if change["action"] in AGENT_ACTIONS
        else ("the data is kept")
    )
    return f"Rolled back change {cid}: {done['plan'].get('message')}; {kept}."


def list_changes(turn: TurnContext, limit: int = 20, change_id: str | None = None) -> str:
    """Changes newest first; with ``change_id``, that change's audit rows too (JSON)."""
    _admin(turn)
    with turn.db.engine.connect() as conn:
        if change_id:
            cid = _change_id(change_id)
            change = registry.get_change(conn, cid)
            audit = [
                dict(r) for r in conn.execute(AUDIT_OF_CHANGE, {"change": str(cid)}).mappings()
            ]
            return json.dumps(jsonable_encoder({"change": _brief(change), "audit": audit}))
        changes = registry.list_changes(conn, limit=max(1, min(limit, 200)))
    return json.dumps(jsonable_encoder([_brief(c) for c in changes]))


def _brief(change: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "action", "entity", "status", "revision", "git_commit", "created_at", "error")
    return {k: change[k] for k in keys} | {"summary": (change["plan"] or {}).get("message")}
