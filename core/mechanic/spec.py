"""The change spec: what the mechanic may do, in a form that can be checked before any SQL.

Identifiers and types come from a whitelist; everything else is refused with the reason.
:class:`EntityDef` is an entity's full definition (what ``entity_types`` stores and what
``render`` turns into a model file); :func:`resolve` applies a spec to the current one.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from core.db.checkpoints import CHECKPOINT_TABLES
from core.errors import ConflictError, NotFoundError, ValidationFailed
from core.models import Base

FieldType = Literal[
    "string",
    "text",
    "integer",
    "bigint",
    "numeric",
    "boolean",
    "date",
    "timestamptz",
    "jsonb",
    "reference",
    "enum",
    "string_list",
]
Action = Literal["add_entity", "add_fields", "add_index", "retire_entity"]

IDENTIFIER = re.compile(r"^[a-z][a-z0-9_]*$")
MAX_IDENTIFIER_BYTES = 63
BASE_FIELDS = ("id", "created_at", "updated_at", "is_deleted", "created_by")
TEXT_TYPES = ("string", "text", "enum", "string_list")
INT_RANGES = {"integer": (-(2**31), 2**31 - 1), "bigint": (-(2**63), 2**63 - 1)}

# PostgreSQL's reserved key words (and those reserved except as function or type names):
# they cannot be bare table or column names.
SQL_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric authorization binary both case cast
    check collate collation column concurrently constraint create cross current_catalog
    current_date current_role current_schema current_time current_timestamp current_user default
    deferrable desc distinct do else end except false fetch for foreign freeze from full grant
    group having ilike in initially inner intersect into is isnull join lateral leading left like
    limit localtime localtimestamp natural not notnull null offset on only or order outer
    overlaps placing primary references returning right select session_user similar some
    symmetric system_user table tablesample then to trailing true union unique user using
    variadic verbose when where window with""".split()  # noqa: SIM905
)


def _core_tables() -> frozenset[str]:
    # Derived from core's models, so a table core adds is reserved without a list to keep
    # in step; dynamic (mechanic) tables share the metadata but are plain Tables, not mapped.
    mapped = {
        m.local_table.name
        for m in Base.registry.mappers
        if m.class_.__module__.startswith("core.models") and hasattr(m.local_table, "name")
    }
    return frozenset(mapped | {"alembic_version"})


CORE_TABLES = _core_tables()
# Entity type names core already uses (search hits, tools, routes).
CORE_NAMES = frozenset(
    {"user", "agent", "tool", "conversation", "message", "agent_switch", "audit", "search",
     "ai_model", "prompt", "entity", "entity_type", "mechanic", "change"}
)  # fmt: skip
RESERVED_TABLES = CORE_TABLES | frozenset(CHECKPOINT_TABLES)
ENUM_VALUE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 _.\-]{0,62}$")


def check_identifier(name: str, what: str) -> str:
    """Refuse what cannot safely be a PostgreSQL identifier, saying why.

    Args:
        name: the proposed identifier.
        what: "entity" or "field", for the message.

    Returns:
        ``name`` unchanged.

    Raises:
        ValueError: the reason it is refused.
    """
    if len(name.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(f"{what} name {name!r} is longer than {MAX_IDENTIFIER_BYTES} bytes")
    if not IDENTIFIER.match(name):
        raise ValueError(
            f"{what} name {name!r} must be lower-case letters, digits and _ starting with a "
            "letter (no quotes, spaces or symbols)"
        )
    if name in SQL_RESERVED:
        raise ValueError(f"{what} name {name!r} is a reserved SQL keyword")
    if name.startswith("pg_"):
        raise ValueError(f"{what} name {name!r} uses PostgreSQL's reserved prefix pg_")
    return name


class FieldSpec(BaseModel):
    """One field of an entity."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="lower_snake_case column name")
    type: FieldType
    max_length: int | None = Field(default=None, ge=1, le=10_485_760, description="string only")
    required: bool = False
    default: Any = Field(default=None, description="constant default, checked against the type")
    unique: bool = False
    index: bool = False
    searchable: bool = Field(default=False, description="indexed for search (text types only)")
    values: list[str] | None = Field(default=None, description="enum only: allowed values")
    references: str | None = Field(default=None, description="reference only: target entity")
    description: str | None = Field(default=None, max_length=500)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        check_identifier(value, "field")
        if value in BASE_FIELDS:
            raise ValueError(f"field name {value!r} is a base field the platform adds itself")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> FieldSpec:
        t = self.type
        if t == "string" and self.max_length is None:
            self.max_length = 255
        if t != "string" and self.max_length is not None:
            raise ValueError(f"field {self.name!r}: max_length applies to string fields only")
        if t == "enum":
            if not self.values:
                raise ValueError(f"field {self.name!r}: enum needs a non-empty 'values' list")
            bad = [v for v in self.values if not ENUM_VALUE.match(v)]
            if bad:
                raise ValueError(f"field {self.name!r}: enum values {bad} must be plain words")
            if len(set(self.values)) != len(self.values):
                raise ValueError(f"field {self.name!r}: enum values repeat")
        elif self.values is not None:
            raise ValueError(f"field {self.name!r}: values apply to enum fields only")
        if t == "reference":
            if not self.references:
                raise ValueError(f"field {self.name!r}: reference needs 'references' (an entity)")
            check_identifier(self.references, "referenced entity")
            if self.default is not None:
                raise ValueError(f"field {self.name!r}: a reference cannot have a default")
        elif self.references is not None:
            raise ValueError(f"field {self.name!r}: references applies to reference fields only")
        if self.searchable and t not in TEXT_TYPES:
            raise ValueError(
                f"field {self.name!r}: only text-like fields ({', '.join(TEXT_TYPES)}) can be "
                "searchable"
            )
        if self.default is not None:
            check_default(self)
        return self


def check_default(field: FieldSpec) -> None:
    """Refuse a default that does not fit the field's type."""
    value, t, name = field.default, field.type, field.name
    problem: str | None = None
    if t in ("string", "text", "enum") and not isinstance(value, str):
        problem = "must be a string"
    elif t == "string" and field.max_length is not None and len(value) > field.max_length:
        problem = f"is longer than max_length {field.max_length}"
    elif t == "enum" and value not in (field.values or []):
        problem = f"is not one of {field.values}"
    elif t in INT_RANGES:
        low, high = INT_RANGES[t]
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            problem = f"must be an integer in [{low}, {high}]"
    elif t == "numeric":
        try:
            Decimal(str(value))
        except InvalidOperation:
            problem = "must be a number"
        if isinstance(value, bool):
            problem = "must be a number"
    elif t == "boolean" and not isinstance(value, bool):
        problem = "must be true or false"
    elif t == "date":
        try:
            dt.date.fromisoformat(str(value))
        except ValueError:
            problem = "must be an ISO date (YYYY-MM-DD)"
    elif t == "timestamptz" and value != "now":
        try:
            parsed = dt.datetime.fromisoformat(str(value))
            if parsed.tzinfo is None:
                problem = "must carry a time zone (or be 'now')"
        except ValueError:
            problem = "must be an ISO timestamp with time zone, or 'now'"
    elif t == "string_list" and not (
        isinstance(value, list) and all(isinstance(v, str) for v in value)
    ):
        problem = "must be a list of strings"
    elif t == "jsonb":
        json.dumps(value)
    if problem:
        raise ValueError(f"field {name!r}: default {value!r} {problem}")


class IndexSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    fields: list[str] = Field(min_length=1, max_length=5)
    unique: bool = False


class ChangeSpec(BaseModel):
    """A schema change, as an admin or the mechanic agent proposes it."""

    model_config = ConfigDict(extra="forbid")

    action: Action
    entity: str = Field(description="lower_snake_case entity name; also its table name")
    description: str | None = Field(default=None, max_length=500)
    fields: list[FieldSpec] = Field(default_factory=list)
    index: IndexSpec | None = Field(default=None, description="add_index only")

    @field_validator("entity")
    @classmethod
    def _entity(cls, value: str) -> str:
        check_identifier(value, "entity")
        if value in RESERVED_TABLES or value in CORE_NAMES:
            raise ValueError(f"entity name {value!r} clashes with a core or LangGraph table")
        return value

    @model_validator(mode="after")
    def _shape(self) -> ChangeSpec:
        names = [f.name for f in self.fields]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"duplicate field names: {', '.join(dupes)}")
        if self.action in ("add_entity", "add_fields") and not self.fields:
            raise ValueError(f"{self.action} needs at least one field")
        if self.action in ("add_index", "retire_entity") and self.fields:
            raise ValueError(f"{self.action} takes no fields")
        if (self.action == "add_index") != (self.index is not None):
            raise ValueError("'index' is required for add_index and allowed only there")
        return self

    def summary(self) -> str:
        """A readable one-liner (revision message, commit message without instruction)."""
        names = ", ".join(f.name for f in self.fields)
        if self.action == "add_entity":
            return f"add entity {self.entity} ({names})"
        if self.action == "add_fields":
            return f"add fields to {self.entity} ({names})"
        if self.action == "add_index":
            assert self.index is not None
            kind = "unique index" if self.index.unique else "index"
            return f"add {kind} on {self.entity} ({', '.join(self.index.fields)})"
        return f"retire entity {self.entity}"


def parse_spec(raw: str | bytes | dict[str, Any]) -> ChangeSpec:
    """Read a spec from JSON or YAML text (or an already-parsed mapping).

    Raises:
        ValidationFailed: not JSON/YAML, or not a valid spec; the message says what is wrong.
    """
    data: Any = raw
    if isinstance(raw, str | bytes):
        try:
            data = yaml.safe_load(raw)  # YAML is a superset of JSON
        except yaml.YAMLError as exc:
            raise ValidationFailed(f"spec is neither JSON nor YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ValidationFailed("spec must be a mapping with at least 'action' and 'entity'")
    try:
        return ChangeSpec.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed("invalid spec: " + describe(exc)) from None


def describe(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        parts.append(f"{loc}: {msg}" if loc else msg)
    return "; ".join(parts)


class EntityDef(BaseModel):
    """An entity's complete definition: what ``entity_types`` stores and ``render`` renders."""

    name: str
    description: str | None = None
    fields: list[FieldSpec]
    indexes: list[IndexSpec] = Field(default_factory=list)

    @property
    def table(self) -> str:
        return self.name

    @property
    def searchable(self) -> list[str]:
        return [f.name for f in self.fields if f.searchable]

    def field(self, name: str) -> FieldSpec | None:
        return next((f for f in self.fields if f.name == name), None)


def resolve(
    spec: ChangeSpec,
    current: EntityDef | None,
    current_status: str | None,
    active: dict[str, EntityDef],
    *,
    reapply: bool = False,
) -> EntityDef | None:
    """Apply ``spec`` to the entity's current definition.

    Args:
        spec: the change.
        current: the entity's definition now (None when unknown).
        current_status: its registry status (active, retired) or None.
        active: every active entity by name (reference targets, referrers).
        reapply: re-applying a rolled-back change: a retired entity may come back.

    Returns:
        The definition after the change (None when the entity is retired).

    Raises:
        ConflictError / NotFoundError / ValidationFailed: the change does not fit.
    """
    name = spec.entity
    if spec.action == "add_entity":
        if current is not None and not (reapply and current_status == "retired"):
            raise ConflictError(f"entity {name!r} already exists ({current_status})")
        after = EntityDef(name=name, description=spec.description, fields=list(spec.fields))
    else:
        if current is None or current_status != "active":
            raise NotFoundError(f"no active entity {name!r}")
        if spec.action == "retire_entity":
            users = sorted(
                e.name
                for e in active.values()
                if e.name != name and any(f.references == name for f in e.fields)
            )
            if users:
                raise ConflictError(f"entity {name!r} is referenced by {', '.join(users)}")
            return None
        if spec.action == "add_fields":
            clash = [f.name for f in spec.fields if current.field(f.name)]
            if clash:
                raise ConflictError(f"{name} already has fields {', '.join(clash)}")
            after = current.model_copy(update={"fields": [*current.fields, *spec.fields]})
        else:
            assert spec.index is not None
            missing = [
                f for f in spec.index.fields if f not in BASE_FIELDS and not current.field(f)
            ]
            if missing:
                raise ValidationFailed(f"{name} has no fields {', '.join(missing)}")
            after = current.model_copy(update={"indexes": [*current.indexes, spec.index]})
    for f in after.fields:
        if f.references and f.references != name and f.references not in active:
            raise ValidationFailed(f"field {f.name!r} references unknown entity {f.references!r}")
    return after
