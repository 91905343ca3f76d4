"""A throwaway database for benchmarks: they never write into the real one."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from config import Settings
from core.db import Database, open_database, prepare_database
from core.db.engine import normalize_url


@contextmanager
def bench_database(settings: Settings, label: str) -> Iterator[tuple[Database, Settings]]:
    """A fresh migrated database beside the configured one, dropped afterwards.

    On the embedded server it is another database of the same server; with
    DATABASE_URL, a sibling database on the same server (the role needs CREATEDB).

    Args:
        settings: the configured settings (pool size etc. are kept).
        label: part of the database name, to tell benchmarks apart.

    Yields:
        The database and the settings that point at it.
    """
    name = f"agentry_bench_{label}_{os.getpid()}_{uuid.uuid4().hex[:6]}"
    if settings.database_url is None:
        db = open_database(settings, database=name)
        bench_settings = settings
    else:
        url = normalize_url(settings.database_url)
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        sibling = url.set(database=name).render_as_string(hide_password=False)
        bench_settings = settings.model_copy(update={"database_url": sibling})
        db = open_database(bench_settings)
    try:
        prepare_database(db, bench_settings)
        yield db, bench_settings
    finally:
        conninfo = db.conninfo
        db.dispose()
        maintenance = psycopg.conninfo.make_conninfo(conninfo, dbname="postgres")
        with psycopg.connect(maintenance, autocommit=True) as conn:
            conn.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
