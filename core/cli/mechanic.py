"""``agentry mechanic plan|apply|rollback|list|log``: schema changes from the terminal."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table
from sqlalchemy import text

from config import Settings
from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.errors import ValidationFailed

if TYPE_CHECKING:
    from core.db import Database
    from core.mechanic.spec import ChangeSpec

# Markdown: the spec example in `plan --help` keeps its lines.
app = typer.Typer(
    help="Schema changes by the mechanic: plan, review, apply, roll back.",
    rich_markup_mode="markdown",
)
ACTOR = "system"
# The README shows the same example; tests/core/cli/test_mechanic_cli.py plans it.
SPEC_EXAMPLE = """\
action: add_entity
entity: book
description: Books people mention
fields:
  - {name: title, type: string, max_length: 200, required: true, searchable: true}
  - {name: author, type: string, max_length: 200, index: true}
  - {name: year, type: integer}
  - {name: genre, type: enum, values: [fiction, non_fiction, poetry]}
  - {name: notes, type: text, searchable: true}
"""
# Rich markup would read "[fiction, ...]" as a style tag.
_ESCAPED_EXAMPLE = SPEC_EXAMPLE.replace("[", "\\[")
PLAN_HELP = f"""Plan a change: files, SQL, lint report and dry run. Nothing is applied.

A spec file (YAML or JSON), e.g. book.yaml:

{_ESCAPED_EXAMPLE}
Actions: add_entity, add_fields, add_index, retire_entity. Field types: string
(max_length), text, integer, bigint, numeric, boolean, date, timestamptz, jsonb,
reference (references), enum (values), string_list. The plan ends with the exact
command that applies it.
"""
ID_HELP = "The change's id, or a unique prefix of it (as `mechanic list` shows)."
T = TypeVar("T")


def _step(label: str, work: Callable[[], T]) -> T:
    """Run a long step under a spinner with elapsed time."""
    with Progress(
        SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(), console=console,
        transient=True,
    ) as progress:  # fmt: skip
        progress.add_task(label, total=None)
        return work()


def _print_json(value: Any) -> None:
    from fastapi.encoders import jsonable_encoder

    typer.echo(json.dumps(jsonable_encoder(value), indent=2))


def _show(change: dict[str, Any]) -> None:
    from rich.syntax import Syntax

    plan = change["plan"]
    console.print(f"[bold]{change['id']}[/] {change['status']}: {plan.get('message')}")
    console.print(f"revision {change['revision']} (on {change['down_revision']})")
    for item in plan.get("files", []):
        verb = "delete" if item["content"] is None else "write"
        console.print(f"  {verb} {item['path']}")
    if plan.get("diff") and change["status"] == "planned":
        console.print(Syntax(plan["diff"], "diff", word_wrap=True))
    lint = plan.get("lint", {})
    console.print(f"lint: {'ok' if lint.get('ok') else 'refused'}")
    for finding in lint.get("findings", []):
        console.print(f"  [{finding['rule']}] {finding['message']} (fix: {finding['fix']})")
    dry = plan.get("dry_run", {})
    console.print(f"dry run: {'ok' if dry.get('ok') else 'failed'} ({dry.get('seconds')} s)")
    if plan.get("sql"):
        console.print(Syntax(plan["sql"], "sql", word_wrap=True))
    if change.get("git_commit"):
        console.print(f"git commit {change['git_commit']}")
    if change["status"] == "rolled_back" and change.get("rollback_commit"):
        console.print(f"reverted by commit {change['rollback_commit']}")
    if change.get("error") and change["status"] == "failed":
        # An error of an earlier, since undone attempt is history, not this change's state.
        console.print(f"[red]error:[/] {change['error']}")


def _next(command: str) -> None:
    """The exact command to run next, last, so it can be copied (or scripted)."""
    console.print(f"next: [bold]{command}[/]", highlight=False, soft_wrap=True)


@app.command(help=PLAN_HELP)
@edge
def plan(
    spec_file: Path = typer.Argument(None, help="A spec file (JSON or YAML)."),
    instruction: str = typer.Option(None, "--instruction", "-i", help="Plain words instead."),
    as_json: bool = typer.Option(False, "--json", help="Print the change as JSON."),
) -> None:
    """Plan a change: files, SQL, lint report and dry run. Nothing is applied."""
    from core.mechanic.agentchange import parse_change
    from core.mechanic.plan import plan_change

    if (spec_file is None) == (instruction is None):
        raise ValidationFailed("give a spec file or --instruction (one of them)")
    with cli_database() as (db, settings):
        if spec_file is not None:
            try:
                raw = spec_file.read_text()
            except OSError as exc:
                raise ValidationFailed(f"cannot read {spec_file}: {exc.strerror}") from None
            spec = parse_change(raw)
        else:
            spec = _step("asking the mechanic agent", lambda: _ask(db, settings, instruction))
        change = _step(
            f"planning {spec.summary()}",
            lambda: plan_change(db, settings, spec, actor=ACTOR, instruction=instruction),
        )
    if as_json:
        _print_json(change)
        return
    _show(change)
    _next(f"agentry mechanic apply {change['id']}")


def _ask(db: Database, settings: Settings, instruction: str) -> ChangeSpec:
    from core.mechanic.agent import spec_from_instruction
    from core.runtime.router import ModelRouter, register_default_model

    with db.engine.begin() as conn:
        register_default_model(conn, settings)
    return spec_from_instruction(ModelRouter(db, settings), settings, instruction)


@app.command()
@edge
def apply(
    change_id: str = typer.Argument(..., help=ID_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Apply a planned change: backup, migrate, commit, record; live everywhere."""
    from core.mechanic.apply import apply_change

    with cli_database() as (db, settings):
        found = _resolve(db, change_id)
        change = _step("applying", lambda: apply_change(db, settings, found, actor=ACTOR))
    if as_json:
        _print_json(change)
        return
    _show(change)
    _next(f"agentry mechanic rollback {change['id']}   (to undo it; data is kept)")


@app.command()
@edge
def rollback(
    change_id: str = typer.Argument(..., help=ID_HELP),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Roll back a change: the entity is retired (data kept) and the commit reverted."""
    from core.mechanic.rollback import rollback_change

    with cli_database() as (db, settings):
        found = _resolve(db, change_id)
        change = _step("rolling back", lambda: rollback_change(db, settings, found, actor=ACTOR))
    _print_json(change) if as_json else _show(change)


def _resolve(db: Database, ref: str) -> uuid.UUID:
    from core.mechanic import registry

    with db.engine.connect() as conn:
        return registry.resolve_change_id(conn, ref)


@app.command("list")
@edge
def list_command(
    status: str = typer.Option(None, "--status", help="planned, applied, failed, rolled_back"),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """List changes, newest first."""
    from core.mechanic import registry

    with cli_database() as (db, _), db.engine.connect() as conn:
        changes = registry.list_changes(conn, status=status)
    if as_json:
        _print_json(changes)
        return
    table = Table("status", "change", "revision", "created")
    # Whole ids, whatever the terminal's width: they are what apply and rollback take.
    table.add_column("id", no_wrap=True, min_width=36)
    for c in changes:
        table.add_row(
            c["status"], str(c["plan"].get("message")), str(c["revision"]),
            c["created_at"].strftime("%Y-%m-%d %H:%M:%S"), str(c["id"]),
        )  # fmt: skip
    console.print(table)


ROLLBACKS = text(
    "SELECT details->>'change_id' AS change_id, git_commit FROM audit_log"
    " WHERE action = 'rollback' AND status = 'succeeded' ORDER BY created_at"
)


@app.command("log")
@edge
def log_command(as_json: bool = typer.Option(False, "--json")) -> None:
    """The chain of changes, oldest first: revision on its parent, status, commits."""
    from core.mechanic import registry

    with cli_database() as (db, _), db.engine.connect() as conn:
        changes = list(reversed(registry.list_changes(conn, limit=10_000)))
        undone = {r.change_id: r.git_commit for r in conn.execute(ROLLBACKS)}
    chain = [
        {
            "id": str(c["id"]),
            "status": c["status"],
            "change": c["plan"].get("message"),
            "revision": c["revision"],
            "down_revision": c["down_revision"],
            "commit": c["git_commit"],
            "rollback_commit": undone.get(str(c["id"])) if c["status"] == "rolled_back" else None,
            "created_at": c["created_at"],
        }
        for c in changes
    ]
    if as_json:
        _print_json(chain)
        return
    table = Table("created", "id", "status", "change", "revision", "commit", "rolled back by")
    for c in chain:
        table.add_row(
            c["created_at"].strftime("%Y-%m-%d %H:%M:%S"), c["id"][:8], c["status"],
            str(c["change"]), f"{c['revision']} ← {c['down_revision']}",
            (c["commit"] or "")[:12], (c["rollback_commit"] or "")[:12],
        )  # fmt: skip
    console.print(table)
