"""Backups before every apply: ``pg_dump -Fc``, checked with ``pg_restore --list``.

A dump holds every user's messages and credentials (encrypted, but still), so every
dump Agentry writes, before a change or by ``agentry backup``, goes through
:func:`write_private_dump`: 0600 files in a 0700 folder (core/db/private_files.py).
"""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path

from sqlalchemy import text

from core.db.engine import Database
from core.db.private_files import private_file
from core.errors import MechanicError
from core.mechanic.pgtools import find_tool, run_tool, server_major


def write_private_dump(db: Database, path: Path, major: int | None = None) -> Path:
    """``pg_dump -Fc`` of the whole database into ``path`` (0600 in a 0700 folder),
    proved readable with ``pg_restore --list``.

    Raises:
        MechanicError: pg_dump failed, or the archive does not list its tables (the
            file is removed then).
    """
    if major is None:
        with db.engine.connect() as conn:
            major = server_major(conn)
    private_file(path)
    try:
        run_tool(
            [find_tool("pg_dump", major), "-Fc", "-f", str(path), "-d", db.conninfo], "pg_dump"
        )
        listing = run_tool(
            [find_tool("pg_restore", major), "--list", str(path)], "pg_restore --list"
        )
    except Exception:
        path.unlink(missing_ok=True)
        raise
    if "TABLE" not in listing:
        path.unlink(missing_ok=True)
        raise MechanicError(f"backup {path} lists no tables: refusing to go on without a backup")
    return path


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
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%fZ")
    return write_private_dump(db, folder / f"{name}-{stamp}-{label}.dump", major)


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
