"""The embedded PostgreSQL server (PyPI ``pgserver``) used when DATABASE_URL is unset.

Its data lives under ``AGENTRY_HOME/pgdata``, so a second start reuses it. The
server listens only on a Unix socket and is stopped when the last process that
opened it exits (pgserver keeps that count across processes).
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import psycopg
from psycopg import sql

from core.errors import DatabaseError

if TYPE_CHECKING:
    from pgserver import PostgresServer

log = logging.getLogger(__name__)

SUPERUSER = "postgres"


def _import_pgserver() -> object:
    # platformdirs warns at import time when XDG_RUNTIME_DIR is unset; that is
    # normal on servers and containers and says nothing useful to our users.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    logging.getLogger("pgserver").setLevel(logging.WARNING)
    return pgserver


def start_server(pgdata: Path) -> PostgresServer:
    """Start (or attach to) the embedded server whose data is in ``pgdata``.

    Args:
        pgdata: the data directory; created with its parents when missing.

    Returns:
        The pgserver handle; the server stops when the last handle's process exits.

    Raises:
        DatabaseError: the server could not start (the message points at its log).
    """
    pgserver = _import_pgserver()
    pgdata = pgdata.expanduser().resolve()
    pgdata.parent.mkdir(parents=True, exist_ok=True)
    _forget_dead_handles(pgdata)
    try:
        return pgserver.get_server(pgdata, cleanup_mode="stop")  # type: ignore[attr-defined]
    except Exception as exc:  # pgserver raises bare subprocess/assert errors
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc.__class__.__name__}: "
            f"{exc}); see {pgdata / 'log'}"
        ) from exc


def _forget_dead_handles(pgdata: Path) -> None:
    """Drop processes that died without detaching from pgserver's list of handles.

    pgserver stops the server when the last process in that list exits; a
    process killed with SIGKILL stays listed forever and would keep the server
    running after every later process has exited.
    """
    import psutil
    from pgserver.postgres_server import PostgresServer
    from pgserver.utils import DiskList

    handles = pgdata / ".handle_pids.json"
    if not handles.exists():
        return
    with PostgresServer._lock:
        listed = DiskList(handles)
        pids = listed.get()
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
