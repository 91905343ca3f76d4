"""``agentry doctor``: is everything Agentry needs in place?"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from config import Settings, get_settings
from core.cli.edge import console, edge
from core.errors import DatabaseError

if TYPE_CHECKING:
    from core.db import Database
    from core.health import Check


@edge
def doctor(
    as_json: bool = typer.Option(False, "--json", help="Print the checks as JSON."),
    skip_embedding: bool = typer.Option(
        False, "--skip-embedding", help="Do not load the embedding model (faster)."
    ),
) -> None:
    """Check database, pgvector, HNSW, migrations, checkpoints, pool, embeddings and
    what the mechanic needs (squawk, git repository and remote, pg_dump).

    Exits 1 when any check fails.
    """
    from core.db import open_database
    from core.health import Check, database_checks, embedding_check
    from core.mechanic.readiness import mechanic_checks

    settings = get_settings()
    checks: list[Check]
    try:
        db = open_database(settings, create=False)
    except DatabaseError as exc:
        checks = [Check("database", False, exc.message), *mechanic_checks(settings, None)]
    else:
        try:
            checks = database_checks(db, settings)
            checks += _mechanic_checks(db, settings, reachable=checks[0].ok)
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
            verdict = (
                "[red]FAIL[/]" if not c.ok else "[yellow]WARN[/]" if c.warning else "[green]ok[/]"
            )
            table.add_row(c.name, verdict, c.detail)
        console.print(table)
    if not ok:
        raise typer.Exit(1)


def _mechanic_checks(db: Database, settings: Settings, *, reachable: bool) -> list[Check]:
    from core.mechanic.readiness import mechanic_checks

    if not reachable:
        return mechanic_checks(settings, None)
    with db.engine.connect() as conn:
        return mechanic_checks(settings, conn)
