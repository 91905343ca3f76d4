"""Token buckets in PostgreSQL, shared by every process on the database.

A bucket holds up to ``capacity`` tokens (the per-minute limit, so a minute's worth may
come in one burst) and refills at ``capacity / 60`` per second. Taking a token is one
``INSERT ... ON CONFLICT DO UPDATE ... RETURNING``: the row lock makes concurrent takes
from any number of processes serialize on the bucket, each seeing the other's result.
For requests the take rides in the statement that resolves the API key, so a limited
request costs the same single round trip as an unlimited one did.

Buckets: ``r:<user id>`` (requests), ``t:<user id>`` (turns), ``a:<client address>``
(wrong API keys). Limits: a user's own row in ``user_limits`` wins over the defaults of
its role (settings); 0 means unlimited.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import psycopg
from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert

from config import Settings
from core.auth.users import Principal, hash_api_key
from core.db.engine import Database
from core.errors import AuthError, NotFoundError, RateLimited, ValidationFailed
from core.models import UserLimit, UserRole
from core.observability.metrics import RATE_LIMITED
from core.registry.audit import record_event

_AVAILABLE = (
    "least(EXCLUDED.capacity, b.tokens + EXTRACT(EPOCH FROM EXCLUDED.refilled_at"
    " - b.refilled_at)::float8 * EXCLUDED.capacity / 60.0)"
)


def _take(source: str) -> str:
    """The take statement for rows (bucket, capacity, tokens, granted, refilled_at)."""
    return (
        "INSERT INTO rate_buckets AS b (bucket, capacity, tokens, granted, refilled_at) "
        f"{source} ON CONFLICT (bucket) DO UPDATE SET capacity = EXCLUDED.capacity,"
        f" tokens = {_AVAILABLE} - CASE WHEN {_AVAILABLE} >= 1 THEN 1 ELSE 0 END,"
        f" granted = {_AVAILABLE} >= 1, refilled_at = EXCLUDED.refilled_at"
        " RETURNING granted,"
        " CASE WHEN granted THEN 0 ELSE ceil((1 - tokens) * 60.0 / capacity) END AS wait"
    )


# Resolve the key, refuse a throttled address, take a request token: one statement.
AUTHENTICATE_SQL = (
    "WITH blocked AS ("
    " SELECT ceil((1 - (tokens + EXTRACT(EPOCH FROM now() - refilled_at)::float8"
    "  * capacity / 60.0)) * 60.0 / capacity) AS wait FROM rate_buckets"
    " WHERE bucket = %(address)s AND %(auth_cap)s > 0"
    "  AND tokens + EXTRACT(EPOCH FROM now() - refilled_at)::float8 * capacity / 60.0 < 1),"
    " who AS ("
    " SELECT u.id, u.email, u.role, CAST(coalesce(l.requests_per_minute, CASE WHEN"
    "  u.role = 'admin' THEN %(admin_cap)s ELSE %(user_cap)s END) AS float8) AS cap"
    " FROM users u LEFT JOIN user_limits l ON l.user_id = u.id"
    " WHERE u.api_key_hash = %(hash)s AND u.is_active AND NOT EXISTS (SELECT 1 FROM blocked)),"
    " took AS ("
    + _take("SELECT 'r:' || id, cap, cap - 1, true, now() FROM who WHERE cap > 0")
    + ") SELECT (SELECT wait FROM blocked) AS blocked, who.id, who.email, who.role,"
    " took.granted, took.wait FROM (SELECT 1) AS one LEFT JOIN who ON true LEFT JOIN took ON true"
)
# One wrong key from an address.
FAILED_AUTH_SQL = _take(
    "SELECT %(address)s, CAST(%(cap)s AS float8), %(cap)s - 1, true, now() WHERE true"
)
# A turn of a user: its own limit, or the role's.
TAKE_TURN_SQL = text(
    "WITH lim AS (SELECT CAST(coalesce((SELECT turns_per_minute FROM user_limits"
    " WHERE user_id = :user_id), :default_cap) AS float8) AS cap) "
    + _take(
        "SELECT 't:' || CAST(:user_id AS text), cap, cap - 1, true, now() FROM lim WHERE cap > 0"
    )
)
LIMITS_SQL = text(
    "SELECT u.role, l.requests_per_minute, l.turns_per_minute FROM users u"
    " LEFT JOIN user_limits l ON l.user_id = u.id WHERE u.id = :user_id"
)


@dataclass(frozen=True)
class UserLimits:
    """A user's own numbers (None: the role's default from the settings)."""

    requests_per_minute: int | None
    turns_per_minute: int | None


def _refuse(limit: str, message: str, wait: Any) -> RateLimited:
    RATE_LIMITED.labels(limit).inc()
    return RateLimited(message, int(wait or 1))


def authenticate_limited(conn: Connection, key: str, address: str, settings: Settings) -> Principal:
    """Resolve an API key to its user and take one of the user's request tokens.

    The statement runs in autocommit (no BEGIN/COMMIT round trips, and no transaction
    holds the bucket's row lock after it).

    Args:
        conn: a connection with no transaction open.
        key: the API key the client sent.
        address: the client's address (wrong keys are counted per address).
        settings: the role defaults.

    Raises:
        RateLimited: the address sent too many wrong keys, or the user too many requests.
        AuthError: unknown key or inactive user.
    """
    params = {
        "hash": hash_api_key(key),
        "address": f"a:{address}",
        "auth_cap": settings.rate_auth_failures,
        "user_cap": settings.rate_requests,
        "admin_cap": settings.rate_requests_admin,
    }
    dbapi = conn.connection.dbapi_connection
    assert isinstance(dbapi, psycopg.Connection)
    dbapi.autocommit = True
    try:
        row = dbapi.execute(AUTHENTICATE_SQL, params).fetchone()
        assert row is not None
        blocked, user_id, email, role, granted, wait = row
        if blocked is None and user_id is None and settings.rate_auth_failures > 0:
            cap = settings.rate_auth_failures
            took = dbapi.execute(FAILED_AUTH_SQL, {"address": f"a:{address}", "cap": cap})
            failed = took.fetchone()
            if failed is not None and not failed[0]:
                blocked = failed[1]
    finally:
        dbapi.autocommit = False
    if blocked is not None:
        raise _refuse("auth_failures", "too many wrong API keys from this address", blocked)
    if user_id is None:
        raise AuthError("invalid or revoked API key")
    if granted is False:
        raise _refuse("requests", "request rate limit of this API key reached", wait)
    return Principal(id=user_id, email=email, role=UserRole(role))


def take_turn(db: Database, principal: Principal, settings: Settings) -> None:
    """Take one of the caller's turn tokens (in a statement of its own: the bucket's row
    lock is never held by a longer transaction).

    Raises:
        RateLimited: the caller started too many turns.
    """
    if not settings.rate_limits:
        return
    default = settings.rate_turns_admin if principal.is_admin else settings.rate_turns
    params = {"user_id": principal.id, "default_cap": default}
    with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        row = conn.execute(TAKE_TURN_SQL, params).first()
    if row is not None and not row.granted:
        raise _refuse("turns", "turn rate limit of this API key reached", row.wait)


def get_limits(conn: Connection, user_id: uuid.UUID, settings: Settings) -> dict[str, Any]:
    """A user's own limits and the ones in force (own, else the role's; 0: unlimited).

    Raises:
        NotFoundError: no such user.
    """
    row = conn.execute(LIMITS_SQL, {"user_id": user_id}).first()
    if row is None:
        raise NotFoundError(f"no user {user_id}")
    admin = row.role == UserRole.admin
    requests = settings.rate_requests_admin if admin else settings.rate_requests
    turns = settings.rate_turns_admin if admin else settings.rate_turns
    return {
        "requests_per_minute": row.requests_per_minute,
        "turns_per_minute": row.turns_per_minute,
        "effective": {
            "requests_per_minute": _or(row.requests_per_minute, requests),
            "turns_per_minute": _or(row.turns_per_minute, turns),
            "enabled": settings.rate_limits,
        },
    }


def _or(own: int | None, default: int) -> int:
    return default if own is None else own


def set_limits(
    conn: Connection, user_id: uuid.UUID, limits: UserLimits, *, actor: str
) -> UserLimits:
    """Set a user's own limits (None: back to the role's default), in the caller's
    transaction, with its audit row (action ``user_limits``).

    Raises:
        ValidationFailed: a negative number.
    """
    for name, value in (
        ("requests_per_minute", limits.requests_per_minute),
        ("turns_per_minute", limits.turns_per_minute),
    ):
        if value is not None and value < 0:
            raise ValidationFailed(f"{name}: must be 0 (unlimited) or more")
    values = {
        "requests_per_minute": limits.requests_per_minute,
        "turns_per_minute": limits.turns_per_minute,
    }
    conn.execute(
        insert(UserLimit)
        .values(user_id=user_id, **values)
        .on_conflict_do_update(
            index_elements=["user_id"], set_={**values, "updated_at": text("now()")}
        )
    )
    record_event(
        conn,
        action="user_limits",
        actor=actor,
        details={"user_id": str(user_id), **values},
    )
    return limits
