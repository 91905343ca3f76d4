"""Plans check the data, not only the schema.

The dry run works on a schema-only copy, so a unique index over duplicates or a required
field over existing rows would pass it and fail at apply. These checks count the rows in
the live table at plan time and refuse with the numbers.
"""

from __future__ import annotations

from sqlalchemy import Connection, text

from core.errors import ValidationFailed
from core.mechanic.spec import ChangeSpec, EntityDef

# Identifiers are whitelisted by the spec (lower-case letters, digits, _), then quoted.
COUNT_ROWS = 'SELECT count(*) FROM "{table}"'
COUNT_DUPLICATES = (
    "SELECT count(*), coalesce(sum(n), 0) FROM ("
    ' SELECT count(*) AS n FROM "{table}" WHERE {not_null} GROUP BY {cols} HAVING count(*) > 1'
    ") AS dupes"
)


def _quoted(names: list[str]) -> str:
    return ", ".join(f'"{n}"' for n in names)


def check_data(conn: Connection, spec: ChangeSpec, before: EntityDef | None) -> None:
    """Refuse a change the existing rows of ``before``'s table cannot take.

    Raises:
        ValidationFailed: naming the field or index and how many rows are in the way.
    """
    if before is None or spec.action not in ("add_fields", "add_index"):
        return
    table = before.table
    if spec.action == "add_index" and spec.index is not None and spec.index.unique:
        cols = spec.index.fields
        not_null = " AND ".join(f'"{c}" IS NOT NULL' for c in cols)
        groups, rows = conn.execute(
            text(COUNT_DUPLICATES.format(table=table, not_null=not_null, cols=_quoted(cols)))
        ).one()
        if groups:
            raise ValidationFailed(
                f"index.fields: a unique index on {spec.entity} ({', '.join(cols)}) is refused: "
                f"{rows} existing rows share {groups} duplicated values; fix them first"
            )
        return
    rows = conn.execute(text(COUNT_ROWS.format(table=table))).scalar_one()
    if not rows:
        return
    for field in spec.fields:
        if field.required and field.default is None:
            raise ValidationFailed(
                f"fields.{field.name}: required without a default, but {rows} existing "
                f"{spec.entity} rows have no value; give it a default or make it optional"
            )
        if field.unique and field.default is not None and rows > 1:
            raise ValidationFailed(
                f"fields.{field.name}: unique with a default, but the {rows} existing "
                f"{spec.entity} rows would all get {field.default!r}; drop the default"
            )
