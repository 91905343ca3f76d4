"""Credentials read and written: encrypted on the way in, decrypted only where used.

Nothing here returns a value to an API or CLI caller: listing gives names and metadata.
Values are decrypted only by :func:`resolve`, for the model router and the tools of a
turn. Every create, replace, delete and key rotation writes an audit row (names, never
values) in the caller's transaction.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, text

from core.errors import NotFoundError, ValidationFailed
from core.models.credentials import CREDENTIAL_NAME_PATTERN
from core.registry.audit import record_event
from core.secrets.keys import Keyring

NAME_RE = re.compile(CREDENTIAL_NAME_PATTERN)
MAX_VALUE_CHARS = 10_000

UPSERT_SQL = text(
    "INSERT INTO credentials (owner_id, name, ciphertext, key_id, created_by)"
    " VALUES (:owner, :name, :token, :kid, :actor)"
    " ON CONFLICT (owner_id, name) DO UPDATE SET ciphertext = EXCLUDED.ciphertext,"
    " key_id = EXCLUDED.key_id, updated_at = now()"
    " RETURNING id, (xmax = 0) AS created, created_at, updated_at"
)
DELETE_SQL = text(
    "DELETE FROM credentials WHERE owner_id IS NOT DISTINCT FROM :owner AND name = :name"
    " RETURNING id"
)
LIST_SQL = text(
    "SELECT name, owner_id IS NULL AS shared, key_id, created_by, created_at, updated_at"
    " FROM credentials WHERE owner_id = :owner OR (owner_id IS NULL AND :with_shared)"
    " ORDER BY owner_id IS NULL, name"
)
# The user's own row first: it wins over the shared one of the same name.
RESOLVE_SQL = text(
    "SELECT DISTINCT ON (name) name, ciphertext, key_id FROM credentials"
    " WHERE name = ANY(:names) AND (owner_id = :owner OR owner_id IS NULL)"
    " ORDER BY name, owner_id IS NULL"
)
STALE_SQL = text(
    "SELECT id, name, ciphertext, key_id FROM credentials WHERE key_id <> :kid"
    " ORDER BY id FOR UPDATE"
)
REKEY_SQL = text("UPDATE credentials SET ciphertext = :token, key_id = :kid WHERE id = :id")


@dataclass(frozen=True)
class Saved:
    id: uuid.UUID
    name: str
    shared: bool
    created: bool  # False: an existing value was replaced


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise ValidationFailed(
            f"name: {name!r} is not a credential name (lower case letters, digits, '_', '.',"
            " '-'; starting with a letter; at most 100)"
        )
    return name


def save_credential(
    conn: Connection,
    keyring: Keyring,
    *,
    name: str,
    value: str,
    owner: uuid.UUID | None,
    actor: str,
) -> Saved:
    """Store (or replace) a credential, encrypted, and audit it.

    Args:
        owner: the user it belongs to; None: shared (admins only; the caller checks).
        actor: who did it, for the audit row.

    Raises:
        ValidationFailed: a bad name, or an empty or oversized value.
    """
    check_name(name)
    if not value or len(value) > MAX_VALUE_CHARS:
        raise ValidationFailed(f"value: must be 1 to {MAX_VALUE_CHARS} characters")
    token, kid = keyring.encrypt(value)
    row = conn.execute(
        UPSERT_SQL, {"owner": owner, "name": name, "token": token, "kid": kid, "actor": actor}
    ).one()
    record_event(
        conn,
        action="credential.create" if row.created else "credential.replace",
        actor=actor,
        details={"name": name, "shared": owner is None, "owner": _str(owner), "key_id": kid},
    )
    return Saved(row.id, name, owner is None, bool(row.created))


def delete_credential(conn: Connection, *, name: str, owner: uuid.UUID | None, actor: str) -> None:
    """Delete a credential and audit it.

    Raises:
        NotFoundError: there is none of that name (for that owner).
    """
    if conn.execute(DELETE_SQL, {"owner": owner, "name": check_name(name)}).first() is None:
        where = "shared" if owner is None else "of yours"
        raise NotFoundError(f"no {where} credential named {name!r}")
    record_event(
        conn,
        action="credential.delete",
        actor=actor,
        details={"name": name, "shared": owner is None, "owner": _str(owner)},
    )


def list_credentials(
    conn: Connection, owner: uuid.UUID, *, with_shared: bool = True
) -> list[dict[str, Any]]:
    """Names and metadata of a user's credentials (and the shared ones); never values."""
    rows = conn.execute(LIST_SQL, {"owner": owner, "with_shared": with_shared}).mappings()
    return [dict(r) for r in rows]


def resolve(
    conn: Connection, keyring: Keyring, owner: uuid.UUID | None, names: Iterable[str]
) -> dict[str, str]:
    """Decrypted values of ``names`` for ``owner``: their own, else the shared one.

    Names neither has are missing from the result (the caller says what is missing).
    """
    wanted = sorted(set(names))
    if not wanted:
        return {}
    rows = conn.execute(RESOLVE_SQL, {"names": wanted, "owner": owner})
    return {r.name: keyring.decrypt(r.ciphertext, r.key_id) for r in rows}


def rotate_keys(conn: Connection, keyring: Keyring, *, actor: str) -> dict[str, int]:
    """Re-encrypt every credential not under the current key, and audit the rotation.

    Rows are locked while they are re-encrypted (the caller's transaction), so a
    concurrent write of the same credential waits and is not lost.

    Raises:
        ConfigError: a row's key is in neither AGENTRY_SECRET_KEY nor
            AGENTRY_SECRET_KEYS_OLD (nothing is changed: the transaction fails).
    """
    by_key: dict[str, int] = {}
    for row in conn.execute(STALE_SQL, {"kid": keyring.current_id}).all():
        token, kid = keyring.encrypt(keyring.decrypt(row.ciphertext, row.key_id))
        conn.execute(REKEY_SQL, {"token": token, "kid": kid, "id": row.id})
        by_key[row.key_id] = by_key.get(row.key_id, 0) + 1
    record_event(
        conn,
        action="credentials.rotate",
        actor=actor,
        details={"key_id": keyring.current_id, "from": by_key, "count": sum(by_key.values())},
    )
    return by_key


def _str(value: uuid.UUID | None) -> str | None:
    return None if value is None else str(value)
