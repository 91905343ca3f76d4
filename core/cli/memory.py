"""``agentry memory``: people read and edit memory blocks from the terminal."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge
from core.memory.blocks import block_history, list_blocks, write_block


def resolve_user(conn: Any, ref: str) -> Any:
    from core.conversations.importing import resolve_user as resolve  # keeps --help light

    return resolve(conn, ref)


app = typer.Typer(help="Memory blocks (always in the agent's prompt).", no_args_is_help=True)

_USER = typer.Option(..., "--user", help="Whose blocks (email or id).")
_AGENT = typer.Option(None, "--agent", help="The agent's own block; omit: shared.")
_JSON = typer.Option(False, "--json", help="Print JSON.")


@app.command("list")
@edge
def list_command(user: str = _USER, agent: str = _AGENT, as_json: bool = _JSON) -> None:
    """The user's blocks (shared ones, and the agent's with --agent)."""
    with cli_database() as (db, _), db.engine.begin() as conn:
        rows = list_blocks(conn, resolve_user(conn, user), agent)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    table = Table("label", "agent", "chars/limit", "version", "value")
    for b in rows:
        table.add_row(
            b["label"],
            b["agent"] or "(shared)",
            f"{b['chars']}/{b['limit']}",
            str(b["version"]),
            b["value"][:60],
        )
    console.print(table)


def _write(user: str, label: str, op: str, **kwargs: object) -> None:
    with cli_database() as (db, _), db.engine.begin() as conn:
        block = write_block(
            conn,
            resolve_user(conn, user),
            label,
            op=op,
            actor="cli",
            **kwargs,  # type: ignore[arg-type]
        )
    console.print(
        f"{label}: version {block['version']}, {block['chars']}/{block['limit']} characters"
    )


@app.command("set")
@edge
def set_command(
    label: str = typer.Argument(..., help="Block name (human, persona, notes...)."),
    value: str = typer.Argument(..., help="The whole new value."),
    user: str = _USER,
    agent: str = _AGENT,
    limit: int = typer.Option(None, "--limit", help="Size limit in characters."),
) -> None:
    """Create a block or set its value."""
    _write(user, label, "set", agent=agent, value=value, limit=limit)


@app.command("append")
@edge
def append_command(
    label: str = typer.Argument(...),
    text: str = typer.Argument(..., help="A line to append."),
    user: str = _USER,
    agent: str = _AGENT,
) -> None:
    """Append a line to a block."""
    _write(user, label, "append", agent=agent, value=text)


@app.command("history")
@edge
def history_command(
    label: str = typer.Argument(...), user: str = _USER, agent: str = _AGENT, as_json: bool = _JSON
) -> None:
    """Every version of a block, oldest first."""
    with cli_database() as (db, _), db.engine.begin() as conn:
        rows = block_history(conn, resolve_user(conn, user), label, agent)
    if as_json:
        typer.echo(json.dumps(rows))
        return
    for r in rows:
        console.print(f"v{r['version']} {r['created_at']} {r['actor']} {r['op']}: {r['value']!r}")
