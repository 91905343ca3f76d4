"""Alembic, driven from code: upgrade, downgrade, current and head revisions.

Migrations run on a connection we hand to Alembic (``config.attributes``), inside
one transaction holding an advisory lock, so two processes starting at once
apply a revision once.
"""

from __future__ import annotations

import os
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


# Core revisions ship inside the package; the mechanic's live in the deployment
# repository (AGENTRY_PROJECT_DIR) and continue the same history on their own branch.
CORE_MIGRATIONS = Path(__file__).resolve().parent / "migrations"
CORE_VERSIONS = CORE_MIGRATIONS / "versions"
DEPLOYMENT_VERSIONS = Path("migrations") / "versions"  # relative to the deployment repository
DEPLOYMENT_BRANCH = "deployment"  # Alembic branch label of the mechanic's first revision


def deployment_versions(settings: Settings) -> Path:
    """Where the mechanic's revisions of this deployment are."""
    return Path(settings.project_dir) / DEPLOYMENT_VERSIONS


def alembic_config(
    settings: Settings | None = None,
    connection: Connection | None = None,
    *,
    core_only: bool = False,
) -> Config:
    """An Alembic config for the package's core revisions plus the deployment's.

    Built in code (no alembic.ini), so a non-editable install finds its revisions.

    Args:
        settings: read by revisions (embedding dims, HNSW parameters) and naming the
            deployment repository.
        connection: the connection revisions run on.
        core_only: only the core revisions (the core head, whatever the deployment did).
    """
    settings = settings or get_settings()
    locations = [str(CORE_VERSIONS)]
    mine = deployment_versions(settings)
    if not core_only and mine.is_dir():
        locations.append(str(mine))
    cfg = Config()
    cfg.set_main_option("script_location", str(CORE_MIGRATIONS))
    cfg.set_main_option("path_separator", "os")
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    cfg.attributes["settings"] = settings
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


def undo_target(revision: str) -> str:
    """The downgrade target that takes the head ``revision`` away and nothing else.

    ``<rev>@-1`` steps down that revision's branch only: a plain downgrade to its down
    revision would also take away core revisions added on top of the branch point.
    """
    return f"{revision}@-1"


def parent_of_next(settings: Settings | None = None) -> str | None:
    """What the deployment's next revision builds on: its newest, else the core head."""
    return deployment_head(settings) or core_head(settings)


def format_heads(revisions: list[str] | tuple[str, ...] | set[str]) -> str | None:
    """Several heads as one comparable string (``0014+m1a2b...``), or None for none."""
    return "+".join(sorted(revisions)) or None


def script_heads(settings: Settings | None = None) -> list[str]:
    """The head revisions of the core and deployment history together."""
    return list(ScriptDirectory.from_config(alembic_config(settings)).get_heads())


def head_revision(settings: Settings | None = None) -> str | None:
    """The revision (or ``+``-joined heads) a fully upgraded database is at."""
    return format_heads(script_heads(settings))


def core_head(settings: Settings | None = None) -> str | None:
    """The newest core revision shipped with this version of Agentry."""
    cfg = alembic_config(settings, core_only=True)
    return ScriptDirectory.from_config(cfg).get_current_head()


def deployment_head(settings: Settings | None = None) -> str | None:
    """The newest of the mechanic's revisions in the deployment repository, or None."""
    settings = settings or get_settings()
    folder = deployment_versions(settings).resolve()
    script = ScriptDirectory.from_config(alembic_config(settings))
    mine = [
        rev
        for rev in script.get_heads()
        if Path(script.get_revision(rev).path).resolve().parent == folder
    ]
    if len(mine) > 1:
        raise MigrationError(f"the deployment's revisions have several heads: {', '.join(mine)}")
    return mine[0] if mine else None


def current_heads(conn: Connection) -> list[str]:
    """The rows of ``alembic_version`` (one per branch not merged by a dependency)."""
    if not conn.execute(VERSION_TABLE_SQL).scalar_one():
        return []
    return sorted(conn.execute(VERSION_SQL).scalars())


def current_revision(conn: Connection) -> str | None:
    """The revision (or ``+``-joined heads) the database is at, None before the first upgrade."""
    return format_heads(current_heads(conn))


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


def upgrade(engine: Engine, revision: str = "heads", settings: Settings | None = None) -> None:
    """Bring the schema up to ``revision`` (default: every head, core and deployment).

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
