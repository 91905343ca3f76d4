"""Persistence: the engine, the embedded server, migrations, checkpoints."""

from __future__ import annotations

from config import Settings
from core.db import extensions, migrate
from core.db.engine import Database, open_database


def prepare_database(db: Database, settings: Settings) -> None:
    """Make a database ready to serve: the deployment repository, pgvector, every Alembic
    head (core and deployment), checkpoint tables.

    Args:
        db: the database to prepare.
        settings: read by the revisions (dims, HNSW parameters).

    Raises:
        ExtensionMissingError: the server has no pgvector.
        MigrationError: a revision failed (nothing of it is applied).
        ConfigError: AGENTRY_VECTOR_TYPE=halfvec on a pgvector older than 0.7.
    """
    # LangGraph's saver is imported only here: most commands never set up checkpoints.
    from core.db import checkpoints
    from core.mechanic.deployment import ensure_deployment

    # The deployment repository holds the mechanic's revisions: it exists before migrating.
    ensure_deployment(settings.project_dir)

    with db.engine.begin() as conn:
        migrate.lock_schema(conn)  # concurrent CREATE EXTENSION races otherwise
        extensions.ensure_vector(conn)
    migrate.upgrade(db.engine, settings=settings)
    # An index without vectors takes AGENTRY_VECTOR_TYPE at once (one with vectors is
    # moved by `agentry index --reembed`).
    from core.memory.storage import align_empty_index

    with db.engine.begin() as conn:
        align_empty_index(conn, settings)
    checkpoints.setup_checkpointer(db, settings.db_connect_timeout)


__all__ = ["Database", "open_database", "prepare_database"]
