"""``agentry audit``: read the append-only audit log."""

from __future__ import annotations

import datetime as dt
import json

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.errors import ValidationFailed


@edge
def audit(
    action: str = typer.Option(None, "--action", help="schema_change, rollback, ..."),
    actor: str = typer.Option(None, "--actor", help="mechanic, system, user:<id>"),
    since: str = typer.Option(None, "--since", help="ISO date or timestamp"),
    limit: int = typer.Option(50, "--limit", min=1, max=500),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show audit log entries, newest first."""
    from core.registry.audit import query_audit

    start = None
    if since:
        try:
            start = dt.datetime.fromisoformat(since)
        except ValueError:
            raise ValidationFailed(f"--since {since!r} is not an ISO date or timestamp") from None
        if start.tzinfo is None:
            start = start.replace(tzinfo=dt.UTC)
    with cli_database() as (db, _), db.engine.connect() as conn:
        rows = query_audit(conn, action=action, actor=actor, since=start, limit=limit)
    if as_json:
        from fastapi.encoders import jsonable_encoder

        typer.echo(json.dumps(jsonable_encoder(rows), indent=2))
        return
    table = Table("when", "action", "actor", "status", "commit", "detail")
    for r in rows:
        details = r["details"] or {}
        detail = details.get("error") or details.get("instruction") or details.get("revision") or ""
        table.add_row(
            r["created_at"].strftime("%Y-%m-%d %H:%M:%S"), r["action"], r["actor"], r["status"],
            (r["git_commit"] or "")[:10], str(detail)[:60],
        )  # fmt: skip
    console.print(table)
