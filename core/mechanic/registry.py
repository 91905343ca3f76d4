"""The ``entity_types`` registry and the ``mechanic_changes`` rows, read and written."""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, select, text, update
from sqlalchemy.dialects.postgresql import insert

from core.errors import NotFoundError, ValidationFailed
from core.mechanic.spec import EntityDef
from core.models import EntityType, MechanicChange
from core.registry.audit import record_event

NOTIFY_CHANNEL = "agentry_entities"


@dataclass(frozen=True)
class RegisteredEntity:
    defn: EntityDef
    status: str
    revision: str | None


def load_entities(conn: Connection) -> dict[str, RegisteredEntity]:
    """Every entity type the mechanic made, whatever its status."""
    out: dict[str, RegisteredEntity] = {}
    for r in conn.execute(select(EntityType.__table__)).mappings():
        defn = EntityDef.model_validate(
            {
                "name": r["name"],
                "description": r["description"],
                "fields": r["fields"],
                "indexes": r["indexes"],
            }
        )
        out[r["name"]] = RegisteredEntity(defn, r["status"], r["revision"])
    return out


def save_entity(conn: Connection, defn: EntityDef, status: str, revision: str | None) -> None:
    """Insert or update an entity's registry row."""
    values = {
        "name": defn.name,
        "table_name": defn.table,
        "description": defn.description,
        "fields": [f.model_dump(mode="json", exclude_defaults=True) for f in defn.fields],
        "searchable_fields": defn.searchable,
        "indexes": [ix.model_dump(mode="json") for ix in defn.indexes],
        "status": status,
        "revision": revision,
    }
    stmt = insert(EntityType).values(**values)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[EntityType.name],
            set_={k: stmt.excluded[k] for k in values if k != "name"},
        )
    )


def set_entity_status(conn: Connection, name: str, status: str) -> None:
    conn.execute(update(EntityType).where(EntityType.name == name).values(status=status))


def notify(conn: Connection, entity: str) -> None:
    """Tell every server process (at commit) that an entity changed."""
    conn.execute(text("SELECT pg_notify(:c, :p)"), {"c": NOTIFY_CHANNEL, "p": entity})


CHANGE_COLUMNS = [c for c in MechanicChange.__table__.columns]
ID_PREFIX = re.compile(r"[0-9a-f-]{1,36}")
AMBIGUOUS_SHOWN = 4
RESOLVE_SQL = text(
    "SELECT id FROM mechanic_changes WHERE CAST(id AS text) LIKE :prefix "
    f"ORDER BY created_at DESC LIMIT {AMBIGUOUS_SHOWN}"
)


def change_dict(row: Any) -> dict[str, Any]:
    return {c.name: row[c.name] for c in CHANGE_COLUMNS}


def get_change(
    conn: Connection, change_id: uuid.UUID, *, for_update: bool = False
) -> dict[str, Any]:
    stmt = select(MechanicChange.__table__).where(MechanicChange.id == change_id)
    if for_update:
        stmt = stmt.with_for_update()
    row = conn.execute(stmt).mappings().first()
    if row is None:
        raise NotFoundError(f"no schema change {change_id}")
    return change_dict(row)


def resolve_change_id(conn: Connection, ref: str | uuid.UUID) -> uuid.UUID:
    """A change id from the id or a unique prefix of it (as git takes commit ids).

    Raises:
        ValidationFailed: not hex digits, or a prefix shared by several changes.
        NotFoundError: no change starts with it.
    """
    if isinstance(ref, uuid.UUID):
        return ref
    wanted = ref.strip().lower()
    if not ID_PREFIX.fullmatch(wanted):
        raise ValidationFailed(
            f"change id {ref!r}: expected a change id or a unique prefix of one (hex digits)"
        )
    found = list(conn.execute(RESOLVE_SQL, {"prefix": wanted + "%"}).scalars())
    if not found:
        raise NotFoundError(f"no schema change {wanted}")
    if len(found) > 1:
        shown = ", ".join(str(i) for i in found[: AMBIGUOUS_SHOWN - 1])
        more = ", ..." if len(found) >= AMBIGUOUS_SHOWN else ""
        raise ValidationFailed(
            f"change id prefix {wanted!r} is ambiguous ({shown}{more}): give more characters"
        )
    change_id: uuid.UUID = found[0]
    return change_id


def list_changes(
    conn: Connection, *, status: str | None = None, limit: int = 50
) -> list[dict[str, Any]]:
    stmt = select(MechanicChange.__table__).order_by(MechanicChange.created_at.desc()).limit(limit)
    if status:
        stmt = stmt.where(MechanicChange.status == status)
    return [change_dict(r) for r in conn.execute(stmt).mappings()]


def update_change(conn: Connection, change_id: uuid.UUID, **values: Any) -> None:
    conn.execute(update(MechanicChange).where(MechanicChange.id == change_id).values(**values))


def insert_change(conn: Connection, **values: Any) -> uuid.UUID:
    new_id: uuid.UUID = conn.execute(
        insert(MechanicChange).values(**values).returning(MechanicChange.id)
    ).scalar_one()
    return new_id


def record_success(
    conn: Connection,
    change: dict[str, Any],
    *,
    action: str,
    actor: str,
    details: dict[str, Any],
    sha: str,
    branch: str | None,
    **values: Any,
) -> dict[str, Any]:
    """Store what an apply or rollback did (``values``) with its audit row; the change after."""
    update_change(conn, change["id"], error=None, **values)
    record_audit(
        conn,
        action=action,
        actor=actor,
        status="succeeded",
        details=details,
        git_commit=sha,
        git_branch=branch,
    )
    return get_change(conn, change["id"])


def record_audit(
    conn: Connection,
    *,
    action: str,
    actor: str,
    status: str,
    details: dict[str, Any],
    git_commit: str | None = None,
    git_branch: str | None = None,
) -> None:
    """Append one audit_log row (through core/registry/audit.py, the one writer)."""
    record_event(
        conn,
        action=action,
        actor=actor,
        status=status,
        details=details,
        git_commit=git_commit,
        git_branch=git_branch,
    )
