"""CRUD on dynamic entities: validation from the spec, soft delete, cursor pages, user scoping.

Every write of a searchable field goes through :mod:`core.memory.indexer`, inside the
caller's transaction. Library functions take a connection; the caller commits.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError, create_model
from sqlalchemy import Connection, MetaData, Table, and_, delete, or_, select, update
from sqlalchemy.exc import IntegrityError

from core.errors import ConflictError, NotFoundError, ValidationFailed
from core.mechanic.render import build_table
from core.mechanic.spec import INT_RANGES, EntityDef, FieldSpec, describe
from core.memory.indexer import index_document, remove_document
from core.models import SearchIndex
from core.models.base import NAMING_CONVENTION

MAX_PAGE = 200


def python_type(f: FieldSpec) -> Any:
    """The pydantic type of a spec field (what the API and the tools accept)."""
    t = f.type
    if t == "string":
        return Annotated[str, Field(max_length=f.max_length)]
    if t in INT_RANGES:
        low, high = INT_RANGES[t]
        return Annotated[int, Field(ge=low, le=high)]
    if t == "enum":
        return Literal[tuple(f.values or [])]
    return {
        "text": str,
        "numeric": Decimal,
        "boolean": bool,
        "date": dt.date,
        "timestamptz": AwareDatetime,
        "jsonb": Any,
        "reference": uuid.UUID,
        "string_list": list[str],
    }[t]


def input_model(defn: EntityDef, *, partial: bool) -> type[BaseModel]:
    """A pydantic model of the entity's writable fields (all optional when ``partial``)."""
    fields: dict[str, Any] = {}
    for f in defn.fields:
        kind = python_type(f)
        desc = f.description or f"{f.type} field {f.name}"
        if f.required and f.default is None and not partial:
            fields[f.name] = (kind, Field(description=desc))
        else:
            fields[f.name] = (kind | None, Field(default=None, description=desc))
    model: type[BaseModel] = create_model(
        f"{defn.name.title().replace('_', '')}{'Update' if partial else 'Create'}",
        __config__=ConfigDict(extra="forbid"),
        **fields,
    )
    return model


@dataclass
class LiveEntity:
    """An active entity as a server process serves it."""

    defn: EntityDef
    revision: str | None
    table: Table = field(init=False)
    create_model: type[BaseModel] = field(init=False)
    update_model: type[BaseModel] = field(init=False)

    def __post_init__(self) -> None:
        self.table = build_table(self.defn, MetaData(naming_convention=NAMING_CONVENTION))
        self.create_model = input_model(self.defn, partial=False)
        self.update_model = input_model(self.defn, partial=True)

    @property
    def name(self) -> str:
        return self.defn.name


def _validate(model: type[BaseModel], data: Any, *, partial: bool) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise ValidationFailed("the body must be a JSON object of field values")
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(describe(exc)) from None
    values = parsed.model_dump(exclude_unset=partial)
    # Unset optional fields are left to the column default.
    return values if partial else {k: v for k, v in values.items() if v is not None or k in data}


def _integrity(exc: IntegrityError, entity: str) -> Exception:
    code = getattr(exc.orig, "sqlstate", None)
    detail = str((getattr(exc.orig, "diag", None) and exc.orig.diag.message_detail) or exc.orig)  # type: ignore[union-attr]
    if code == "23505":
        return ConflictError(f"{entity}: a record with these values exists ({detail})")
    return ValidationFailed(f"{entity}: {detail}")


def search_text(ent: LiveEntity, row: Any) -> str:
    """The text of a row's searchable fields, one ``field: value`` line each."""
    parts = []
    for name in ent.defn.searchable:
        value = row[name]
        if value is None:
            continue
        shown = ", ".join(value) if isinstance(value, list) else str(value)
        if shown.strip():
            parts.append(f"{name}: {shown}")
    return "\n".join(parts)


def _index(conn: Connection, ent: LiveEntity, row: Any) -> None:
    if not ent.defn.searchable:
        return
    index_document(
        conn,
        entity_type=ent.name,
        entity_id=row["id"],
        text=search_text(ent, row),
        user_id=row["created_by"],
        metadata={"fields": ent.defn.searchable},
    )


def _scope(ent: LiveEntity, user_id: uuid.UUID | None) -> Any:
    t = ent.table
    cond = t.c.is_deleted.is_(False)
    return and_(cond, t.c.created_by == user_id) if user_id is not None else cond


def create(
    conn: Connection, ent: LiveEntity, data: Any, *, user_id: uuid.UUID | None
) -> dict[str, Any]:
    """Validate and insert one record owned by ``user_id``; its text is indexed.

    Raises:
        ValidationFailed: bad or unknown fields (422); ConflictError: unique clash (409).
    """
    values = _validate(ent.create_model, data, partial=False)
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    ent.table.insert().values(**values, created_by=user_id).returning(ent.table)
                )
                .mappings()
                .one()
            )
    except IntegrityError as exc:
        raise _integrity(exc, ent.name) from None
    _index(conn, ent, row)
    return dict(row)


def get(
    conn: Connection, ent: LiveEntity, record_id: uuid.UUID, *, user_id: uuid.UUID | None
) -> dict[str, Any]:
    """One live record; None ``user_id`` means any owner (admins)."""
    row = (
        conn.execute(select(ent.table).where(ent.table.c.id == record_id, _scope(ent, user_id)))
        .mappings()
        .first()
    )
    if row is None:
        raise NotFoundError(f"no {ent.name} {record_id}")
    return dict(row)


def update_record(
    conn: Connection,
    ent: LiveEntity,
    record_id: uuid.UUID,
    data: Any,
    *,
    user_id: uuid.UUID | None,
) -> dict[str, Any]:
    """Change some fields of a record; re-indexes its text."""
    values = _validate(ent.update_model, data, partial=True)
    get(conn, ent, record_id, user_id=user_id)
    t = ent.table
    try:
        with conn.begin_nested():
            row = (
                conn.execute(
                    update(t)
                    .where(t.c.id == record_id)
                    .values(**values, updated_at=dt.datetime.now(dt.UTC))
                    .returning(t)
                )
                .mappings()
                .one()
            )
    except IntegrityError as exc:
        raise _integrity(exc, ent.name) from None
    _index(conn, ent, row)
    return dict(row)


def soft_delete(
    conn: Connection, ent: LiveEntity, record_id: uuid.UUID, *, user_id: uuid.UUID | None
) -> None:
    """Mark a record deleted (the row stays) and take it out of search."""
    get(conn, ent, record_id, user_id=user_id)
    t = ent.table
    conn.execute(
        update(t)
        .where(t.c.id == record_id)
        .values(is_deleted=True, updated_at=dt.datetime.now(dt.UTC))
    )
    remove_document(conn, entity_type=ent.name, entity_id=record_id)


def encode_cursor(row: dict[str, Any]) -> str:
    raw = json.dumps([row["created_at"].isoformat(), str(row["id"])])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[dt.datetime, uuid.UUID]:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created, rid = json.loads(base64.urlsafe_b64decode(padded))
        return dt.datetime.fromisoformat(created), uuid.UUID(rid)
    except (ValueError, TypeError):
        raise ValidationFailed("invalid cursor") from None


def list_records(
    conn: Connection,
    ent: LiveEntity,
    *,
    user_id: uuid.UUID | None,
    limit: int = 50,
    cursor: str | None = None,
) -> tuple[list[dict[str, Any]], str | None]:
    """A page of live records, oldest first, and the cursor of the next page (None at the end)."""
    if not 1 <= limit <= MAX_PAGE:
        raise ValidationFailed(f"limit must be between 1 and {MAX_PAGE}")
    t = ent.table
    stmt = select(t).where(_scope(ent, user_id)).order_by(t.c.created_at, t.c.id).limit(limit + 1)
    if cursor:
        created, rid = decode_cursor(cursor)
        stmt = stmt.where(
            or_(t.c.created_at > created, and_(t.c.created_at == created, t.c.id > rid))
        )
    rows = [dict(r) for r in conn.execute(stmt).mappings()]
    more = len(rows) > limit
    rows = rows[:limit]
    return rows, (encode_cursor(rows[-1]) if more and rows else None)


def reindex(conn: Connection, defn: EntityDef) -> int:
    """Index every live record of an entity (it went live, or came back from retirement)."""
    ent = LiveEntity(defn, None)
    unindex(conn, defn.name)
    if not defn.searchable:
        return 0
    count = 0
    for row in conn.execute(select(ent.table).where(ent.table.c.is_deleted.is_(False))).mappings():
        _index(conn, ent, row)
        count += 1
    return count


def unindex(conn: Connection, entity: str) -> None:
    """Hide a retired entity from search (its rows stay in its table)."""
    conn.execute(delete(SearchIndex).where(SearchIndex.entity_type == entity))
