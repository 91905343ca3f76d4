"""``agentry up`` and ``agentry seed``."""

from __future__ import annotations

import logging
import signal
import sys
from types import FrameType

import typer

from config import get_settings
from core.cli.database import cli_database
from core.cli.edge import console, edge


@edge
def up(
    host: str = typer.Option(None, help="Interface to bind (default AGENTRY_HOST, 127.0.0.1)."),
    port: int = typer.Option(None, help="Port to listen on (default AGENTRY_PORT, 8000)."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
) -> None:
    """Migrate, seed the registries when empty, and serve the HTTP API."""
    import uvicorn

    from core.api.app import create_app
    from core.db import open_database, prepare_database
    from core.memory.service import check_memory
    from core.registry.seed import registry_is_empty, seed
    from core.runtime.router import HOW_TO_CONFIGURE, register_default_model, usable_models

    settings = get_settings()
    host = host or settings.host
    port = port or settings.port
    where = (
        "embedded PostgreSQL in " + str(settings.home_dir)
        if settings.uses_embedded_database
        else "DATABASE_URL"
    )
    with console.status(f"preparing the database ({where})..."):
        db = open_database(settings)
        prepare_database(db, settings)
        check_memory(db.engine, settings)  # a mismatched embedding model stops here, in one line
        with db.engine.begin() as conn:
            report = seed(conn, settings) if registry_is_empty(conn) else None
    if report is not None:
        console.print(f"seeded {report.models_added} models and {report.agents_added} agents")
    with db.engine.begin() as conn:
        register_default_model(conn, settings)
        no_model = not usable_models(conn, settings)
    if no_model:  # said now, not at the first chat turn's 503
        console.print(f"[yellow]warning:[/] {HOW_TO_CONFIGURE}", highlight=False, soft_wrap=True)
    console.print(f"Agentry on [bold]http://{host}:{port}[/] ({db.display_url})")
    logging.basicConfig(level=logging.INFO)
    # uvicorn re-raises SIGTERM after its graceful shutdown; with the default
    # handler that would end the process without running atexit, leaving the
    # embedded PostgreSQL running. Exit normally instead.
    signal.signal(signal.SIGTERM, _exit_normally)
    try:
        uvicorn.run(create_app(db, settings), host=host, port=port, log_level=log_level)
    finally:
        db.dispose()


def _exit_normally(signum: int, frame: FrameType | None) -> None:
    sys.exit(0)


@edge
def seed_command() -> None:
    """Add the default models and the assistant and mechanic agents (idempotent)."""
    from core.db import prepare_database
    from core.registry.seed import seed

    with cli_database() as (db, settings):
        prepare_database(db, settings)
        with db.engine.begin() as conn:
            report = seed(conn, settings)
    if report.changed:
        console.print(f"added {report.models_added} models and {report.agents_added} agents")
    else:
        console.print("nothing to add: registries already seeded")
