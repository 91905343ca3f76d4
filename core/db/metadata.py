"""The metadata Alembic compares against: core models plus dynamic ones."""

from __future__ import annotations

import importlib.util
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import MetaData

import core.models

if TYPE_CHECKING:
    from config import Settings

DYNAMIC_SCHEMA = Path("dynamic") / "schema"
# Tables of dynamic models currently on Base.metadata; reloading replaces them all.
_dynamic_tables: set[str] = set()
# One loader at a time per process: loading mutates the shared Base.metadata.
load_lock = threading.RLock()


def _import_file(module_name: str, path: Path) -> Any:
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    spec.loader.exec_module(module)
    return module


def load_dynamic_models(project_dir: Path | None = None) -> list[str]:
    """Import every model of ``<project>/dynamic/schema`` (written by the mechanic) by file path.

    Models come from the project directory (``AGENTRY_PROJECT_DIR``), not from the
    installed ``dynamic`` package, so a running server sees what the mechanic wrote.
    Tables of a previous load that no longer have a file are removed from the metadata.

    Args:
        project_dir: the project directory; default from the settings.

    Returns:
        The module names imported, in a stable order.
    """
    if project_dir is None:
        from config import get_settings

        project_dir = get_settings().project_dir
    folder = Path(project_dir) / DYNAMIC_SCHEMA
    metadata = core.models.Base.metadata
    with load_lock:
        for name in sorted(_dynamic_tables):
            if name in metadata.tables:
                metadata.remove(metadata.tables[name])
        _dynamic_tables.clear()
        names = (
            sorted(p.stem for p in folder.glob("*.py") if not p.stem.startswith("_"))
            if folder.is_dir()
            else []
        )
        for name in names:
            module = _import_file(f"dynamic.schema.{name}", folder / f"{name}.py")
            table = module.define(metadata)
            _dynamic_tables.add(table.name)
    return names


def dynamic_tables() -> set[str]:
    """Names of the dynamic tables on the metadata (after :func:`load_dynamic_models`)."""
    with load_lock:
        return set(_dynamic_tables)


def target_metadata(settings: Settings | None = None) -> MetaData:
    """All tables Agentry owns; anything else in the database is left alone."""
    load_dynamic_models(settings.project_dir if settings is not None else None)
    return core.models.Base.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: a reflected table with no model is not ours.

    That covers LangGraph's checkpoint tables, retired entities' tables (kept with
    their data) and anything users keep in the same database; autogenerate must never
    propose dropping them. Columns of a dynamic table without a model column are data
    kept by a rollback: never proposed for dropping either.
    """
    if type_ == "table" and reflected and compare_to is None:
        return False
    table = getattr(obj, "table", None)
    table_name = getattr(table, "name", None)
    return not (
        type_ == "column" and reflected and compare_to is None and table_name in _dynamic_tables
    )


def only_tables(names: set[str]) -> tuple[Any, Any]:
    """``include_name`` and ``include_object`` hooks comparing only the ``names`` tables.

    ``include_name`` keeps other tables from being reflected at all; ``include_object``
    keeps their models from looking new (and so from being created).

    Returns:
        ``(include_name, include_object)``.
    """

    def include_name(name: str | None, type_: str, parent_names: Any) -> bool:
        if type_ == "table":
            return name in names
        return True

    def include(obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any) -> bool:
        table = name if type_ == "table" else getattr(getattr(obj, "table", None), "name", None)
        if table is not None and table not in names:
            return False
        return include_object(obj, name, type_, reflected, compare_to)

    return include_name, include


def compare_type(
    ctx: Any, inspected: Any, metadata: Any, inspected_type: Any, metadata_type: Any
) -> bool | None:
    """Autogenerate type comparison that accepts a dimension-less ``vector`` model column.

    The core models declare ``vector`` without dimensions; the revision fixes them
    from AGENTRY_EMBEDDING_DIMS. ``None`` defers to Alembic's default comparison.
    """
    if isinstance(metadata_type, Vector) and metadata_type.dim is None:
        return False
    return None
