"""Dry run on a shadow database made from the live schema.

The shadow gets the live schema (``pg_dump --schema-only``, restored), is stamped at
the live revision, then the planned revision goes up, down and up again. The schema
after both upgrades must be identical, and the downgrade must give back the original.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from sqlalchemy import Connection, text

from config import Settings
from core.db.engine import Database, create_db_engine
from core.db.metadata import load_lock
from core.db.migrate import alembic_config, current_heads, undo_target
from core.mechanic.pgtools import find_tool, run_tool, server_major

SNAPSHOT_COLUMNS = text(
    """SELECT table_name, column_name, data_type, is_nullable, column_default,
              character_maximum_length
       FROM information_schema.columns
       WHERE table_schema = 'public' AND table_name <> 'alembic_version'
       ORDER BY table_name, column_name"""
)
SNAPSHOT_INDEXES = text(
    "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY indexname"
)
SNAPSHOT_CONSTRAINTS = text(
    """SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
       FROM pg_constraint WHERE connamespace = 'public'::regnamespace
       ORDER BY 1, 2"""
)


@dataclass
class DryRunResult:
    ok: bool
    steps: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0
    differences: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def snapshot(conn: Connection) -> dict[str, list[tuple[Any, ...]]]:
    """The schema as comparable rows: columns, indexes, constraints."""
    return {
        "columns": [tuple(r) for r in conn.execute(SNAPSHOT_COLUMNS)],
        "indexes": [tuple(r) for r in conn.execute(SNAPSHOT_INDEXES)],
        "constraints": [tuple(r) for r in conn.execute(SNAPSHOT_CONSTRAINTS)],
    }


def diff_snapshots(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    out = []
    for key in a:
        only_a = set(a[key]) - set(b[key])
        only_b = set(b[key]) - set(a[key])
        out += [f"{key}: only before {row}" for row in sorted(only_a, key=str)]
        out += [f"{key}: only after {row}" for row in sorted(only_b, key=str)]
    return out


def _admin(db: Database) -> Connection:
    return db.engine.connect().execution_options(isolation_level="AUTOCOMMIT")


def create_shadow(db: Database, settings: Settings) -> tuple[str, Database]:
    """A new database holding the live schema (no data) at the live revision."""
    with db.engine.connect() as conn:
        major = server_major(conn)
        live = conn.execute(text("SELECT current_database()")).scalar_one()
        heads = current_heads(conn)
    name = f"{live[:40]}_shadow_{uuid.uuid4().hex[:8]}"
    with _admin(db) as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = db.url.set(database=name)
    shadow = Database(
        url=url, engine=create_db_engine(url, settings, unix_socket=db.server is not None)
    )
    with tempfile.TemporaryDirectory(prefix="agentry-shadow-") as tmp:
        dump = Path(tmp) / "schema.dump"
        run_tool(
            [
                find_tool("pg_dump", major),
                "--schema-only",
                "-Fc",
                "-f",
                str(dump),
                "-d",
                db.conninfo,
            ],
            "pg_dump --schema-only",
        )
        run_tool(
            [find_tool("pg_restore", major), "--no-owner", "-d", shadow.conninfo, str(dump)],
            "pg_restore (shadow)",
        )
    if heads:
        with shadow.engine.begin() as conn:
            for head in heads:
                conn.execute(
                    text("INSERT INTO alembic_version (version_num) VALUES (:r)"), {"r": head}
                )
    return name, shadow


def drop_shadow(db: Database, name: str, shadow: Database) -> None:
    shadow.dispose()
    with _admin(db) as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def _migrate(shadow: Database, scratch: Settings, action: str, target: str) -> None:
    with load_lock, shadow.engine.connect() as conn:
        cfg = alembic_config(scratch, conn)
        if action == "upgrade":
            command.upgrade(cfg, target)
        else:
            command.downgrade(cfg, target)
        conn.commit()


def dry_run(
    db: Database, settings: Settings, scratch: Settings, revision: str, down_revision: str | None
) -> DryRunResult:
    """Upgrade, downgrade, upgrade the planned revision on a shadow copy of the live schema.

    Args:
        db: the live database (only its schema is read).
        settings: process settings (pool, timeouts).
        scratch: settings pointing at the scratch project holding the planned revision.
        revision: the planned revision.
        down_revision: the live revision it builds on.

    Returns:
        The result; ``ok`` only when every step ran and the snapshots agree.
    """
    started = time.perf_counter()
    result = DryRunResult(ok=False)
    name, shadow = create_shadow(db, settings)
    result.steps.append(f"shadow database {name} created from the live schema")
    try:
        with shadow.engine.connect() as conn:
            before = snapshot(conn)
        _migrate(shadow, scratch, "upgrade", revision)
        with shadow.engine.connect() as conn:
            first = snapshot(conn)
        result.steps.append(f"upgrade to {revision}")
        _migrate(shadow, scratch, "downgrade", undo_target(revision))
        with shadow.engine.connect() as conn:
            down = snapshot(conn)
        result.steps.append(f"downgrade to {down_revision}")
        _migrate(shadow, scratch, "upgrade", revision)
        with shadow.engine.connect() as conn:
            second = snapshot(conn)
        result.steps.append(f"upgrade to {revision} again")
        result.differences = [f"after downgrade: {d}" for d in diff_snapshots(before, down)]
        result.differences += [f"second upgrade: {d}" for d in diff_snapshots(first, second)]
        result.ok = not result.differences
        if result.ok:
            result.steps.append("schema snapshots equal")
    except Exception as exc:
        result.error = f"{exc.__class__.__name__}: {exc}"[:1000]
    finally:
        drop_shadow(db, name, shadow)
        result.seconds = round(time.perf_counter() - started, 3)
    return result
