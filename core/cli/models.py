"""``agentry models``: the model catalogue and the router's ranking."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge

app = typer.Typer(
    help="LLM models: catalogue, ranking, sync from an endpoint.", no_args_is_help=True
)


@app.command("list")
@edge
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Models best first; 'usable' when active with credentials in the server's environment.

    Judged from what the last server to start recorded (the names of the key variables it
    has set), not from this shell; before any server started, from this shell.
    """
    from sqlalchemy import select

    from core.models import AiModel
    from core.runtime.server_view import local_view, read_server_view

    with cli_database() as (db, settings), db.engine.connect() as conn:
        view = read_server_view(conn)
        judged_by = "server" if view is not None else "shell"
        if view is None:
            view = local_view(conn, settings)
        rows = conn.execute(
            select(AiModel.__table__).order_by(
                AiModel.priority.desc(), AiModel.reliability_score.desc(), AiModel.name
            )
        ).all()
    usable = [r.name for r in rows if view.usable(r)]
    items = [
        {
            "name": r.name,
            "provider": r.provider,
            "model_id": r.model_id,
            "api_key_env": r.api_key_env,
            "credential": r.credential,
            "active": r.is_active,
            "free": r.is_free,
            "usable": r.name in usable,
            "judged_by": judged_by,
            "priority": r.priority,
            "requests": r.request_count,
            "reliability_score": round(r.reliability_score, 3),
        }
        for r in rows
    ]
    if as_json:
        typer.echo(json.dumps(items))
        return
    table = Table(
        "name",
        "provider",
        "model id",
        "key variable",
        "credential",
        "usable",
        "free",
        "priority",
        "requests",
        "reliability",
    )
    for i in items:
        table.add_row(
            str(i["name"]),
            str(i["provider"]),
            str(i["model_id"]),
            str(i["api_key_env"]),
            str(i["credential"] or ""),
            "yes" if i["usable"] else "no",
            str(i["free"]),
            str(i["priority"]),
            str(i["requests"]),
            str(i["reliability_score"]),
        )
    console.print(table)
    if view.recorded_at is not None:
        when = view.recorded_at.astimezone().strftime("%Y-%m-%d %H:%M:%S")
        console.print(f"usable: as configured for the server started {when} (pid {view.pid})")
    else:
        console.print("usable: no server has started on this database yet; judged from this shell")
    if not usable:
        console.print(
            "no usable model: set AGENTRY_LLM_BASE_URL and AGENTRY_LLM_MODEL, or the key"
            " variable of a catalogue model (users with a stored credential a model names"
            " can use that model)"
        )


@app.command("sync")
@edge
def sync(
    endpoint: str = typer.Option(..., "--endpoint", help="OpenAI-compatible base URL."),
    free_only: bool = typer.Option(False, "--free-only", help="Keep only zero-priced models."),
    api_key_env: str = typer.Option(None, "--api-key-env", help="Variable holding the key."),
    refresh: bool = typer.Option(False, "--refresh", help="Skip the caches, ask the endpoint."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Register the models of an endpoint's /models (memory cache, database, endpoint)."""
    from core.runtime.catalogue import sync_catalogue

    with cli_database() as (db, _), db.engine.begin() as conn:
        result = sync_catalogue(
            conn, endpoint, free_only=free_only, api_key_env=api_key_env, refresh=refresh
        )
    if as_json:
        typer.echo(
            json.dumps(
                {
                    "source": result.source,
                    "written": result.written,
                    "models": [m.model_id for m in result.models],
                }
            )
        )
        return
    console.print(
        f"{len(result.models)} models from the {result.source} ({result.written} rows written)"
    )
    for m in result.models:
        console.print(f"  {m.model_id}{' (free)' if m.is_free else ''}", highlight=False)
