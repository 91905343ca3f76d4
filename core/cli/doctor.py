"""``agentry doctor``: is everything Agentry needs in place?"""

from __future__ import annotations

import json

import typer
from rich.table import Table

from config import get_settings
from core.cli.edge import console, edge
from core.db import open_database
from core.errors import DatabaseError
from core.health import Check, database_checks, embedding_check


@edge
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    skip_embedding: bool = typer.Option(
        False, "--skip-embedding", help="Do not load the embedding model (faster)."
    ),
) -> None:
    """Check database, pgvector, HNSW, migrations, checkpoints, pool and embeddings.

    Exits 1 when any check fails.
    """
    settings = get_settings()
    checks: list[Check]
    try:
        db = open_database(settings)
    except DatabaseError as exc:
        checks = [Check("database", False, exc.message)]
    else:
        try:
            checks = database_checks(db, settings)
        finally:
            db.dispose()
    if not skip_embedding:
        checks.append(embedding_check(settings))
    ok = all(c.ok for c in checks)

    if as_json:
        typer.echo(json.dumps({"ok": ok, "checks": [c.as_dict() for c in checks]}, indent=2))
    else:
        table = Table(title="agentry doctor")
        table.add_column("check")
        table.add_column("")
        table.add_column("detail")
        for c in checks:
            table.add_row(c.name, "[green]ok[/]" if c.ok else "[red]FAIL[/]", c.detail)
        console.print(table)
    if not ok:
        raise typer.Exit(1)
