"""Plans check the data: a unique index or a required field over existing rows is refused at
plan time with the numbers (not at apply)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from config import Settings
from core.db import Database
from core.errors import ValidationFailed
from core.mechanic.apply import apply_change
from core.mechanic.plan import plan_change
from core.mechanic.spec import parse_spec

BOOK = {
    "action": "add_entity",
    "entity": "book",
    "fields": [
        {"name": "isbn", "type": "string", "max_length": 20},
        {"name": "title", "type": "string", "max_length": 100},
    ],
}


def plan(db: Database, settings: Settings, spec: dict[str, Any]) -> dict[str, Any]:
    return plan_change(db, settings, parse_spec(spec), actor="test")


@pytest.fixture(scope="module")
def books(db: Database, msettings: Settings) -> None:
    apply_change(db, msettings, plan(db, msettings, BOOK)["id"], actor="test")
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO book (isbn, title) VALUES ('1', 'a'), ('1', 'b'), ('2', 'c'),"
                 " ('2', 'd'), ('2', 'e'), ('3', 'f'), (NULL, 'g'), (NULL, 'h')")
        )  # fmt: skip


def test_unique_index_over_duplicates_is_refused_with_the_numbers(
    db: Database, msettings: Settings, books: None
) -> None:
    spec = {"action": "add_index", "entity": "book", "index": {"fields": ["isbn"], "unique": True}}
    with pytest.raises(ValidationFailed) as refused:
        plan(db, msettings, spec)
    assert "5 existing rows share 2 duplicated values" in refused.value.message
    assert refused.value.message.startswith("index.fields")
    # a plain index, or a unique one over distinct values, plans
    assert plan(db, msettings, {**spec, "index": {"fields": ["isbn"]}})["status"] == "planned"
    pair = {**spec, "index": {"fields": ["isbn", "title"], "unique": True}}
    assert plan(db, msettings, pair)["status"] == "planned"


def test_required_field_and_unique_default_over_rows_are_refused(
    db: Database, msettings: Settings, books: None
) -> None:
    required = {
        "action": "add_fields",
        "entity": "book",
        "fields": [{"name": "pages", "type": "integer", "required": True}],
    }
    with pytest.raises(ValidationFailed) as refused:
        plan(db, msettings, required)
    assert "8 existing book rows have no value" in refused.value.message
    unique = {
        "action": "add_fields",
        "entity": "book",
        "fields": [{"name": "code", "type": "string", "max_length": 5, "unique": True,
                    "default": "x"}],
    }  # fmt: skip
    with pytest.raises(ValidationFailed) as same:
        plan(db, msettings, unique)
    assert "the 8 existing book rows would all get 'x'" in same.value.message
    with_default = {**required, "fields": [{**required["fields"][0], "default": 0}]}  # type: ignore[index]
    assert plan(db, msettings, with_default)["status"] == "planned"
