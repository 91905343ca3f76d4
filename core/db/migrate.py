"""Alembic, driven from code: upgrade, downgrade, current and head revisions.

Migrations run on a connection we hand to Alembic (``config.attributes``), inside
one transaction holding an advisory lock, so two processes starting at once
apply a revision once.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, text

from config import Settings, get_settings
from core.errors import MigrationError

# pg_advisory_xact_lock key for schema changes: "agentry" as a 64-bit number.
MIGRATION_LOCK_KEY = 0x6167656E747279
LOCK_SQL = text("SELECT pg_advisory_xact_lock(:key)")
# Read directly rather than through Alembic's MigrationContext, which logs two INFO
# lines per call: /health asks on every probe.
VERSION_TABLE_SQL = text("SELECT to_regclass('alembic_version') IS NOT NULL")
VERSION_SQL = text("SELECT version_num FROM alembic_version")


def lock_schema(conn: Connection) -> None:
    """Hold the schema-change lock until ``conn``'s transaction ends."""
    conn.execute(LOCK_SQL, {"key": MIGRATION_LOCK_KEY})


def alembic_config(
    settings: Settings | None = None, connection: Connection | None = None
) -> Config:
    """An Alembic config pointing at ``migrations/`` of the project.

    Args:
        settings: read by revisions (embedding dims, HNSW parameters).
        connection: the connection revisions run on.
    """
    settings = settings or get_settings()
    root = Path(settings.project_dir)
    cfg = Config()
    cfg.set_main_option("script_location", str(root / "migrations"))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["settings"] = settings
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def head_revision(settings: Settings | None = None) -> str | None:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory.from_config(alembic_config(settings)).get_current_head()


def current_revision(conn: Connection) -> str | None:
    """The revision the database is at, or None before the first upgrade."""
    if not conn.execute(VERSION_TABLE_SQL).scalar_one():
        return None
    versions = list(conn.execute(VERSION_SQL).scalars())
    if len(versions) > 1:  # one linear history: several heads would be a broken database
        raise MigrationError(f"the database is at several revisions: {', '.join(versions)}")
    return versions[0] if versions else None


def _run(engine: Engine, settings: Settings | None, action: str, revision: str) -> None:
    try:
        with engine.begin() as conn:
            lock_schema(conn)
            cfg = alembic_config(settings, conn)
            if action == "upgrade":
                command.upgrade(cfg, revision)
            else:
                command.downgrade(cfg, revision)
    except MigrationError:
        raise
    except Exception as exc:
        raise MigrationError(f"{action} to {revision} failed: {exc}") from exc


def upgrade(engine: Engine, revision: str = "head", settings: Settings | None = None) -> None:
    """Bring the schema up to ``revision`` (default: head).

    Raises:
        MigrationError: a revision failed; the transaction is rolled back.
    """
    _run(engine, settings, "upgrade", revision)


def downgrade(engine: Engine, revision: str, settings: Settings | None = None) -> None:
    """Take the schema down to ``revision`` (``base`` removes every core table)."""
    _run(engine, settings, "downgrade", revision)


def migration_settings() -> Settings:
    """The settings a running revision should read (for use inside revisions)."""
    from alembic import context

    settings = context.config.attributes.get("settings")
    return settings if isinstance(settings, Settings) else get_settings()
