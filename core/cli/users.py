"""``agentry users``: people and their API keys."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from core.cli.database import cli_database
from core.cli.edge import console, edge

app = typer.Typer(help="Users and API keys.", no_args_is_help=True)
# How changes made from a shell are named in the audit log.
ACTOR = "cli"


@app.command()
@edge
def create(
    email: str = typer.Option(..., "--email", help="Unique email address."),
    name: str = typer.Option(None, "--name", help="Display name."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a user and print its API key once (only a hash is stored)."""
    from core.auth.users import create_user

    with cli_database() as (db, _), db.engine.begin() as conn:
        user, key = create_user(conn, email, name=name, admin=admin, actor=ACTOR)
    if as_json:
        typer.echo(
            json.dumps(
                {"id": str(user.id), "email": user.email, "role": user.role.value, "api_key": key}
            )
        )
    else:
        console.print(f"created {user.role.value} {user.email} ({user.id})")
        console.print(f"API key (shown once): [bold]{key}[/]", highlight=False)


@app.command("rotate-key")
@edge
def rotate(email: str = typer.Option(..., "--email")) -> None:
    """Give a user a new API key; the old one stops working."""
    from core.auth.users import rotate_key

    with cli_database() as (db, _), db.engine.begin() as conn:
        key = rotate_key(conn, email, actor=ACTOR)
    console.print(f"new API key (shown once): [bold]{key}[/]", highlight=False)


@app.command("set-role")
@edge
def set_role_command(
    email: str = typer.Option(..., "--email"),
    role: str = typer.Option(..., "--role", help="admin or user."),
) -> None:
    """Grant or revoke the admin role (audited)."""
    from core.auth.users import set_role, user_id_by_email
    from core.errors import ValidationFailed
    from core.models import UserRole

    if role not in {r.value for r in UserRole}:
        raise ValidationFailed(f"--role: {role!r} is not admin or user")
    with cli_database() as (db, _), db.engine.begin() as conn:
        done = set_role(conn, user_id_by_email(conn, email), UserRole(role), actor=ACTOR)
    console.print(f"{done['email']} is now {done['role']}")


@app.command("list")
@edge
def list_command() -> None:
    """List users."""
    from core.auth.users import list_users

    with cli_database() as (db, _), db.engine.connect() as conn:
        rows = list_users(conn)
    table = Table("email", "role", "active", "id")
    for row in rows:
        table.add_row(str(row["email"]), str(row["role"]), str(row["is_active"]), str(row["id"]))
    console.print(table)


@app.command("limits")
@edge
def limits_command(
    email: str = typer.Option(..., "--email", help="The user (email or id)."),
    requests: int = typer.Option(
        None, "--requests", min=0, help="Requests a minute (0: no limit)."
    ),
    turns: int = typer.Option(None, "--turns", min=0, help="Turns a minute (0: no limit)."),
    reset: bool = typer.Option(False, "--reset", help="Back to the role's defaults."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Show a user's rate limits, or set its own (they win over the role's defaults)."""
    from core.conversations.importing import resolve_user
    from core.limits.buckets import UserLimits, get_limits, set_limits

    with cli_database() as (db, settings), db.engine.begin() as conn:
        user_id = resolve_user(conn, email)
        if reset:
            set_limits(conn, user_id, UserLimits(None, None), actor="system")
        elif requests is not None or turns is not None:
            own = get_limits(conn, user_id, settings)
            set_limits(
                conn,
                user_id,
                UserLimits(
                    own["requests_per_minute"] if requests is None else requests,
                    own["turns_per_minute"] if turns is None else turns,
                ),
                actor="system",
            )
        found = get_limits(conn, user_id, settings)
    if as_json:
        typer.echo(json.dumps(found))
        return
    effective = found["effective"]
    for kind in ("requests_per_minute", "turns_per_minute"):
        own = found[kind]
        source = "own" if own is not None else "role default"
        shown = effective[kind] or "unlimited"
        console.print(f"{kind.replace('_', ' ')}: {shown} ({source})")
    if not effective["enabled"]:
        console.print("rate limits are off (AGENTRY_RATE_LIMITS=false)")
