"""Apply planned changes: one at a time across every server process (rollback: ``rollback.py``).

Apply: advisory lock (bounded wait) -> fresh-plan check -> pg_dump backup -> write
files -> upgrade with lock_timeout -> git commit (+ push) -> registry, change row,
audit row and NOTIFY in one transaction. Any failure undoes what was done (downgrade,
or restore from the backup; files and HEAD reset) and records an audit row ``failed``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import git
from alembic import command
from sqlalchemy import Connection, text

from config import Settings
from core.db.engine import Database
from core.db.errors import data_refusal
from core.db.metadata import load_lock
from core.db.migrate import (
    MIGRATION_LOCK_KEY,
    alembic_config,
    current_revision,
    head_revision,
    parent_of_next,
    undo_target,
)
from core.errors import AgentryError, ConflictError, MechanicError
from core.mechanic import entities, gitops, registry
from core.mechanic.backup import backup_database, restore_database
from core.mechanic.dryrun import snapshot
from core.mechanic.spec import EntityDef
from core.observability.metrics import MECHANIC_APPLIES

TRY_LOCK = text("SELECT pg_try_advisory_lock(:key)")
UNLOCK = text("SELECT pg_advisory_unlock(:key)")


@contextmanager
def schema_lock(db: Database, wait: float) -> Iterator[Connection]:
    """Hold the schema-change advisory lock on a connection of its own.

    The key is the one migrations take at start-up, so an apply and a starting
    server never migrate at once. Waits at most ``wait`` seconds.

    Raises:
        ConflictError: another process held the lock for the whole wait.
    """
    conn = db.engine.connect()
    try:
        deadline = time.monotonic() + wait
        while not conn.execute(TRY_LOCK, {"key": MIGRATION_LOCK_KEY}).scalar_one():
            conn.commit()
            if time.monotonic() >= deadline:
                raise ConflictError(
                    f"another schema change is being applied; waited {wait:g} s for it "
                    "(AGENTRY_MECHANIC_LOCK_WAIT): try again when it is done"
                )
            time.sleep(0.1)
        conn.commit()
        try:
            yield conn
        finally:
            if conn.in_transaction():
                conn.rollback()
            conn.execute(UNLOCK, {"key": MIGRATION_LOCK_KEY})
            conn.commit()
    finally:
        conn.close()


def _set_timeouts(conn: Connection, settings: Settings | None) -> None:
    if settings is None:
        conn.execute(text("RESET lock_timeout"))
        conn.execute(text("RESET statement_timeout"))
    else:
        conn.execute(text(f"SET lock_timeout = '{int(settings.mechanic_lock_timeout * 1000)}ms'"))
        conn.execute(
            text(f"SET statement_timeout = '{int(settings.mechanic_statement_timeout * 1000)}ms'")
        )
    conn.commit()


def _migrate(conn: Connection, settings: Settings, action: str, target: str) -> None:
    """Run Alembic on the lock's connection (it begins and commits its own transaction)."""
    with load_lock:
        cfg = alembic_config(settings, conn)
        if action == "upgrade":
            command.upgrade(cfg, target)
        else:
            command.downgrade(cfg, target)
    if conn.in_transaction():
        conn.commit()


def _write_files(project: Path, files: list[dict[str, Any]]) -> None:
    for item in files:
        path = project / item["path"]
        if item["content"] is None:
            path.unlink(missing_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(item["content"])


def _commit_message(change: dict[str, Any], revision: str, extra: str = "") -> str:
    headline = change["instruction"] or change["plan"].get("message") or change["action"]
    return f"{headline}\n\n{extra}Revision: {revision}\nChange: {change['id']}\n"


def _go_live(conn: Connection, change: dict[str, Any], after: dict[str, Any] | None) -> None:
    """Registry row, search index and NOTIFY for the entity's new state."""
    name = change["entity"]
    if after is None:
        registry.set_entity_status(conn, name, "retired")
        entities.unindex(conn, name)
    else:
        defn = EntityDef.model_validate(after)
        registry.save_entity(conn, defn, "active", change["revision"])
        entities.reindex(conn, defn)
    registry.notify(conn, name)


def _fail(
    db: Database,
    change: dict[str, Any],
    *,
    action: str,
    actor: str,
    error: str,
    details: dict[str, Any],
    branch: str | None,
    status_after: str,
) -> None:
    with db.engine.begin() as conn:
        registry.update_change(conn, change["id"], status=status_after, error=error)
        registry.record_audit(
            conn,
            action=action,
            actor=actor,
            status="failed",
            details={**details, "error": error},
            git_branch=branch,
        )


def abandon_rollback(
    db: Database,
    repo: git.Repo,
    change: dict[str, Any],
    *,
    previous: str | None,
    paths: list[str],
    actor: str,
    details: dict[str, Any],
    branch: str | None,
    error: str,
) -> None:
    """Undo a half-done revert (the repository as it was) and record the failed rollback."""
    with contextlib.suppress(Exception):  # no revert in progress: nothing to abort
        repo.git.revert("--abort")
    gitops.restore(repo, previous, paths)
    _fail(
        db,
        change,
        action="rollback",
        actor=actor,
        error=error,
        details=details,
        branch=branch,
        status_after="applied",
    )


def apply_change(
    db: Database, settings: Settings, change_id: uuid.UUID, *, actor: str
) -> dict[str, Any]:
    """Apply a planned change (or re-apply a rolled-back one, planned afresh).

    Returns:
        The change after applying.

    Raises:
        ConflictError: another apply holds the lock past the wait, or the plan is stale.
        MechanicError: a step failed; everything was undone and recorded.
    """
    from core.mechanic.agentchange import apply_agent_change, is_agent_change
    from core.mechanic.plan import replan

    with db.engine.connect() as conn:
        change = registry.get_change(conn, change_id)
    if change["status"] == "applied":
        raise ConflictError(f"change {change_id} is already applied")
    if is_agent_change(change):
        with schema_lock(db, settings.mechanic_lock_wait):
            return apply_agent_change(db, settings, change, actor=actor)
    if change["status"] == "rolled_back":
        change = replan(db, settings, change)
    with schema_lock(db, settings.mechanic_lock_wait) as lock_conn:
        try:
            applied = _apply_locked(db, settings, lock_conn, change, actor)
        except Exception as exc:
            refused = isinstance(exc, AgentryError) and exc.status < 500
            MECHANIC_APPLIES.labels("refused" if refused else "failed").inc()
            raise
    MECHANIC_APPLIES.labels("applied").inc()
    return applied


def _apply_locked(
    db: Database, settings: Settings, conn: Connection, change: dict[str, Any], actor: str
) -> dict[str, Any]:
    project = Path(settings.project_dir)
    plan = change["plan"]
    rev, down = change["revision"], change["down_revision"]
    live_rev = current_revision(conn)
    conn.commit()
    head, mine = head_revision(settings), parent_of_next(settings)
    if live_rev != head or mine != down:
        raise ConflictError(
            f"stale plan: it builds on {down} but the deployment's next revision builds on "
            f"{mine} and the database is at {live_rev} (head {head}); plan the change again"
        )
    rel = [f["path"] for f in plan["files"]]
    repo, branch, paths, previous = gitops.open_workspace(settings, project, rel)
    details: dict[str, Any] = {
        "change_id": str(change["id"]),
        "entity": change["entity"],
        "spec": change["spec"],
        "instruction": change["instruction"],
        "files_changed": rel,
        "revision": rev,
        "down_revision": down,
        "lint": plan.get("lint"),
    }
    step, upgraded, backup = "backup", False, None
    before: dict[str, Any] | None = None
    try:
        backup = backup_database(db, settings.backup_path, str(change["id"])[:8])
        details["backup"] = str(backup)
        step = "write files"
        _write_files(project, plan["files"])
        step = "upgrade"
        before = snapshot(conn)
        conn.commit()
        _set_timeouts(conn, settings)
        started = time.perf_counter()
        _migrate(conn, settings, "upgrade", rev)
        upgraded = True
        details["upgrade_seconds"] = round(time.perf_counter() - started, 3)
        _set_timeouts(conn, None)
        step = "git commit"
        sha = gitops.commit(repo, paths, _commit_message(change, rev))
        step = "git push"
        details["pushed_to"] = gitops.push(repo, settings)
        step = "record"
        with db.engine.begin() as tx:
            _go_live(tx, change, change["after"])
            return registry.record_success(
                tx,
                change,
                action="schema_change",
                actor=actor,
                details=details,
                sha=sha,
                branch=branch,
                status="applied",
                git_commit=sha,
                backup_path=str(backup),
                applied_at=dt.datetime.now(dt.UTC),
            )
    except Exception as exc:
        error = f"{step} failed: {exc}"
        details["undo"] = _undo(
            db, settings, conn, repo, previous, paths, upgraded, rev, down, backup, before
        )
        _fail(
            db,
            change,
            action="schema_change",
            actor=actor,
            error=error,
            details=details,
            branch=branch,
            status_after="failed",
        )
        if isinstance(exc, AgentryError) and not isinstance(exc, MechanicError):
            raise type(exc)(error) from exc
        refused = data_refusal(exc, f"applying {change['plan'].get('message')}")
        if refused is not None:
            raise refused from exc
        raise MechanicError(f"applying {change['plan'].get('message')}: {error}") from exc


def _undo(
    db: Database,
    settings: Settings,
    conn: Connection,
    repo: Any,
    previous: str | None,
    paths: list[str],
    upgraded: bool,
    rev: str,
    down: str | None,
    backup: Path | None,
    before: dict[str, Any] | None,
) -> list[str]:
    """Put the database, HEAD and the files back; returns what was done (for the audit row).

    A completed upgrade is downgraded. Whatever else is left different from the schema
    snapshot taken before the upgrade (a half-built concurrent index, a failed downgrade)
    is undone by restoring the backup.
    """
    done: list[str] = []
    try:
        if conn.in_transaction():
            conn.rollback()
        _set_timeouts(conn, None)
    except Exception:  # the connection may be broken; the pool replaces it
        conn.invalidate()
    if upgraded:
        try:
            # Same timeouts as the upgrade: a blocked downgrade falls back to the backup.
            _set_timeouts(conn, settings)
            _migrate(conn, settings, "downgrade", undo_target(rev))
            _set_timeouts(conn, None)
            done.append(f"downgraded to {down}")
        except Exception as exc:
            done.append(f"downgrade failed: {exc}")
            conn.invalidate()
    if before is not None and backup is not None:
        try:
            with db.engine.connect() as check:
                now = snapshot(check)
            if now != before:
                restore_database(db, backup)
                done.append(f"schema differed from before the upgrade; restored {backup}")
        except Exception as exc:  # recorded: an operator restores from the named backup
            done.append(f"restore from {backup} failed: {exc}")
    try:
        gitops.restore(repo, previous, paths)
        done.append(f"files and HEAD reset to {previous}")
    except Exception as exc:
        done.append(f"resetting files to {previous} failed: {exc}")
    return done
