"""Creating users and resolving API keys to them."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from core.errors import AuthError, ConflictError, ValidationFailed
from core.models import User, UserRole

KEY_PREFIX = "agk_"
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


@dataclass(frozen=True)
class Principal:
    """Who is calling: the user behind an API key."""

    id: uuid.UUID
    email: str
    role: UserRole

    @property
    def is_admin(self) -> bool:
        return self.role is UserRole.admin

    @property
    def actor(self) -> str:
        """How this caller is named in ``audit_log.actor``."""
        return f"user:{self.id}"


def new_api_key() -> str:
    """A fresh random API key (43 url-safe characters after the prefix)."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


def hash_api_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_user(
    conn: Connection, email: str, *, name: str | None = None, admin: bool = False
) -> tuple[Principal, str]:
    """Create a user with a new API key.

    Args:
        conn: a connection in the caller's transaction.
        email: unique, case-insensitively.
        name: display name.
        admin: give the admin role.

    Returns:
        The new user and its API key (the only time the key is visible).

    Raises:
        ValidationFailed: the email is not an email address.
        ConflictError: a user with that email exists.
    """
    email = email.strip()
    if not EMAIL_RE.match(email):
        raise ValidationFailed(f"not an email address: {email!r}")
    key = new_api_key()
    role = UserRole.admin if admin else UserRole.user
    row = conn.execute(
        insert(User)
        .values(email=email, name=name, role=role, api_key_hash=hash_api_key(key))
        .on_conflict_do_nothing()
        .returning(User.id)
    ).first()
    if row is None:
        raise ConflictError(f"a user with email {email} already exists")
    return Principal(id=row.id, email=email, role=role), key


def rotate_key(conn: Connection, email: str) -> str:
    """Replace a user's API key; the old one stops working at once."""
    key = new_api_key()
    found = conn.execute(
        update(User)
        .where(func.lower(User.email) == email.strip().lower())
        .values(api_key_hash=hash_api_key(key))
        .returning(User.id)
    ).first()
    if found is None:
        raise ValidationFailed(f"no user with email {email}")
    return key


def authenticate(conn: Connection, key: str) -> Principal:
    """Resolve an API key to an active user.

    Raises:
        AuthError: unknown key or inactive user.
    """
    row = conn.execute(
        select(User.id, User.email, User.role).where(
            User.api_key_hash == hash_api_key(key), User.is_active.is_(True)
        )
    ).first()
    if row is None:
        raise AuthError("invalid or revoked API key")
    return Principal(id=row.id, email=row.email, role=UserRole(row.role))


def list_users(conn: Connection) -> list[dict[str, object]]:
    rows = conn.execute(
        select(User.id, User.email, User.name, User.role, User.is_active, User.created_at).order_by(
            User.created_at
        )
    )
    return [dict(r._mapping) for r in rows]
