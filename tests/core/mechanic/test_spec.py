"""The spec: JSON or YAML, whitelisted types, identifiers refused with the reason."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.errors import ConflictError, NotFoundError, ValidationFailed
from core.mechanic.spec import EntityDef, parse_spec, resolve
from tests.core.mechanic.conftest import CHARACTER


def entity(**extra: Any) -> dict[str, Any]:
    return {"action": "add_entity", "entity": "book", **extra}


def field(name: str = "title", type_: str = "text", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": type_, **extra}


def test_the_issue_example_is_accepted_as_json_and_as_yaml() -> None:
    from_json = parse_spec(json.dumps(CHARACTER))
    yaml_text = """
action: add_entity
entity: character
fields:
  - {name: name, type: string, max_length: 200, required: true, searchable: true}
  - {name: role, type: string, max_length: 100}
  - {name: age, type: integer}
  - {name: backstory, type: text, searchable: true}
  - {name: traits, type: string_list}
"""
    assert parse_spec(yaml_text) == from_json
    assert [f.name for f in from_json.fields] == ["name", "role", "age", "backstory", "traits"]
    assert from_json.summary() == "add entity character (name, role, age, backstory, traits)"


@pytest.mark.parametrize(
    ("spec", "reason"),
    [
        (entity(entity="select", fields=[field()]), "reserved SQL keyword"),
        (entity(entity="book", fields=[field("order")]), "reserved SQL keyword"),
        (entity(entity='bo"ok', fields=[field()]), "no quotes"),
        (entity(entity="book's", fields=[field()]), "no quotes"),
        (entity(entity="b" * 64, fields=[field()]), "longer than 63 bytes"),
        (entity(fields=[field("é" * 32)]), "longer than 63 bytes"),
        (entity(entity="users", fields=[field()]), "clashes with a core or LangGraph table"),
        (entity(entity="checkpoints", fields=[field()]), "clashes with a core or LangGraph table"),
        (entity(entity="checkpoint_writes", fields=[field()]), "clashes"),
        (entity(entity="message", fields=[field()]), "clashes"),
        (entity(fields=[field("title"), field("title")]), "duplicate field names: title"),
        (entity(fields=[field("id")]), "base field"),
        (entity(fields=[field("created_by", "uuid")]), "Input should be"),
        (entity(fields=[field("x", "money")]), "Input should be"),
        (entity(fields=[field("kind", "enum")]), "enum needs a non-empty 'values'"),
        (entity(fields=[field("kind", "enum", values=["a'b"])]), "must be plain words"),
        (entity(fields=[field("owner", "reference")]), "reference needs 'references'"),
        (entity(fields=[field("n", "integer", searchable=True)]), "only text-like fields"),
        (entity(fields=[field("n", "integer", default="x")]), "must be an integer"),
        (entity(fields=[field("n", "integer", default=2**40)]), "must be an integer"),
        (entity(fields=[field("s", "string", max_length=3, default="long")]), "longer than"),
        (entity(fields=[field("d", "date", default="tomorrow")]), "ISO date"),
        (entity(fields=[field("t", "text", max_length=5)]), "string fields only"),
        (entity(fields=[]), "needs at least one field"),
        (entity(fields=[field()], colour="red"), "Extra inputs are not permitted"),
        ({"action": "drop_table", "entity": "book"}, "Input should be"),
        ({"action": "add_index", "entity": "book"}, "'index' is required"),
        ({"action": "retire_entity", "entity": "book", "fields": [field()]}, "takes no fields"),
        (entity(entity="pg_book", fields=[field()]), "reserved prefix"),
        (entity(entity="Book", fields=[field()]), "lower-case"),
    ],
)
def test_bad_specs_are_refused_with_the_reason(spec: dict[str, Any], reason: str) -> None:
    with pytest.raises(ValidationFailed) as err:
        parse_spec(spec)
    assert reason in err.value.message


def test_not_a_mapping_or_not_yaml_is_refused() -> None:
    with pytest.raises(ValidationFailed, match="mapping"):
        parse_spec("[1, 2]")
    with pytest.raises(ValidationFailed, match="neither JSON nor YAML"):
        parse_spec("{action: [")


def test_defaults_are_checked_against_types_and_good_ones_pass() -> None:
    spec = parse_spec(
        entity(
            fields=[
                field("s", "string", max_length=10, default="ok"),
                field("n", "bigint", default=2**40),
                field("x", "numeric", default=1.5),
                field("b", "boolean", default=False),
                field("d", "date", default="2024-02-29"),
                field("t", "timestamptz", default="now"),
                field("j", "jsonb", default={"a": [1]}),
                field("l", "string_list", default=["a", "b"]),
                field("e", "enum", values=["x", "y"], default="y"),
            ]
        )
    )
    assert spec.fields[0].max_length == 10
    assert parse_spec(entity(fields=[field("s", "string")])).fields[0].max_length == 255


def test_resolve_checks_the_registry() -> None:
    book = resolve(parse_spec(entity(fields=[field()])), None, None, {})
    assert isinstance(book, EntityDef)
    active = {"book": book}
    with pytest.raises(ConflictError, match="already exists"):
        resolve(parse_spec(entity(fields=[field()])), book, "active", active)
    with pytest.raises(ConflictError, match="already has fields title"):
        resolve(
            parse_spec({"action": "add_fields", "entity": "book", "fields": [field()]}),
            book,
            "active",
            active,
        )
    with pytest.raises(NotFoundError):
        resolve(parse_spec({"action": "retire_entity", "entity": "film"}), None, None, active)
    with pytest.raises(ValidationFailed, match="unknown entity 'author'"):
        resolve(
            parse_spec(
                {
                    "action": "add_fields",
                    "entity": "book",
                    "fields": [field("author", "reference", references="author")],
                }
            ),
            book,
            "active",
            active,
        )
    with pytest.raises(ValidationFailed, match="has no fields pages"):
        resolve(
            parse_spec({"action": "add_index", "entity": "book", "index": {"fields": ["pages"]}}),
            book,
            "active",
            active,
        )
    review = resolve(
        parse_spec(
            {
                "action": "add_entity",
                "entity": "review",
                "fields": [field("book", "reference", references="book")],
            }
        ),
        None,
        None,
        active,
    )
    assert review is not None
    with pytest.raises(ConflictError, match="referenced by review"):
        resolve(
            parse_spec({"action": "retire_entity", "entity": "book"}),
            book,
            "active",
            {**active, "review": review},
        )
    # A retired entity may come back only by re-applying its own change.
    assert resolve(parse_spec(entity(fields=[field()])), book, "retired", {}, reapply=True)
    with pytest.raises(ConflictError):
        resolve(parse_spec(entity(fields=[field()])), book, "retired", {})


def test_every_table_of_core_is_reserved() -> None:
    # Derived from the models: a table core adds is refused without editing a list.
    import core.models
    from core.mechanic.spec import RESERVED_TABLES

    core_tables = {
        m.local_table.name
        for m in core.models.Base.registry.mappers
        if m.class_.__module__.startswith("core.models")
    }
    assert {"store_items", "search_embedding_space"} <= core_tables <= RESERVED_TABLES
    for name in ("store_items", "search_embedding_space"):
        with pytest.raises(ValidationFailed, match="clashes with a core or LangGraph table"):
            parse_spec(entity(entity=name, fields=[field()]))
