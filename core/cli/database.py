"""The database a CLI command works on: opened from the settings, disposed after."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from config import Settings, get_settings
from core.errors import DatabaseError

if TYPE_CHECKING:
    from core.db import Database


@contextmanager
def cli_database(
    *, create: bool = False, require_schema: bool = True
) -> Iterator[tuple[Database, Settings]]:
    """Open the configured database for one command.

    Args:
        create: make the database when missing (only ``up`` and ``db upgrade`` do).
        require_schema: refuse, in one line, a database never migrated (``db current``
            reads one happily) instead of failing later on a missing table.

    Yields:
        The database and the process settings; the engine is disposed on exit.

    Raises:
        DatabaseError: no database where configured, or one without Agentry's schema.
    """
    # Imported here: the engine pulls in SQLAlchemy, psycopg and LangGraph's saver,
    # which `agentry --help` and commands that never open the database do without.
    from core.db import migrate, open_database

    settings = get_settings()
    db = open_database(settings, create=create)
    try:
        if require_schema and not create:
            with db.engine.connect() as conn:
                revision = migrate.current_revision(conn)
            if revision is None:
                raise DatabaseError(
                    f"{db.display_url} has no Agentry schema yet: run `agentry db upgrade` "
                    "(or `agentry up`) first"
                )
        yield db, settings
    finally:
        db.dispose()
