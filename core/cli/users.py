"""``agentry users``: people and their API keys."""

from __future__ import annotations

import json

import typer
from rich.table import Table

from config import get_settings
from core.auth.users import create_user, list_users, rotate_key
from core.cli.edge import console, edge
from core.db import open_database

app = typer.Typer(help="Users and API keys.", no_args_is_help=True)


@app.command()
@edge
def create(
    email: str = typer.Option(..., "--email", help="Unique email address."),
    name: str = typer.Option(None, "--name", help="Display name."),
    admin: bool = typer.Option(False, "--admin", help="Give the admin role."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON."),
) -> None:
    """Create a user and print its API key once (only a hash is stored)."""
    db = open_database(get_settings())
    try:
        with db.engine.begin() as conn:
            user, key = create_user(conn, email, name=name, admin=admin)
    finally:
        db.dispose()
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
    db = open_database(get_settings())
    try:
        with db.engine.begin() as conn:
            key = rotate_key(conn, email)
    finally:
        db.dispose()
    console.print(f"new API key (shown once): [bold]{key}[/]", highlight=False)


@app.command("list")
@edge
def list_command() -> None:
    """List users."""
    db = open_database(get_settings())
    try:
        with db.engine.connect() as conn:
            rows = list_users(conn)
    finally:
        db.dispose()
    table = Table("email", "role", "active", "id")
    for row in rows:
        table.add_row(str(row["email"]), str(row["role"]), str(row["is_active"]), str(row["id"]))
    console.print(table)
