"""Roll back any applied change, not only the newest, unless a later change depends on it.

The newest revision is stamped back and its commit reverted (files and revision gone, the
table and its data kept). An older one cannot leave the Alembic history, whose later
revisions build on it: its revision file stays, and a commit puts the entity's model file
back as it was before the change. Either way the entity returns to its state before the
change in the registry (retired, or the added fields hidden), its data kept, with an audit
row ``rollback``. A rolled-back change can be applied again (planned afresh).
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from config import Settings
from core.db.engine import Database
from core.db.migrate import current_heads, script_heads
from core.errors import ConflictError, MechanicError
from core.mechanic import gitops, registry
from core.mechanic.agentchange import is_agent_change, rollback_agent_change
from core.mechanic.apply import (
    _go_live,
    _write_files,
    abandon_rollback,
    schema_lock,
)
from core.mechanic.render import model_path, render_model
from core.mechanic.spec import ChangeSpec, EntityDef

UNSTAMP = text("DELETE FROM alembic_version WHERE version_num = :rev")
STAMP = text("INSERT INTO alembic_version (version_num) VALUES (:rev)")


def dependants(conn: Connection, change: dict[str, Any]) -> list[dict[str, Any]]:
    """Applied changes after ``change`` that build on it: the same entity, a reference to it,
    an agent listing its tools (of an agent change: a later change of the same agent)."""
    later = [
        c
        for c in registry.list_changes(conn, status="applied", limit=10_000)
        if c["id"] != change["id"] and c["applied_at"] and c["applied_at"] > change["applied_at"]
    ]
    if is_agent_change(change):  # a later change of the same agent
        return sorted(
            (c for c in later if is_agent_change(c) and c["entity"] == change["entity"]),
            key=lambda c: c["applied_at"],
        )
    out = []
    entity_tools = {f"create_{change['entity']}", f"find_{change['entity']}"}
    for c in later:
        if is_agent_change(c):  # an agent listing the entity's tools needs the entity
            if change["action"] == "add_entity" and entity_tools & set(
                (c["after"] or {}).get("tools", [])
            ):
                out.append(c)
            continue
        refs = {f.get("references") for f in (c["spec"].get("fields") or [])}
        if c["entity"] == change["entity"] or change["entity"] in refs:
            out.append(c)
    return sorted(out, key=lambda c: c["applied_at"])


def rollback_change(
    db: Database, settings: Settings, change_id: uuid.UUID, *, actor: str
) -> dict[str, Any]:
    """Roll back an applied change: entity back to its state before it, data kept, audited.

    Raises:
        ConflictError: the change is not applied, or later changes depend on it (named).
        MechanicError: a step failed; files and HEAD were put back and the failure recorded.
    """
    with db.engine.connect() as conn:
        change = registry.get_change(conn, change_id)
    if change["status"] != "applied":
        raise ConflictError(f"change {change_id} is {change['status']}, not applied")
    if is_agent_change(change):
        with schema_lock(db, settings.mechanic_lock_wait):
            return rollback_agent_change(db, settings, change, actor=actor)
    with schema_lock(db, settings.mechanic_lock_wait) as conn:
        blocking = dependants(conn, change)
        live = current_heads(conn)
        conn.commit()
        if blocking:
            names = "; ".join(f"{c['id']} ({c['plan'].get('message')})" for c in blocking)
            raise ConflictError(
                f"later changes depend on change {change_id}: {names}; roll them back first"
            )
        newest = change["revision"] in live
        return _rollback_locked(db, settings, change, actor, newest=newest)


def _rollback_locked(
    db: Database, settings: Settings, change: dict[str, Any], actor: str, *, newest: bool
) -> dict[str, Any]:
    project = Path(settings.project_dir)
    repo = gitops.open_repo(settings)
    gitops.check_remote(repo, settings)
    branch = gitops.current_branch(repo)
    spec = ChangeSpec.model_validate(change["spec"])
    model = str(model_path(change["entity"]))
    rel = [f["path"] for f in change["plan"]["files"]] if newest else [model]
    paths = gitops.repo_paths(repo, project, rel)
    previous = gitops.head_sha(repo)
    details: dict[str, Any] = {
        "change_id": str(change["id"]),
        "entity": change["entity"],
        "reverted_commit": change["git_commit"],
        "files_changed": rel,
        "revision": change["down_revision"] if newest else change["revision"],
        "rolled_back_revision": change["revision"],
        "newest": newest,
    }
    message = (
        f"Roll back: {spec.summary()}\n\nReverts {change['git_commit']}; the table and its data "
        "are kept.\n"
    )
    step = "git revert" if newest else "write files"
    heads_before = set(script_heads(settings))
    try:
        if newest:
            sha = gitops.revert(
                repo, change["git_commit"], message + f"Revision: {details['revision']}\n"
            )
        else:
            # Its revision stays in the history (later ones build on it); the model goes back.
            before = change["before"]
            content = render_model(EntityDef.model_validate(before)) if before else None
            gitops.ensure_clean(repo, paths)
            _write_files(project, [{"path": model, "content": content}])
            step = "git commit"
            sha = gitops.commit(repo, paths, message + f"Revision: {change['revision']} (kept)\n")
        step = "git push"
        details["pushed_to"] = gitops.push(repo, settings)
        step = "record"
        with db.engine.begin() as tx:
            if newest:
                # The table stays (data kept); the history no longer includes the revision.
                # What it built on (its down revision, a core head it depended on) is a head
                # again: applied, so stamped.
                tx.execute(UNSTAMP, {"rev": change["revision"]})
                for rev in sorted(set(script_heads(settings)) - heads_before):
                    tx.execute(STAMP, {"rev": rev})
            revision = change["down_revision"] if newest else change["revision"]
            _go_live(tx, dict(change, revision=revision), change["before"])
            return registry.record_success(
                tx,
                change,
                action="rollback",
                actor=actor,
                details=details,
                sha=sha,
                branch=branch,
                status="rolled_back",
                rollback_commit=sha,
            )
    except Exception as exc:
        error = f"{step} failed: {exc}"
        abandon_rollback(
            db,
            repo,
            change,
            previous=previous,
            paths=paths,
            actor=actor,
            details=details,
            branch=branch,
            error=error,
        )
        raise MechanicError(f"rolling back {spec.summary()}: {error}") from exc
