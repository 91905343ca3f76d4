"""Lint and policy on a corpus of bad changes (each refused for its rule) and good ones."""

from __future__ import annotations

from typing import Any

import pytest
from alembic.operations import ops
from sqlalchemy import BigInteger, Column, Integer, MetaData, String, Text, text

from core.mechanic.generate import ConcurrentIndexOp
from core.mechanic.lint import FIXES, is_widening, lint, squawk_binary
from core.mechanic.plan import timeout_preamble
from core.mechanic.render import build_table
from core.mechanic.spec import parse_spec, resolve
from core.models.base import NAMING_CONVENTION
from tests.core.mechanic.conftest import CHARACTER

DYNAMIC = {"character"}
T = "character"


@pytest.fixture(scope="module")
def preamble(test_settings: Any) -> str:
    return timeout_preamble(test_settings)


def alter(column: str, **kw: Any) -> ops.AlterColumnOp:
    return ops.AlterColumnOp(T, column, **kw)


def new_table_op() -> ops.CreateTableOp:
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    from core.models import User

    User.__table__.to_metadata(metadata)
    defn = resolve(parse_spec(dict(CHARACTER, entity="hero")), None, None, {})
    return ops.CreateTableOp.from_table(build_table(defn, metadata))  # type: ignore[arg-type]


BAD: list[tuple[str, list[Any], str, str]] = [
    ("drop table", [ops.DropTableOp(T)], "", "no-drop-table"),
    ("drop column", [ops.DropColumnOp(T, "age")], "", "no-drop-column"),
    (
        "rename as drop + add",
        [ops.DropColumnOp(T, "name"), ops.AddColumnOp(T, Column("full_name", Text))],
        "",
        "ambiguous-rename",
    ),
    ("explicit rename", [alter("age", modify_name="years")], "", "ambiguous-rename"),
    (
        "not null without default on existing table",
        [ops.AddColumnOp(T, Column("level", Integer, nullable=False))],
        "",
        "not-null-without-default",
    ),
    (
        "shorter varchar",
        [alter("name", existing_type=String(200), modify_type=String(50))],
        "",
        "no-type-narrowing",
    ),
    (
        "text to varchar",
        [alter("backstory", existing_type=Text(), modify_type=String(100))],
        "",
        "no-type-narrowing",
    ),
    (
        "bigint to integer",
        [alter("age", existing_type=BigInteger(), modify_type=Integer())],
        "",
        "no-type-narrowing",
    ),
    (
        "integer to string",
        [alter("age", existing_type=Integer(), modify_type=String(10))],
        "",
        "no-type-narrowing",
    ),
    ("set not null", [alter("role", modify_nullable=False)], "", "no-set-not-null"),
    (
        "plain index on existing table",
        [ops.CreateIndexOp("ix_character_role", T, ["role"])],
        "",
        "concurrent-index",
    ),
    (
        "touches a core table",
        [ops.AddColumnOp("users", Column("nickname", Text))],
        "",
        "dynamic-tables-only",
    ),
    ("raw SQL", [ops.ExecuteSQLOp("DELETE FROM character")], "", "no-raw-sql"),
    (
        "squawk: required column",
        [],
        "ALTER TABLE character ADD COLUMN level integer NOT NULL;",
        "squawk:adding-required-field",
    ),
    (
        "squawk: foreign key validated under lock",
        [],
        "ALTER TABLE character ADD CONSTRAINT fk_x FOREIGN KEY (created_by) REFERENCES users (id);",
        "squawk:adding-foreign-key-constraint",
    ),
    (
        "squawk: blocking index",
        [],
        "CREATE INDEX ix_character_name ON character (name);",
        "squawk:require-concurrent-index-creation",
    ),
    (
        "squawk: column type change",
        [],
        "ALTER TABLE character ALTER COLUMN age TYPE bigint;",
        "squawk:changing-column-type",
    ),
    (
        "squawk: drop column",
        [],
        "ALTER TABLE character DROP COLUMN age;",
        "squawk:ban-drop-column",
    ),
    (
        "squawk: check constraint validated under lock",
        [],
        "ALTER TABLE character ADD CONSTRAINT ck_age CHECK (age > 0);",
        "squawk:constraint-missing-not-valid",
    ),
    (
        "squawk: rename column",
        [],
        "ALTER TABLE character RENAME COLUMN age TO years;",
        "squawk:renaming-column",
    ),
    ("squawk: drop table", [], "DROP TABLE character;", "squawk:ban-drop-table"),
]


@pytest.mark.parametrize(("label", "upgrade", "sql", "rule"), BAD, ids=[b[0] for b in BAD])
def test_bad_changes_are_refused_for_their_rule(
    label: str, upgrade: list[Any], sql: str, rule: str, preamble: str
) -> None:
    report = lint(upgrade, sql, DYNAMIC, preamble=preamble)
    assert not report.ok
    assert rule in report.rules, report.summary()
    finding = next(f for f in report.findings if f.rule == rule)
    assert finding.fix  # every finding says how to fix it
    if not rule.startswith("squawk:"):
        assert finding.fix == FIXES[rule]
        assert finding.source == "agentry"
    else:
        assert finding.source == "squawk"


def test_the_corpus_is_big_enough_and_covers_every_rule() -> None:
    assert len(BAD) >= 15
    assert {b[3] for b in BAD} >= set(FIXES)


def good_cases() -> list[tuple[str, list[Any], str]]:
    create = new_table_op()
    return [
        (
            "new table with its own index",
            [create, ops.CreateIndexOp("ix_hero_created_by", "hero", ["created_by"])],
            "BEGIN;\nCREATE TABLE hero (id uuid DEFAULT gen_random_uuid() NOT NULL, name "
            "varchar(200) NOT NULL, CONSTRAINT pk_hero PRIMARY KEY (id));\nCREATE INDEX "
            "ix_hero_created_by ON hero (created_by);\nCOMMIT;\n",
        ),
        (
            "nullable column",
            [ops.AddColumnOp(T, Column("mood", Text))],
            "ALTER TABLE character ADD COLUMN mood TEXT;",
        ),
        (
            "not null column with a default",
            [
                ops.AddColumnOp(
                    T, Column("level", Integer, nullable=False, server_default=text("1"))
                )
            ],
            "ALTER TABLE character ADD COLUMN level INTEGER DEFAULT 1 NOT NULL;",
        ),
        (
            "concurrent index on existing table",
            [ConcurrentIndexOp(ops.CreateIndexOp("ix_character_role", T, ["role"]))],
            "CREATE INDEX CONCURRENTLY ix_character_role ON character (role);\n",
        ),
    ]


@pytest.mark.parametrize("case", range(4))
def test_good_changes_are_accepted(case: int, preamble: str) -> None:
    label, upgrade, sql = good_cases()[case]
    report = lint(upgrade, sql, DYNAMIC, preamble=preamble)
    assert report.ok, f"{label}: {report.summary()}"
    assert report.findings == []


def test_squawk_sees_missing_timeouts_without_our_preamble() -> None:
    report = lint([], "ALTER TABLE character ADD COLUMN mood TEXT;", DYNAMIC)
    assert "squawk:require-lock-timeout" in report.rules


def test_widening_is_not_narrowing() -> None:
    assert is_widening(String(100), String(200))
    assert is_widening(String(100), Text())
    assert is_widening(Integer(), BigInteger())
    assert not is_widening(String(200), String(100))
    assert not is_widening(Text(), String(10))
    assert not is_widening(None, Text())


def test_squawk_comes_from_the_venv() -> None:
    assert squawk_binary().endswith("squawk")
