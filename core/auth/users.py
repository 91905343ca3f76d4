"""Creating users and resolving API keys to them."""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, func, select, update
from sqlalchemy.dialects.postgresql import insert

from core.errors import AuthError, ConflictError, NotFoundError, ValidationFailed
from core.models import User, UserRole
from core.registry.audit import record_event

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
    conn: Connection,
    email: str,
    *,
    name: str | None = None,
    admin: bool = False,
    actor: str = "system",
) -> tuple[Principal, str]:
    """Create a user with a new API key, and audit it (``user.create``).

    Args:
        conn: a connection in the caller's transaction.
        email: unique, case-insensitively.
        name: display name.
        admin: give the admin role.
        actor: who does it (``cli``, ``user:<id>``), for the audit row.

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
    record_event(
        conn,
        action="user.create",
        actor=actor,
        details={"user": str(row.id), "email": email, "role": role.value},
    )
    return Principal(id=row.id, email=email, role=role), key


def rotate_key(conn: Connection, email: str, *, actor: str = "system") -> str:
    """Replace a user's API key (the old one stops working at once); audited
    (``user.rotate_key``, without either key)."""
    key = new_api_key()
    found = conn.execute(
        update(User)
        .where(func.lower(User.email) == email.strip().lower())
        .values(api_key_hash=hash_api_key(key))
        .returning(User.id)
    ).first()
    if found is None:
        raise ValidationFailed(f"no user with email {email}")
    record_event(
        conn, action="user.rotate_key", actor=actor, details={"user": str(found.id), "email": email}
    )
    return key


def set_role(conn: Connection, user_id: uuid.UUID, role: UserRole, *, actor: str) -> dict[str, str]:
    """Grant or revoke the admin role, audited (``user.role``) with the role before and after.

    Raises:
        NotFoundError: no such user.
    """
    before = conn.execute(
        select(User.role, User.email).where(User.id == user_id).with_for_update()
    ).first()
    if before is None:
        raise NotFoundError(f"no user {user_id}")
    conn.execute(update(User).where(User.id == user_id).values(role=role))
    old = UserRole(before.role)
    record_event(
        conn,
        action="user.role",
        actor=actor,
        details={"user": str(user_id), "email": before.email, "from": old.value, "to": role.value},
    )
    return {"id": str(user_id), "email": before.email, "role": role.value}


def user_id_by_email(conn: Connection, email: str) -> uuid.UUID:
    found = conn.execute(
        select(User.id).where(func.lower(User.email) == email.strip().lower())
    ).scalar()
    if found is None:
        raise NotFoundError(f"no user with email {email}")
    return found


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
