"""Alembic environment for Agentry: core schema and mechanic revisions, one history.

Only tables present in Agentry's metadata are compared, so autogenerate never
proposes dropping LangGraph's checkpoint tables or anything else it does not own.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from core.db.engine import create_db_engine, normalize_url
from core.db.metadata import compare_type, include_object, only_tables, target_metadata
from core.db.migrate import migration_settings

config = context.config


def _configure(connection: Connection) -> None:
    # The mechanic compares only dynamic tables: core and LangGraph tables are never touched.
    tables = config.attributes.get("only_tables")
    include_name, include = only_tables(tables) if tables is not None else (None, include_object)
    context.configure(
        connection=connection,
        target_metadata=target_metadata(migration_settings()),
        include_object=include,
        include_name=include_name,
        compare_type=compare_type,
        compare_server_default=False,
        transaction_per_migration=False,
    )


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        with context.begin_transaction():
            context.run_migrations()
        return
    # Plain `alembic upgrade head` from a shell: connect from the settings.
    settings = migration_settings()
    if settings.database_url is None:
        raise SystemExit("set DATABASE_URL, or run `agentry db upgrade` for the embedded server")
    engine = create_db_engine(normalize_url(settings.database_url), settings)
    with engine.begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()


def run_migrations_offline() -> None:
    context.configure(
        url="postgresql+psycopg://",
        target_metadata=target_metadata(migration_settings()),
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
