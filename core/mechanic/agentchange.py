"""The mechanic evolves agents: ``add_agent`` / ``update_agent`` specs, planned and applied.

Same path as a schema change, without SQL: plan (the agent's YAML, its diff, and every
tool, handoff target and model checked against the registry) -> a person approves ->
apply (YAML written in the deployment repository's ``agents/``, git commit, the agent's
registry row at a new version, audit row) -> live in every process (the registry
fingerprint changes, so each process recompiles its graphs before its next turn) ->
roll back (the commit reverted, the previous definition back at a new version, audit
row). Never code: tools are chosen from the registry, modules written by people.
"""

from __future__ import annotations

import datetime as dt
import difflib
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from sqlalchemy import Connection, select

from config import Settings
from core.db.engine import Database
from core.errors import ConflictError, MechanicError, NotFoundError, ValidationFailed
from core.mechanic import gitops, registry
from core.mechanic.spec import ChangeSpec, describe, parse_spec
from core.mechanic.tools import entity_tool_names
from core.models import Agent, AiModel
from core.registry.specs import NAME_RE, AgentSpec, dump_agent, load_agent_file, parse_agent
from core.registry.store import active_names, deactivate_agent, upsert_agent

AGENT_ACTIONS = ("add_agent", "update_agent")
AGENTS_DIR = Path("agents")
# Fields an update may change; anything else of the agent's YAML is kept as it is.
CHANGEABLE = ("description", "system_prompt", "model", "tools", "handoffs")


class AgentChangeSpec(BaseModel):
    """An agent to add, or the parts of an existing agent to change."""

    model_config = ConfigDict(extra="forbid")

    action: Literal["add_agent", "update_agent"]
    agent: str = Field(description="lower_snake_case agent name")
    description: str | None = Field(default=None, max_length=500)
    system_prompt: str | None = Field(default=None, max_length=20_000)
    model: str | None = Field(
        default=None, description="preferred model (a name in the model catalogue); null: any"
    )
    tools: list[str] | None = Field(
        default=None, description="tool names from the registry, entity tools included"
    )
    handoffs: list[str] | None = Field(default=None, description="agents it may hand off to")

    @field_validator("agent")
    @classmethod
    def _name(cls, value: str) -> str:
        if not NAME_RE.match(value):
            raise ValueError(f"agent name {value!r} must match {NAME_RE.pattern}")
        return value

    @model_validator(mode="after")
    def _shape(self) -> AgentChangeSpec:
        if self.action == "add_agent" and not (self.system_prompt or "").strip():
            raise ValueError("add_agent needs a system_prompt")
        if self.action == "update_agent" and not self.changed():
            raise ValueError(f"update_agent needs at least one of {', '.join(CHANGEABLE)}")
        return self

    def changed(self) -> list[str]:
        """The agent fields this spec sets (an explicit ``model: null`` counts)."""
        return [k for k in CHANGEABLE if k in self.model_fields_set]

    def summary(self) -> str:
        if self.action == "add_agent":
            return f"add agent {self.agent}"
        return f"update agent {self.agent} ({', '.join(self.changed())})"


def _diff(path: str, old: str | None, new: str | None) -> str:
    return "".join(
        difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            fromfile=f"a/{path}" if old is not None else "/dev/null",
            tofile=f"b/{path}" if new is not None else "/dev/null",
        )
    )


def check_references(conn: Connection, spec: AgentSpec) -> None:
    """Every tool is a registry tool (or an entity tool), every handoff target an active
    agent and the model one of the catalogue's.

    Raises:
        ValidationFailed: naming the field and the unknown names (422).
    """
    tools, agents = active_names(conn)
    tools |= entity_tool_names(conn)
    unknown = [t for t in spec.tools if t not in tools]
    if unknown:
        raise ValidationFailed(
            f"tools: unknown tools {', '.join(map(repr, unknown))} (known: "
            f"{', '.join(sorted(tools))}); tools are modules written by people, not generated"
        )
    strays = [a for a in spec.handoffs if a not in agents]
    if strays:
        raise ValidationFailed(
            f"handoffs: unknown agents {', '.join(map(repr, strays))} (known: "
            f"{', '.join(sorted(agents))})"
        )
    if spec.model is not None:
        models = set(conn.execute(select(AiModel.name)).scalars())
        if spec.model not in models:
            raise ValidationFailed(
                f"model: unknown model {spec.model!r} (known: {', '.join(sorted(models))})"
            )


def build_agent_plan(db: Database, settings: Settings, spec: AgentChangeSpec) -> dict[str, Any]:
    """The agent's new YAML, its diff and the reference checks; nothing is written.

    Raises:
        ConflictError: add_agent of an agent that exists.
        NotFoundError: update_agent of an agent the deployment has no file for.
        ValidationFailed: unknown tools, handoff targets or model, or an invalid agent.
    """
    rel = AGENTS_DIR / f"{spec.agent}.yaml"
    path = Path(settings.project_dir) / rel
    current = load_agent_file(path) if path.is_file() else None
    old_text = path.read_text(encoding="utf-8") if path.is_file() else None
    with db.engine.connect() as conn:
        row = conn.execute(select(Agent.__table__).where(Agent.name == spec.agent)).first()
        if spec.action == "add_agent" and (current is not None or (row and row.is_active)):
            raise ConflictError(f"agent: {spec.agent!r} already exists; use update_agent")
        if spec.action == "update_agent" and current is None:
            where = "an assistant (change it through /assistants)" if row else "unknown"
            raise NotFoundError(
                f"agent: {spec.agent!r} has no agents/{spec.agent}.yaml in the deployment "
                f"repository ({where})"
            )
        data: dict[str, Any] = current.to_json() if current else {"name": spec.agent}
        data |= {k: getattr(spec, k) for k in spec.changed()}
        new = parse_agent(data, where=f"agent {spec.agent!r}")
        check_references(conn, new)
    text = dump_agent(new)
    if text == old_text:
        raise ValidationFailed(f"{', '.join(spec.changed())}: the update changes nothing")
    return {
        "files": [{"path": str(rel), "content": text}],
        "diff": _diff(str(rel), old_text, text),
        "sql": "",
        "lint": None,
        "dry_run": {
            "ok": True,
            "steps": ["tools, handoff targets and model found in the registry"],
            "error": None,
            "seconds": 0.0,
            "differences": [],
        },
        "revision": None,
        "down_revision": None,
        "message": spec.summary(),
        "before_yaml": old_text,
        "before": current.to_json() if current else None,
        "after": new.to_json(),
    }


def plan_agent_change(
    db: Database,
    settings: Settings,
    spec: AgentChangeSpec,
    *,
    actor: str,
    instruction: str | None = None,
) -> dict[str, Any]:
    """Plan ``spec`` and store it as a ``planned`` change (``entity`` holds the agent)."""
    plan = build_agent_plan(db, settings, spec)
    with db.engine.begin() as conn:
        change_id = registry.insert_change(
            conn,
            action=spec.action,
            entity=spec.agent,
            spec=spec.model_dump(mode="json", exclude_unset=True),
            instruction=instruction,
            status="planned",
            plan=plan,
            before=plan["before"],
            after=plan["after"],
            created_by=actor,
        )
        return registry.get_change(conn, change_id)


def _spec(change: dict[str, Any]) -> AgentChangeSpec:
    return AgentChangeSpec.model_validate(change["spec"])


def apply_agent_change(
    db: Database, settings: Settings, change: dict[str, Any], *, actor: str
) -> dict[str, Any]:
    """Write, commit and register an agent change (the caller holds the mechanic's lock).

    The plan is made again first: a YAML edited since, or a tool gone since, refuses a
    planned change as stale; a rolled-back change is simply planned afresh.
    """
    from core.mechanic.apply import _fail, _write_files

    fresh = build_agent_plan(db, settings, _spec(change))
    if change["status"] == "planned" and fresh["files"] != change["plan"]["files"]:
        raise ConflictError(
            f"stale plan: agents/{change['entity']}.yaml or the registry changed since it was "
            "planned; plan the change again"
        )
    project = Path(settings.project_dir)
    rel = [f["path"] for f in fresh["files"]]
    repo, branch, paths, previous = gitops.open_workspace(settings, project, rel)
    details: dict[str, Any] = {
        "change_id": str(change["id"]),
        "agent": change["entity"],
        "spec": change["spec"],
        "instruction": change["instruction"],
        "files_changed": rel,
    }
    step = "write files"
    try:
        _write_files(project, fresh["files"])
        step = "git commit"
        headline = change["instruction"] or fresh["message"]
        sha = gitops.commit(repo, paths, f"{headline}\n\nChange: {change['id']}\n")
        step = "git push"
        details["pushed_to"] = gitops.push(repo, settings)
        step = "record"
        with db.engine.begin() as tx:
            spec = AgentSpec.from_json(fresh["after"])
            details["registry"] = upsert_agent(tx, spec, actor=actor)
            details["version"] = _version(tx, spec.name)
            return registry.record_success(
                tx,
                change,
                action="agent_change",
                actor=actor,
                details=details,
                sha=sha,
                branch=branch,
                status="applied",
                plan=fresh,
                before=fresh["before"],
                after=fresh["after"],
                git_commit=sha,
                applied_at=dt.datetime.now(dt.UTC),
            )
    except Exception as exc:
        error = f"{step} failed: {exc}"
        gitops.restore(repo, previous, paths)
        _fail(
            db,
            change,
            action="agent_change",
            actor=actor,
            error=error,
            details=details,
            branch=branch,
            status_after="failed" if change["status"] == "planned" else change["status"],
        )
        raise MechanicError(f"applying {fresh['message']}: {error}") from exc


def _version(conn: Connection, name: str) -> int:
    return int(conn.execute(select(Agent.version).where(Agent.name == name)).scalar_one())


def agent_dependants(conn: Connection, change: dict[str, Any]) -> list[str]:
    """Why an applied agent change cannot be rolled back (empty: it can)."""
    name = change["entity"]
    reasons = [
        f"{c['id']} ({c['plan'].get('message')})"
        for c in registry.list_changes(conn, status="applied", limit=10_000)
        if c["action"] in AGENT_ACTIONS
        and c["entity"] == name
        and c["id"] != change["id"]
        and c["applied_at"] > change["applied_at"]
    ]
    if change["action"] == "add_agent":
        rows = conn.execute(select(Agent.name, Agent.spec).where(Agent.is_active.is_(True)))
        reasons += [
            f"agent {r.name!r} hands off to it"
            for r in rows
            if r.name != name and name in (r.spec or {}).get("handoffs", [])
        ]
    return reasons


def rollback_agent_change(
    db: Database, settings: Settings, change: dict[str, Any], *, actor: str
) -> dict[str, Any]:
    """Revert an agent change's commit and put its previous definition back in the registry
    (an added agent is deactivated; its row is kept, as history refers to it).

    Raises:
        ConflictError: a later change of the same agent, or an agent handing off to it.
        MechanicError: a step failed; files and HEAD were put back and the failure recorded.
    """
    from core.mechanic.apply import abandon_rollback

    with db.engine.connect() as conn:
        blocking = agent_dependants(conn, change)
    if blocking:
        raise ConflictError(
            f"later changes depend on change {change['id']}: {'; '.join(blocking)}; "
            "roll them back first"
        )
    spec = _spec(change)
    project = Path(settings.project_dir)
    rel = [f["path"] for f in change["plan"]["files"]]
    repo, branch, paths, previous = gitops.open_workspace(settings, project, rel)
    details: dict[str, Any] = {
        "change_id": str(change["id"]),
        "agent": change["entity"],
        "reverted_commit": change["git_commit"],
        "files_changed": rel,
    }
    step = "git revert"
    try:
        sha = gitops.revert(
            repo,
            change["git_commit"],
            f"Roll back: {spec.summary()}\n\nReverts {change['git_commit']}.\n"
            f"Change: {change['id']}\n",
        )
        step = "git push"
        details["pushed_to"] = gitops.push(repo, settings)
        step = "record"
        with db.engine.begin() as tx:
            if change["before"] is None:
                deactivate_agent(tx, change["entity"], actor=actor)
                details["registry"] = "deactivated"
            else:
                before = AgentSpec.from_json(change["before"])
                details["registry"] = upsert_agent(tx, before, actor=actor)
            details["version"] = _version(tx, change["entity"])
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


def is_agent_change(change: dict[str, Any]) -> bool:
    return change["action"] in AGENT_ACTIONS


AnySpec = Annotated[ChangeSpec | AgentChangeSpec, Field(discriminator="action")]


def parse_change(raw: str | bytes | dict[str, Any]) -> ChangeSpec | AgentChangeSpec:
    """A schema spec (:func:`core.mechanic.spec.parse_spec`) or an agent spec, by its action.

    Raises:
        ValidationFailed: not JSON/YAML, or not a valid spec; the message names the field.
    """
    data: Any = raw
    if isinstance(raw, str | bytes):
        try:
            data = yaml.safe_load(raw)
        except yaml.YAMLError as exc:
            raise ValidationFailed(f"spec is neither JSON nor YAML: {exc}") from None
    if isinstance(data, dict) and data.get("action") in AGENT_ACTIONS:
        try:
            return AgentChangeSpec.model_validate(data)
        except ValidationError as exc:
            raise ValidationFailed("invalid spec: " + describe(exc)) from None
    return parse_spec(data)
