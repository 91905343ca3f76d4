"""Generate the Alembic revision of a change by autogenerate, restricted to dynamic tables.

Planning happens in a scratch copy of the deployment repository (``migrations/versions``
and ``dynamic/schema``), so the real working tree is untouched until apply. The core
revisions are read from the package. The deployment's revisions are one branch of the
same history: the first branches off the core head of its day (labelled ``deployment``),
each later one follows the previous. Core revisions of a later Agentry continue the core
line beside it (two heads, both upgraded); undoing a deployment revision steps down its
branch only (:func:`core.db.migrate.undo_target`). Indexes on
existing tables are rewritten to ``CREATE INDEX CONCURRENTLY`` inside an autocommit
block: building them never blocks writers.
"""

from __future__ import annotations

import argparse
import io
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from alembic import command
from alembic.autogenerate import renderers
from alembic.operations import ops
from sqlalchemy import Connection

from config import Settings
from core.db.metadata import dynamic_tables, load_dynamic_models, load_lock
from core.db.migrate import (
    DEPLOYMENT_BRANCH,
    DEPLOYMENT_VERSIONS,
    alembic_config,
    deployment_head,
    parent_of_next,
)
from core.errors import MechanicError
from core.mechanic.scratch import SCHEMA_PARTS, scratch_copy

VERSIONS = DEPLOYMENT_VERSIONS
TIMEOUT_PREAMBLE = "SET lock_timeout = '{lock}ms';\nSET statement_timeout = '{stmt}ms';\n"


class ConcurrentIndexOp(ops.MigrateOperation):
    """Create or drop an index concurrently, outside the migration's transaction."""

    def __init__(self, inner: ops.CreateIndexOp | ops.DropIndexOp) -> None:
        self.inner = inner
        inner.kw["postgresql_concurrently"] = True

    def reverse(self) -> ConcurrentIndexOp:
        return ConcurrentIndexOp(self.inner.reverse())


@renderers.dispatch_for(ConcurrentIndexOp)
def _render_concurrent(autogen_context: Any, op: ConcurrentIndexOp) -> str:
    inner = renderers.dispatch(op.inner)(autogen_context, op.inner)
    body = "\n".join("    " + line for line in inner.splitlines())
    return "with op.get_context().autocommit_block():\n" + body


@dataclass
class GeneratedRevision:
    revision: str
    down_revision: str | None
    message: str
    path: Path
    text: str
    upgrade_ops: list[Any] = field(default_factory=list)
    new_tables: set[str] = field(default_factory=set)


@contextmanager
def scratch_project(settings: Settings) -> Iterator[Settings]:
    """A throwaway copy of the deployment's revisions and dynamic models.

    Yields:
        Settings whose ``project_dir`` is the copy.
    """
    with scratch_copy(Path(settings.project_dir), SCHEMA_PARTS, prefix="agentry-plan-") as work:
        yield settings.model_copy(update={"project_dir": work})


def _walk(op_container: Any) -> Iterator[Any]:
    for op in op_container.ops:
        if isinstance(op, ops.ModifyTableOps):
            yield from op.ops
        else:
            yield op


def _concurrent_on_existing(container: Any, new_tables: set[str]) -> None:
    """Rewrite index ops on tables that already exist into concurrent ones."""
    for holder in [container, *[o for o in container.ops if isinstance(o, ops.ModifyTableOps)]]:
        holder.ops = [
            ConcurrentIndexOp(o)
            if isinstance(o, ops.CreateIndexOp | ops.DropIndexOp) and o.table_name not in new_tables
            else o
            for o in holder.ops
        ]


def new_revision_id() -> str:
    """A fresh revision id for a mechanic revision (``m`` + 12 hex digits)."""
    return "m" + uuid.uuid4().hex[:12]


def generate_revision(conn: Connection, scratch: Settings, message: str) -> GeneratedRevision:
    """Autogenerate a revision in the scratch project, comparing only dynamic tables.

    Args:
        conn: a connection to the live database (at head).
        scratch: settings pointing at the scratch project (model already rendered there).
        message: the revision message.

    Returns:
        The written revision, its text and operations.
    """
    rev_id = new_revision_id()
    captured: dict[str, Any] = {}

    def directives(context: Any, revision: Any, directives: list[Any]) -> None:
        script = directives[0]
        upgrade, downgrade = script.upgrade_ops, script.downgrade_ops
        new_tables = {o.table_name for o in upgrade.ops if isinstance(o, ops.CreateTableOp)}
        _concurrent_on_existing(upgrade, new_tables)
        _concurrent_on_existing(downgrade, new_tables)
        captured["ops"] = list(_walk(upgrade))
        captured["new_tables"] = new_tables

    with load_lock:
        load_dynamic_models(scratch.project_dir)
        cfg = alembic_config(scratch, conn)
        cfg.cmd_opts = argparse.Namespace(quiet=True)  # no "Generating ..." on stdout
        cfg.attributes["only_tables"] = dynamic_tables()
        first = deployment_head(scratch) is None
        down = parent_of_next(scratch)
        try:
            script = command.revision(
                cfg,
                message=message,
                autogenerate=True,
                rev_id=rev_id,
                head=down or "base",
                branch_label=DEPLOYMENT_BRANCH if first else None,
                version_path=str(Path(scratch.project_dir) / VERSIONS),
                process_revision_directives=directives,
            )
        except Exception as exc:
            raise MechanicError(f"autogenerate failed: {exc}") from exc
    assert script is not None and not isinstance(script, list)
    path = Path(script.path)
    return GeneratedRevision(
        revision=rev_id,
        down_revision=down,
        message=message,
        path=path,
        text=path.read_text(),
        upgrade_ops=captured.get("ops", []),
        new_tables=captured.get("new_tables", set()),
    )


def offline_sql(scratch: Settings, rev: GeneratedRevision) -> str:
    """The revision's upgrade as SQL (Alembic offline mode), as squawk and the admin read it."""
    buffer = io.StringIO()
    cfg = alembic_config(scratch)
    cfg.output_buffer = buffer
    start = rev.down_revision or "base"
    with load_lock:
        command.upgrade(cfg, f"{start}:{rev.revision}", sql=True)
    return _strip_bookkeeping(buffer.getvalue())


def _strip_bookkeeping(sql: str) -> str:
    """Drop comments and Alembic's alembic_version bookkeeping: the SQL of the change itself."""
    lines = [line for line in sql.splitlines() if not line.startswith("--")]
    statements = [s.strip() for s in "\n".join(lines).split(";\n")]
    kept: list[str] = []
    for stmt in (s for s in statements if s and "alembic_version" not in s):
        if stmt.rstrip(";") == "COMMIT" and kept and kept[-1].rstrip(";") == "BEGIN":
            kept.pop()  # an empty transaction around an autocommit block says nothing
        else:
            kept.append(stmt)
    return "".join(f"{s.rstrip(';')};\n\n" for s in kept)
