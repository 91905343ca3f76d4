"""Which driver errors mean "the database is away", as a domain error.

A terminated or refused connection is not a bug of the request: the caller should
see 503 and retry, not 500. Errors the server raised about the statement itself
(constraint violations, syntax, a cancelled query) are left alone.
"""

from __future__ import annotations

import psycopg
from psycopg_pool import PoolTimeout
from sqlalchemy import exc as sa_exc

from core.errors import AgentryError, ConflictError, DatabaseError, ValidationFailed

# SQLSTATE classes of a lost or refused connection: 08 connection exception,
# 57P01-57P03 server shut down / crashed / not accepting connections yet.
_CONNECTION_STATES = ("08", "57P01", "57P02", "57P03")
# Exception types that can mean the database is away; the function below decides.
DRIVER_ERRORS: tuple[type[Exception], ...] = (
    sa_exc.DBAPIError,
    sa_exc.TimeoutError,
    psycopg.Error,
    PoolTimeout,
)


def _is_connection_error(err: BaseException | None) -> bool:
    if isinstance(err, (psycopg.InterfaceError, PoolTimeout)):
        return True
    if isinstance(err, psycopg.OperationalError):
        state = err.sqlstate
        # No SQLSTATE: the client could not talk to the server at all.
        return state is None or state.startswith(_CONNECTION_STATES)
    return False


def bad_value(err: BaseException) -> ValidationFailed | None:
    """422 when the database refused a value of the request (SQLSTATE class 22: out of
    range, not a valid number or date), which the request's own checks let through."""
    orig = err.orig if isinstance(err, sa_exc.DBAPIError) else err
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state.startswith("22"):
        reason = str(orig).strip().splitlines()[0]
        return ValidationFailed(f"a value of the request is refused by the database: {reason}")
    return None


def database_unavailable(err: BaseException) -> DatabaseError | None:
    """A :class:`DatabaseError` when ``err`` means the database cannot be reached, else None.

    Args:
        err: an exception from SQLAlchemy, psycopg or psycopg_pool.
    """
    if isinstance(err, sa_exc.TimeoutError):
        return DatabaseError("database: no connection became free in time; retry later")
    if isinstance(err, sa_exc.DBAPIError):
        if err.connection_invalidated or _is_connection_error(err.orig):
            return DatabaseError("database: the connection was lost; retry shortly")
        return None
    if _is_connection_error(err):
        return DatabaseError("database: cannot be reached; retry shortly")
    return None


def data_refusal(exc: BaseException, doing: str) -> AgentryError | None:
    """409 (a constraint the rows break) or 422 (a value that does not convert) when the
    database refused the change because of the data in it; None for anything else."""
    seen: BaseException | None = exc
    while seen is not None:
        state = getattr(getattr(seen, "orig", seen), "sqlstate", None)
        if isinstance(state, str) and state[:2] in ("22", "23"):
            reason = str(getattr(seen, "orig", seen)).strip().splitlines()[0]
            message = (
                f"{doing}: the existing data does not allow it ({reason}); nothing was "
                "changed: fix the data or the spec, then apply again"
            )
            return ConflictError(message) if state[:2] == "23" else ValidationFailed(message)
        seen = seen.__cause__ or seen.__context__
    return None
