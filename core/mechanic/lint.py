"""Lint and policy: our rules on the revision's operations, squawk on its SQL.

A change that breaks the policy is refused; every finding names its rule and the fix.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from alembic.operations import ops
from sqlalchemy import BigInteger, Integer, Numeric, SmallInteger, String, Text
from sqlalchemy.types import TypeEngine

from core.errors import ConfigError

# Squawk rules we switch off, each for a reason:
SQUAWK_EXCLUDED = (
    "prefer-text-field",  # string(max_length) is a whitelisted type; widening varchar is cheap
    "prefer-bigint-over-int",  # integer is a whitelisted type, chosen by the spec author
    "prefer-bigint-over-smallint",  # same
    "prefer-identity",  # primary keys are uuid (gen_random_uuid())
    "prefer-robust-stmts",  # revisions run once, in order, under the schema-change lock
)


@dataclass(frozen=True)
class Finding:
    rule: str
    message: str
    fix: str
    source: str = "agentry"
    level: str = "error"


@dataclass
class LintReport:
    findings: list[Finding] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not any(f.level == "error" for f in self.findings)

    @property
    def rules(self) -> list[str]:
        return [f.rule for f in self.findings]

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "findings": [asdict(f) for f in self.findings]}

    def summary(self) -> str:
        return "; ".join(f"[{f.rule}] {f.message} (fix: {f.fix})" for f in self.findings)


FIXES = {
    "no-drop-table": "retire the entity instead (retire_entity hides it and keeps its data)",
    "no-drop-column": "keep the column and stop using it; data is never dropped",
    "ambiguous-rename": (
        "add the new field in one change, copy the data, then stop using the old one"
    ),
    "not-null-without-default": "make the field optional (required: false) or give it a default",
    "no-type-narrowing": "add a new field with the new type and copy the data into it",
    "no-set-not-null": (
        "keep the column nullable; validate with a CHECK constraint added NOT VALID first"
    ),
    "concurrent-index": (
        "create the index CONCURRENTLY inside op.get_context().autocommit_block()"
    ),
    "dynamic-tables-only": "the mechanic changes only its own (dynamic) tables",
    "no-raw-sql": "express the change as a spec; the mechanic runs no free-form SQL",
}


def _finding(rule: str, message: str) -> Finding:
    return Finding(rule=rule, message=message, fix=FIXES[rule])


def _int_rank(t: TypeEngine[Any]) -> int:
    # BigInteger and SmallInteger both subclass Integer: test them first.
    if isinstance(t, BigInteger):
        return 2
    return 0 if isinstance(t, SmallInteger) else 1


def is_widening(old: TypeEngine[Any] | None, new: TypeEngine[Any]) -> bool:
    """Whether changing ``old`` to ``new`` loses nothing (no narrowing, no reinterpretation)."""
    if old is None:
        return False
    if isinstance(old, String) and not isinstance(old, Text):
        if isinstance(new, Text):
            return True
        if isinstance(new, String):
            return new.length is None or (old.length is not None and new.length >= old.length)
        return False
    if isinstance(old, Text):
        return isinstance(new, Text)
    if isinstance(old, Integer):
        if isinstance(new, Integer):
            return _int_rank(new) >= _int_rank(old)
        return isinstance(new, Numeric) and getattr(new, "precision", None) is None
    return type(old) is type(new) and repr(old) == repr(new)


def lint_ops(upgrade_ops: list[Any], dynamic: set[str]) -> list[Finding]:
    """Our policy rules on a revision's upgrade operations.

    Args:
        upgrade_ops: the operations, flattened (no ModifyTableOps containers).
        dynamic: names of the dynamic tables (the only ones the mechanic may touch).

    Returns:
        The findings, in operation order.
    """
    from core.mechanic.generate import ConcurrentIndexOp

    found: list[Finding] = []
    new_tables = {o.table_name for o in upgrade_ops if isinstance(o, ops.CreateTableOp)}
    dropped: dict[str, list[str]] = {}
    added: dict[str, list[str]] = {}
    for op in upgrade_ops:
        inner = op.inner if isinstance(op, ConcurrentIndexOp) else op
        table = getattr(inner, "table_name", None)
        if isinstance(op, ops.ExecuteSQLOp):
            found.append(_finding("no-raw-sql", "the revision executes raw SQL"))
            continue
        if table is not None and table not in dynamic and table not in new_tables:
            found.append(_finding("dynamic-tables-only", f"the revision changes table {table!r}"))
        if isinstance(op, ops.DropTableOp):
            found.append(_finding("no-drop-table", f"drops table {table!r}"))
        elif isinstance(op, ops.DropColumnOp):
            dropped.setdefault(op.table_name, []).append(op.column_name)
            found.append(_finding("no-drop-column", f"drops column {table}.{op.column_name}"))
        elif isinstance(op, ops.AddColumnOp):
            added.setdefault(op.table_name, []).append(op.column.name)
            col = op.column
            if not col.nullable and col.server_default is None and table not in new_tables:
                found.append(
                    _finding(
                        "not-null-without-default",
                        f"adds NOT NULL column {table}.{col.name} without a default to an "
                        "existing table",
                    )
                )
        elif isinstance(op, ops.AlterColumnOp):
            if op.modify_type is not None and not is_widening(op.existing_type, op.modify_type):
                found.append(
                    _finding(
                        "no-type-narrowing",
                        f"changes {table}.{op.column_name} from {op.existing_type} to "
                        f"{op.modify_type}",
                    )
                )
            if op.modify_nullable is False and table not in new_tables:
                found.append(_finding("no-set-not-null", f"sets {table}.{op.column_name} NOT NULL"))
            if op.modify_name is not None:
                found.append(
                    _finding(
                        "ambiguous-rename", f"renames {table}.{op.column_name} to {op.modify_name}"
                    )
                )
        elif isinstance(op, ops.CreateIndexOp) and table not in new_tables:
            found.append(
                _finding(
                    "concurrent-index",
                    f"creates index {op.index_name} on existing table {table!r} "
                    "without CONCURRENTLY",
                )
            )
    for table, cols in dropped.items():
        if added.get(table):
            found.append(
                _finding(
                    "ambiguous-rename",
                    f"drops {', '.join(cols)} and adds {', '.join(added[table])} on {table!r}: "
                    "a rename turned into drop + add loses the data",
                )
            )
    return found


def squawk_binary() -> str:
    """The squawk executable (PyPI ``squawk-cli`` installs it beside the interpreter)."""
    for candidate in (
        Path(sys.executable).parent / "squawk",
        Path(sys.prefix) / "bin" / "squawk",
    ):
        if candidate.exists():
            return str(candidate)
    found = shutil.which("squawk")
    if found:
        return found
    raise ConfigError("squawk is not installed: pip install squawk-cli")


def run_squawk(sql: str, *, pg_version: str = "16") -> list[Finding]:
    """Squawk's findings on ``sql`` (rules in :data:`SQUAWK_EXCLUDED` switched off)."""
    if not sql.strip():
        return []
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as handle:
        handle.write(sql)
        path = Path(handle.name)
    try:
        proc = subprocess.run(
            [
                squawk_binary(),
                "--reporter",
                "json",
                "--pg-version",
                pg_version,
                "--exclude",
                ",".join(SQUAWK_EXCLUDED),
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        path.unlink(missing_ok=True)
    try:
        items = json.loads(proc.stdout or "[]")
    except json.JSONDecodeError:
        raise ConfigError(f"squawk failed: {proc.stderr.strip() or proc.stdout[:200]}") from None
    return [
        Finding(
            rule=f"squawk:{item['rule_name']}",
            message=str(item.get("message", "")),
            fix=str(item.get("help") or "see https://squawkhq.com/docs/" + item["rule_name"]),
            source="squawk",
        )
        for item in items
    ]


def lint(upgrade_ops: list[Any], sql: str, dynamic: set[str], *, preamble: str = "") -> LintReport:
    """Our rules plus squawk on one revision.

    Args:
        upgrade_ops: the revision's flattened upgrade operations.
        sql: its offline SQL.
        dynamic: the dynamic tables (the only ones it may touch).
        preamble: statements apply runs first (``SET lock_timeout`` ...), shown to squawk.

    Returns:
        The report; ``ok`` is False when anything was found.
    """
    findings = lint_ops(upgrade_ops, dynamic)
    findings += run_squawk(preamble + sql)
    return LintReport(findings)
