"""``agentry agents`` and ``agentry tools``: the registries."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge

app = typer.Typer(help="The agent registry (agents/*.yaml).", no_args_is_help=True)
tools_app = typer.Typer(help="The tool registry (tools/*.py).", no_args_is_help=True)


@app.command("sync")
@edge
def sync() -> None:
    """Sync agents and tools from agents/*.yaml and tools/*.py (all or nothing)."""
    from core.registry.sync import sync_registry

    with cli_database() as (db, settings), db.engine.begin() as conn:
        report = sync_registry(conn, settings.project_dir, actor="system")
    for kind, name, op in report.changes:
        console.print(f"{op} {kind} {name}")
    if not report.changed:
        console.print("registry already matches the files")


@app.command("list")
@edge
def list_agents(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List agents with their version, tools and handoffs."""
    from sqlalchemy import select

    from core.models import Agent

    with cli_database() as (db, _), db.engine.connect() as conn:
        rows = conn.execute(select(Agent.__table__).order_by(Agent.name)).all()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {"name": r.name, "version": r.version, "is_active": r.is_active, "spec": r.spec}
                    for r in rows
                ]
            )
        )
        return
    table = Table("name", "version", "active", "tools", "handoffs")
    for r in rows:
        table.add_row(
            r.name,
            str(r.version),
            str(r.is_active),
            ", ".join(r.spec.get("tools", [])),
            ", ".join(r.spec.get("handoffs", [])),
        )
    console.print(table)


@tools_app.command("list")
@edge
def list_tools(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List tools with their module and input schema."""
    from sqlalchemy import select

    from core.models import Tool

    with cli_database() as (db, _), db.engine.connect() as conn:
        rows = conn.execute(select(Tool.__table__).order_by(Tool.name)).all()
    if as_json:
        typer.echo(
            json.dumps(
                [
                    {
                        "name": r.name,
                        "version": r.version,
                        "is_active": r.is_active,
                        "module_path": r.module_path,
                        "schema": r.schema,
                    }
                    for r in rows
                ]
            )
        )
        return
    table = Table("name", "version", "active", "module", "parameters")
    for r in rows:
        table.add_row(
            r.name,
            str(r.version),
            str(r.is_active),
            r.module_path,
            ", ".join((r.schema or {}).get("properties", {})),
        )
    console.print(table)
