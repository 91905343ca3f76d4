"""The metadata Alembic compares against: core models plus dynamic ones."""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any

from pgvector.sqlalchemy import Vector
from sqlalchemy import MetaData

import core.models
import dynamic.schema


def load_dynamic_models() -> list[str]:
    """Import every module of ``dynamic/schema`` (written by the mechanic).

    Returns:
        The module names imported, in a stable order.
    """
    names = sorted(
        info.name for info in pkgutil.iter_modules(dynamic.schema.__path__) if not info.ispkg
    )
    for name in names:
        importlib.import_module(f"dynamic.schema.{name}")
    return names


def target_metadata() -> MetaData:
    """All tables Agentry owns; anything else in the database is left alone."""
    load_dynamic_models()
    return core.models.Base.metadata


def include_object(
    obj: Any, name: str | None, type_: str, reflected: bool, compare_to: Any
) -> bool:
    """Autogenerate filter: a reflected table with no model is not ours.

    That covers LangGraph's checkpoint tables and anything users keep in the same
    database; autogenerate must never propose dropping them.
    """
    return not (type_ == "table" and reflected and compare_to is None)


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
