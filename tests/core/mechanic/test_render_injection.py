"""Generated model files cannot be escaped from: every string from a spec is a literal."""

from __future__ import annotations

import ast
from typing import Any

import pytest
from sqlalchemy import MetaData

from core.mechanic.render import build_table, render_model
from core.mechanic.spec import EntityDef, parse_spec

PAYLOADS = [
    '"""\nimport builtins; builtins.PWNED = True\n"""',
    "'''; __import__('builtins').PWNED = True; '''",
    'back\\slash \\" \\n \\x00 and a trailing backslash\\',
    "line one\nline two\r\n\tindented",
    "}}{{name}} {0} %s ${x}",
    "\"); __import__('builtins').PWNED = True; (\"",
]


def entity_with(text: str) -> EntityDef:
    spec = parse_spec(
        {
            "action": "add_entity",
            "entity": "quote_test",
            "description": text,
            "fields": [
                {"name": "title", "type": "string", "max_length": 50, "description": text},
                {"name": "note", "type": "text", "default": text},
                {"name": "tags", "type": "string_list", "default": [text, "plain"]},
                {"name": "extra", "type": "jsonb", "default": {"k": text}},
            ],
        }
    )
    return EntityDef(name=spec.entity, description=spec.description, fields=spec.fields, indexes=[])


def run(source: str) -> dict[str, Any]:
    namespace: dict[str, Any] = {"__name__": "dynamic.schema.quote_test"}
    exec(compile(source, "<test>", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("text", PAYLOADS)
def test_spec_strings_stay_literals(text: str) -> None:
    import builtins

    defn = entity_with(text)
    source = render_model(defn)
    tree = ast.parse(source)
    # the module is a docstring, imports, three assignments and define(): nothing else runs
    kinds = [type(node).__name__ for node in tree.body]
    assert kinds == ["Expr", "ImportFrom", "ImportFrom", "ImportFrom", "Assign", "Assign",
                     "Assign", "FunctionDef"], kinds  # fmt: skip
    namespace = run(source)
    assert not hasattr(builtins, "PWNED")
    assert namespace["DESCRIPTION"] == text
    assert namespace["DEFINITION"]["fields"][0]["description"] == text
    assert namespace["DEFINITION"]["fields"][1]["default"] == text
    table = build_table(defn, MetaData())
    assert not hasattr(builtins, "PWNED")
    default = table.c.note.server_default
    assert default is not None
    sql = str(default.arg)  # type: ignore[attr-defined]
    assert sql == "'" + text.replace("'", "''") + "'"


def test_enum_values_and_names_with_quotes_are_refused() -> None:
    from core.errors import ValidationFailed

    for bad in (
        {"name": "x", "type": "enum", "values": ["a'); DROP TABLE users; --"]},
        {"name": "x", "type": "enum", "values": ['"""']},
        {"name": 'x"); import os #', "type": "text"},
        {"name": "x", "type": "reference", "references": 'users.id"); import os #'},
    ):
        with pytest.raises(ValidationFailed):
            parse_spec({"action": "add_entity", "entity": "quote_test", "fields": [bad]})
