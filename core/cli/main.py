"""The ``agentry`` command: one sub-module per group of commands."""

from __future__ import annotations

import typer

import core
from core.cli import (
    agents,
    audit,
    bench,
    chat,
    db,
    doctor,
    mechanic,
    models,
    prune,
    serve,
    users,
    worker,
)
from core.cli import backup as backup_cli
from core.cli import importer as import_cli
from core.cli import index as index_cli
from core.cli import memory as memory_cli
from core.cli import search as search_cli
from core.cli import secrets as secrets_cli
from core.cli.edge import console

app = typer.Typer(
    name="agentry",
    help="Agentry: a self-evolving agent platform with vector memory.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.command("up")(serve.up)
app.command("seed")(serve.seed_command)
app.command("worker")(worker.worker)
app.command("doctor")(doctor.doctor)
app.add_typer(db.app, name="db")
app.add_typer(users.app, name="users")
app.add_typer(agents.app, name="agents")
app.add_typer(agents.tools_app, name="tools")
app.add_typer(models.app, name="models")
app.add_typer(bench.app, name="bench")
app.command("chat")(chat.chat)
app.command("prune")(prune.prune)
app.add_typer(mechanic.app, name="mechanic")
app.command("audit")(audit.audit)
app.command("search")(search_cli.search_command)
app.command("index")(index_cli.index_command)
app.add_typer(import_cli.app, name="import")
app.add_typer(memory_cli.app, name="memory")
app.command("backup")(backup_cli.backup_command)
app.command("restore")(backup_cli.restore_command)
app.add_typer(secrets_cli.app, name="secrets")


@app.command()
def version() -> None:
    """Print Agentry's version."""
    console.print(f"agentry {core.__version__}")


def run() -> None:
    """Console-script entry point."""
    app()
