"""Backups before every apply: ``pg_dump -Fc``, checked with ``pg_restore --list``."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from sqlalchemy import text

from core.db.engine import Database
from core.errors import MechanicError
from core.mechanic.pgtools import find_tool, run_tool, server_major


def backup_database(db: Database, folder: Path, label: str) -> Path:
    """Dump the whole database in custom format and prove the archive is readable.

    Args:
        db: the live database.
        folder: where backups are kept (created when missing).
        label: goes into the file name (the change id).

    Returns:
        The archive's path.

    Raises:
        MechanicError: pg_dump failed, or the archive does not list its tables.
    """
    with db.engine.connect() as conn:
        major = server_major(conn)
        name = conn.execute(text("SELECT current_database()")).scalar_one()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    path = folder / f"{name}-{stamp}-{label}.dump"
    run_tool([find_tool("pg_dump", major), "-Fc", "-f", str(path), "-d", db.conninfo], "pg_dump")
    listing = run_tool([find_tool("pg_restore", major), "--list", str(path)], "pg_restore --list")
    if "TABLE" not in listing:
        path.unlink(missing_ok=True)
        raise MechanicError(f"backup {path} lists no tables: refusing to go on without a backup")
    return path


def restore_database(db: Database, path: Path) -> None:
    """Put the database back exactly as it was in ``path``.

    The public schema is emptied and the archive replayed in one transaction (psql
    ``--single-transaction``): objects made after the backup disappear too, and a
    failing restore changes nothing.
    """
    with db.engine.connect() as conn:
        major = server_major(conn)
    db.engine.dispose()  # our own pooled connections must not hold locks during the restore
    with tempfile.TemporaryDirectory(prefix="agentry-restore-") as tmp:
        script = Path(tmp) / "restore.sql"
        run_tool(
            [find_tool("pg_restore", major), "--no-owner", "-f", str(script), str(path)],
            "pg_restore (script)",
        )
        run_tool(
            [
                find_tool("psql", major),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "--single-transaction",
                "-d",
                db.conninfo,
                "-c",
                "DROP SCHEMA public CASCADE; CREATE SCHEMA public;",
                "-f",
                str(script),
            ],
            "restore",
        )
