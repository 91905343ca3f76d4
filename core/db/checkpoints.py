"""LangGraph's checkpoint tables: created by ``PostgresSaver.setup()``, never by Alembic."""

from __future__ import annotations

import time

import psycopg
from psycopg.rows import dict_row
from sqlalchemy import Connection, text

from core.db.engine import Database
from core.errors import DatabaseError

CHECKPOINT_TABLES = (
    "checkpoint_migrations",
    "checkpoints",
    "checkpoint_blobs",
    "checkpoint_writes",
)
# Session-level advisory lock so concurrent starts do not race on CREATE TABLE.
SETUP_LOCK_KEY = 0x6167656E740001

PRESENT_SQL = text(
    "SELECT table_name FROM information_schema.tables "
    "WHERE table_schema = current_schema() AND table_name = ANY(:names)"
)


def setup_checkpointer(db: Database, connect_timeout: int = 5) -> None:
    """Create or migrate LangGraph's checkpoint tables (idempotent).

    Args:
        db: the database to prepare.
        connect_timeout: seconds to wait for the connection.
    """
    # Imported when used: commands that only check for the tables skip LangGraph.
    from langgraph.checkpoint.postgres import PostgresSaver

    with psycopg.connect(
        db.conninfo,
        autocommit=True,
        row_factory=dict_row,
        prepare_threshold=0,
        connect_timeout=connect_timeout,
    ) as conn:
        _acquire(conn, connect_timeout * 12)
        try:
            PostgresSaver(conn).setup()
        finally:
            conn.execute("SELECT pg_advisory_unlock(%s)", (SETUP_LOCK_KEY,))


def _acquire(conn: psycopg.Connection[dict[str, object]], timeout: float) -> None:
    # Poll with try-lock: a waiting pg_advisory_lock() is itself a running
    # transaction, and LangGraph's CREATE INDEX CONCURRENTLY waits for every
    # running transaction to end, so a blocking wait would deadlock with it.
    deadline = time.monotonic() + timeout
    while True:
        row = conn.execute("SELECT pg_try_advisory_lock(%s) AS got", (SETUP_LOCK_KEY,)).fetchone()
        if row and row["got"]:
            return
        if time.monotonic() > deadline:
            raise DatabaseError("timed out waiting for another process to set up checkpoints")
        time.sleep(0.1)


def missing_checkpoint_tables(conn: Connection) -> list[str]:
    """The checkpoint tables not (yet) in the database."""
    present = set(conn.execute(PRESENT_SQL, {"names": list(CHECKPOINT_TABLES)}).scalars())
    return [name for name in CHECKPOINT_TABLES if name not in present]
