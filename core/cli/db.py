"""``agentry db``: schema migrations."""

from __future__ import annotations

import typer

from core.cli.database import cli_database
from core.cli.edge import console, edge

app = typer.Typer(help="Database schema: upgrade and inspect migrations.", no_args_is_help=True)


@app.command()
@edge
def upgrade() -> None:
    """Create pgvector, apply every migration up to head, set up checkpoint tables,
    register the mechanic's entities of the project that the database does not know."""
    from core.db import migrate, prepare_database
    from core.mechanic.restore import restore_entity_types

    with cli_database(create=True) as (db, settings):
        with console.status("migrating..."):
            prepare_database(db, settings)
        with db.engine.begin() as conn:
            restored = restore_entity_types(conn, settings.project_dir)
        if restored:
            console.print(f"entity types restored from the project: {', '.join(restored)}")
        with db.engine.connect() as conn:
            console.print(f"database at revision [bold]{migrate.current_revision(conn)}[/] (head)")


@app.command()
@edge
def current() -> None:
    """Print the revision the database is at and the head revision."""
    from core.db import migrate

    with cli_database(require_schema=False) as (db, settings):
        with db.engine.connect() as conn:
            rev = migrate.current_revision(conn)
        console.print(f"current: {rev or '(none)'}  head: {migrate.head_revision(settings)}")
