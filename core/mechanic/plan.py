"""Plan a change: spec -> render -> generate -> lint -> dry run, stored as ``planned``.

Nothing in the project or the live database changes while planning: the files are
produced in a scratch copy and the dry run uses a shadow database.
"""

from __future__ import annotations

import difflib
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import text

from config import Settings
from core.db.engine import Database
from core.db.metadata import dynamic_tables, load_lock
from core.errors import ConflictError, PolicyViolation, ValidationFailed
from core.mechanic import registry
from core.mechanic.agentchange import AgentChangeSpec, plan_agent_change
from core.mechanic.datacheck import check_data
from core.mechanic.dryrun import dry_run
from core.mechanic.generate import (
    TIMEOUT_PREAMBLE,
    VERSIONS,
    generate_revision,
    offline_sql,
    scratch_project,
)
from core.mechanic.lint import lint
from core.mechanic.render import model_path, render_model
from core.mechanic.spec import ChangeSpec, resolve


def timeout_preamble(settings: Settings) -> str:
    """The SET statements apply runs before a revision (shown to squawk as well)."""
    return TIMEOUT_PREAMBLE.format(
        lock=int(settings.mechanic_lock_timeout * 1000),
        stmt=int(settings.mechanic_statement_timeout * 1000),
    )


def _diff(path: str, old: str | None, new: str | None) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
        )
    )


def build_plan(
    db: Database, settings: Settings, spec: ChangeSpec, *, reapply: bool = False
) -> dict[str, Any]:
    """Everything an admin reviews before applying, and what apply writes.

    Args:
        db: the live database (read only; the dry run uses a shadow copy).
        settings: the process settings (project directory, timeouts).
        spec: the change.
        reapply: planning a rolled-back change again (a retired entity may return).

    Returns:
        ``{"files", "diff", "sql", "lint", "dry_run", "revision", "down_revision",
        "message", "before", "after"}``.

    Raises:
        PolicyViolation: lint refused the change (422, findings in the message).
        ValidationFailed / ConflictError / NotFoundError: the spec does not fit the registry.
    """
    with db.engine.connect() as conn:
        entities = registry.load_entities(conn)
        taken = conn.execute(
            text("SELECT to_regclass(:t)"), {"t": f'public."{spec.entity}"'}
        ).scalar()
    known = entities.get(spec.entity)
    if spec.action == "add_entity" and taken is not None and known is None:
        # Someone else's table: the mechanic must never adopt (or alter) it.
        raise ConflictError(f"a table named {spec.entity!r} already exists in the database")
    active = {n: e.defn for n, e in entities.items() if e.status == "active"}
    after = resolve(
        spec,
        known.defn if known else None,
        known.status if known else None,
        active,
        reapply=reapply,
    )
    before = known.defn if known and known.status == "active" else None
    with db.engine.connect() as conn:
        check_data(conn, spec, before)
    project = Path(settings.project_dir)
    rel_model = model_path(spec.entity)
    new_model = render_model(after) if after is not None else None
    message = spec.summary()
    with load_lock, scratch_project(settings) as scratch:
        target = Path(scratch.project_dir) / rel_model
        if new_model is None:
            target.unlink(missing_ok=True)
        else:
            target.write_text(new_model)
        with db.engine.connect() as conn:
            gen = generate_revision(conn, scratch, message)
        sql = offline_sql(scratch, gen)
        report = lint(gen.upgrade_ops, sql, dynamic_tables(), preamble=timeout_preamble(settings))
        if not report.ok:
            raise PolicyViolation(f"{message}: refused: {report.summary()}")
        result = dry_run(db, settings, scratch, gen.revision, gen.down_revision)
    if not result.ok:
        raise ValidationFailed(
            f"{message}: dry run failed: {result.error or '; '.join(result.differences)}"
        )
    rel_revision = str(VERSIONS / gen.path.name)
    old_model = (project / rel_model).read_text() if (project / rel_model).exists() else None
    files = [
        {"path": str(rel_model), "content": new_model},
        {"path": rel_revision, "content": gen.text},
    ]
    diff = _diff(str(rel_model), old_model, new_model) + _diff(rel_revision, None, gen.text)
    return {
        "files": files,
        "diff": diff,
        "sql": sql,
        "lint": report.as_dict(),
        "dry_run": result.as_dict(),
        "revision": gen.revision,
        "down_revision": gen.down_revision,
        "message": message,
        "before": before.model_dump(mode="json") if before else None,
        "after": after.model_dump(mode="json") if after else None,
    }


def plan_change(
    db: Database,
    settings: Settings,
    spec: ChangeSpec | AgentChangeSpec,
    *,
    actor: str,
    instruction: str | None = None,
) -> dict[str, Any]:
    """Plan ``spec`` (a schema or an agent change) and store it as a ``planned`` change.

    Returns:
        The stored change (a dict of its columns).
    """
    if isinstance(spec, AgentChangeSpec):
        return plan_agent_change(db, settings, spec, actor=actor, instruction=instruction)
    plan = build_plan(db, settings, spec)
    with db.engine.begin() as conn:
        change_id = registry.insert_change(
            conn,
            action=spec.action,
            entity=spec.entity,
            spec=spec.model_dump(mode="json", exclude_defaults=True),
            instruction=instruction,
            status="planned",
            plan=plan,
            before=plan["before"],
            after=plan["after"],
            revision=plan["revision"],
            down_revision=plan["down_revision"],
            created_by=actor,
        )
        return registry.get_change(conn, change_id)


def replan(db: Database, settings: Settings, change: dict[str, Any]) -> dict[str, Any]:
    """Plan a rolled-back (or stale) change again against today's schema; same row."""
    spec = ChangeSpec.model_validate(change["spec"])
    plan = build_plan(db, settings, spec, reapply=change["status"] == "rolled_back")
    change_id: uuid.UUID = change["id"]
    with db.engine.begin() as conn:
        registry.update_change(
            conn,
            change_id,
            plan=plan,
            before=plan["before"],
            after=plan["after"],
            revision=plan["revision"],
            down_revision=plan["down_revision"],
            error=None,
        )
        return registry.get_change(conn, change_id)
