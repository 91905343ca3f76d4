"""Statements sent on the psycopg connection under a SQLAlchemy one.

Search sends a few statements on the driver connection itself, in the same transaction:
pipelined (core/memory/hybrid.py) or where SQLAlchemy's work per row cost more than the
statement (core/memory/bm25_ranks.py). They are written as SQLAlchemy text, with
``:name`` parameters like every other statement, and compiled here to psycopg's form.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.engine.interfaces import Dialect
from sqlalchemy.sql.compiler import Compiled


def driver_of(conn: Connection) -> psycopg.Connection:
    """The psycopg connection under ``conn`` (its transaction is ``conn``'s)."""
    pg = conn.connection.driver_connection
    assert isinstance(pg, psycopg.Connection)
    return pg


def driver_statement(conn: Connection, sql: str, params: dict[str, Any]) -> tuple[str, Any]:
    """``sql`` (``:name`` parameters) and ``params`` as psycopg takes them."""
    compiled = _compiled(sql, conn.dialect)
    return compiled.string, compiled.construct_params(params)


@lru_cache(maxsize=512)
def _compiled(sql: str, dialect: Dialect) -> Compiled:
    # A filter's SQL differs by its parameter names only, so few strings repeat a lot.
    return text(sql).compile(dialect=dialect)
