"""Entity types come back with the repository.

The mechanic's model files (``dynamic/schema/<entity>.py``) and revisions travel with
the deployment repository; the ``entity_types`` registry lives in the database. On a
fresh database the revisions create the tables, but the registry is empty, so the
entities would answer 404. Each model file carries the entity's full definition
(``DEFINITION``, rendered from the same spec), which is all the registry needs.
"""

from __future__ import annotations

import ast
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, text

from core.db.metadata import DYNAMIC_SCHEMA
from core.db.migrate import current_revision
from core.mechanic.registry import load_entities, notify, save_entity
from core.mechanic.spec import EntityDef

log = logging.getLogger(__name__)

TABLE_EXISTS_SQL = text("SELECT to_regclass(:name) IS NOT NULL")


def read_definition(path: Path) -> EntityDef | None:
    """The ``DEFINITION`` a model file carries, read without importing the file."""
    try:
        tree = ast.parse(path.read_text(), filename=str(path))
    except (OSError, SyntaxError) as exc:
        log.error("cannot read entity model %s: %s", path, exc)
        return None
    for node in tree.body:
        if (
            isinstance(node, ast.Assign)
            and len(node.targets) == 1
            and isinstance(node.targets[0], ast.Name)
            and node.targets[0].id == "DEFINITION"
        ):
            try:
                data: Any = ast.literal_eval(node.value)
                return EntityDef.model_validate(data)
            except ValueError as exc:  # pydantic's ValidationError is a ValueError
                log.error("entity model %s has an unusable DEFINITION: %s", path, exc)
                return None
    return None


def restore_entity_types(conn: Connection, project_dir: Path) -> list[str]:
    """Register the entities whose model file is in the project and whose table exists,
    but which ``entity_types`` does not know (in the caller's transaction).

    Entities the registry knows, in any status, are left as they are: a retired entity
    stays retired. Returns the names registered.
    """
    folder = Path(project_dir) / DYNAMIC_SCHEMA
    if not folder.is_dir():
        return []
    known = load_entities(conn)
    revision = current_revision(conn)
    restored = []
    for path in sorted(p for p in folder.glob("*.py") if not p.stem.startswith("_")):
        defn = read_definition(path)
        if defn is None or defn.name in known:
            continue
        if not conn.execute(TABLE_EXISTS_SQL, {"name": defn.table}).scalar_one():
            continue  # its revision is not applied here (yet)
        save_entity(conn, defn, "active", revision)
        restored.append(defn.name)
    if restored:
        log.info("entity types restored from %s: %s", folder, ", ".join(restored))
        for name in restored:
            notify(conn, name)
    return restored
