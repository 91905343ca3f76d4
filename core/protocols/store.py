"""The Agent Protocol store over ``store_items`` and the search index.

Items are scoped to their user. Search with a ``query`` goes through
:func:`text_search`: hybrid (semantic + keyword) search of vector memory when it is
installed, PostgreSQL full-text search otherwise.
"""

from __future__ import annotations

import importlib
import json
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Row, text

from core.errors import NotFoundError, ValidationFailed
from core.memory import search as memory_search
from core.memory.indexer import index_document, remove_document

ENTITY_TYPE = "store_item"
ITEM_COLUMNS = "id, namespace, key, value, created_at, updated_at"

UPSERT_SQL = text(
    "INSERT INTO store_items (user_id, namespace, key, value)"
    " VALUES (:uid, CAST(:ns AS text[]), :key, CAST(:value AS jsonb))"
    " ON CONFLICT (user_id, namespace, key)"
    " DO UPDATE SET value = EXCLUDED.value, updated_at = now()"
    f" RETURNING {ITEM_COLUMNS}"
)
GET_SQL = text(
    f"SELECT {ITEM_COLUMNS} FROM store_items"
    " WHERE user_id = :uid AND namespace = CAST(:ns AS text[]) AND key = :key"
)
DELETE_SQL = text(
    "DELETE FROM store_items"
    " WHERE user_id = :uid AND namespace = CAST(:ns AS text[]) AND key = :key RETURNING id"
)
# Items under a namespace prefix (an empty prefix matches everything), optionally
# only those whose value contains :filter, optionally only the ids :ids.
SEARCH_SQL = text(
    f"SELECT {ITEM_COLUMNS} FROM store_items"
    " WHERE user_id = :uid"
    " AND namespace[1 : cardinality(CAST(:prefix AS text[]))] = CAST(:prefix AS text[])"
    " AND value @> CAST(:filter AS jsonb)"
    " AND (CAST(:ids AS uuid[]) IS NULL OR id = ANY(CAST(:ids AS uuid[])))"
    " ORDER BY updated_at DESC, id LIMIT :limit OFFSET :offset"
)
NAMESPACES_SQL = text(
    "SELECT DISTINCT ns FROM ("
    " SELECT CASE WHEN CAST(:depth AS integer) IS NULL THEN namespace"
    " ELSE namespace[1 : CAST(:depth AS integer)] END AS ns"
    " FROM store_items WHERE user_id = :uid"
    " AND namespace[1 : cardinality(CAST(:prefix AS text[]))] = CAST(:prefix AS text[])"
    ") picked"
    " WHERE ns[cardinality(ns) - cardinality(CAST(:suffix AS text[])) + 1 :]"
    " = CAST(:suffix AS text[])"
    " ORDER BY ns LIMIT :limit OFFSET :offset"
)

SearchFn = Callable[..., list[memory_search.Hit]]


def text_search() -> tuple[str, SearchFn]:
    """The search the store uses for a ``query``.

    ``("hybrid", fn)`` when vector memory is installed (``core.memory.search.search``:
    vectors and keywords fused, so an item is found by meaning once the embedding worker
    has embedded it, and by its words at once); ``("keyword", keyword_search)`` otherwise.
    """
    module = importlib.import_module("core.memory.search")
    if callable(getattr(module, "search", None)) and hasattr(module, "vector_search"):
        return "hybrid", _hybrid
    return "keyword", memory_search.keyword_search


def _hybrid(
    conn: Connection,
    query: str,
    *,
    user_id: uuid.UUID | None,
    k: int,
    entity_type: str | None = None,
) -> list[memory_search.Hit]:
    module = importlib.import_module("core.memory.search")
    limit = min(k, int(getattr(module, "MAX_K", 100)))
    hits: list[memory_search.Hit] = module.search(
        conn, query, user_id=user_id, k=limit, entity_type=entity_type, mode="hybrid"
    )
    return hits


def item_json(
    row: Row[Any], score: float | None = None, with_score: bool = False
) -> dict[str, Any]:
    item = {
        "namespace": list(row.namespace),
        "key": row.key,
        "value": row.value,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
    }
    if with_score:
        item["score"] = score
    return item


def check_namespace(namespace: Sequence[str], what: str = "namespace") -> list[str]:
    """Namespace labels are non-empty strings without dots (the SDK's GET encoding)."""
    labels = list(namespace)
    for label in labels:
        if not isinstance(label, str) or not label or "." in label:
            raise ValidationFailed(f"{what}: labels must be non-empty strings without '.'")
    return labels


def _searchable_text(value: dict[str, Any], index: list[str] | None) -> str:
    """The text indexed for a value: every string in it, or only the named fields."""
    if index is not None:
        picked = [_field(value, path) for path in index]
        return "\n".join(_strings(p) for p in picked if p is not None)
    return _strings(value)


def _field(value: Any, path: str) -> Any:
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            return None
        value = value[part]
    return value


def _strings(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, dict):
        return "\n".join(_strings(v) for v in value.values())
    if isinstance(value, list):
        return "\n".join(_strings(v) for v in value)
    return "" if value is None else json.dumps(value)


def put_item(
    conn: Connection,
    user_id: uuid.UUID,
    namespace: Sequence[str],
    key: str,
    value: dict[str, Any],
    index: list[str] | bool | None = None,
) -> dict[str, Any]:
    """Insert or replace an item and (re)index its text.

    Args:
        conn: a connection in the caller's transaction.
        user_id: the owner.
        namespace: the item's namespace.
        key: its key.
        value: a JSON object.
        index: False: not searchable by query; a list of (dotted) fields: index those;
            None or True: index every string in the value.
    """
    labels = check_namespace(namespace)
    if not key:
        raise ValidationFailed("key: must not be empty")
    row = conn.execute(
        UPSERT_SQL, {"uid": user_id, "ns": labels, "key": key, "value": json.dumps(value)}
    ).one()
    if index is False:
        remove_document(conn, entity_type=ENTITY_TYPE, entity_id=row.id)
    else:
        fields = index if isinstance(index, list) else None
        index_document(
            conn,
            entity_type=ENTITY_TYPE,
            entity_id=row.id,
            text=_searchable_text(value, fields),
            user_id=user_id,
            metadata={"namespace": labels, "key": key},
        )
    return item_json(row)


def get_item(
    conn: Connection, user_id: uuid.UUID, namespace: Sequence[str], key: str
) -> dict[str, Any]:
    """The item, or NotFoundError."""
    row = conn.execute(
        GET_SQL, {"uid": user_id, "ns": check_namespace(namespace), "key": key}
    ).first()
    if row is None:
        raise NotFoundError(f"no store item {'.'.join(namespace)}/{key}")
    return item_json(row)


def delete_item(conn: Connection, user_id: uuid.UUID, namespace: Sequence[str], key: str) -> None:
    """Delete the item (and its index rows); deleting a missing item is not an error."""
    row = conn.execute(
        DELETE_SQL, {"uid": user_id, "ns": check_namespace(namespace), "key": key}
    ).first()
    if row is not None:
        remove_document(conn, entity_type=ENTITY_TYPE, entity_id=row.id)


def search_items(
    conn: Connection,
    user_id: uuid.UUID,
    prefix: Sequence[str],
    *,
    filter: dict[str, Any] | None = None,
    query: str | None = None,
    limit: int = 10,
    offset: int = 0,
) -> list[dict[str, Any]]:
    """Items under ``prefix``; with ``query``, ranked by the index (see :func:`text_search`).

    Args:
        filter: exact matches on value fields (JSON containment).
    """
    for name, wanted in (filter or {}).items():
        if isinstance(wanted, dict) and any(str(k).startswith("$") for k in wanted):
            raise ValidationFailed(f"filter.{name}: operators are not supported, only equality")
    params: dict[str, Any] = {
        "uid": user_id,
        "prefix": check_namespace(prefix, "namespace_prefix"),
        "filter": json.dumps(filter or {}),
        "ids": None,
        "limit": limit,
        "offset": offset,
    }
    if not query:
        return [item_json(r, with_score=True) for r in conn.execute(SEARCH_SQL, params)]
    _, search = text_search()
    # Rank by the index, then keep the items under the prefix that pass the filter.
    hits = search(
        conn, query, user_id=user_id, k=max(200, (offset + limit) * 10), entity_type=ENTITY_TYPE
    )
    scores: dict[uuid.UUID, float] = {}
    for hit in hits:
        scores.setdefault(hit.entity_id, hit.score)
    if not scores:
        return []
    rows = conn.execute(
        SEARCH_SQL, params | {"ids": list(scores), "limit": len(scores), "offset": 0}
    ).all()
    ranked = sorted(rows, key=lambda r: -scores[r.id])[offset : offset + limit]
    return [item_json(r, scores[r.id], with_score=True) for r in ranked]


def list_namespaces(
    conn: Connection,
    user_id: uuid.UUID,
    *,
    prefix: Sequence[str] = (),
    suffix: Sequence[str] = (),
    max_depth: int | None = None,
    limit: int = 100,
    offset: int = 0,
) -> list[list[str]]:
    """The distinct namespaces (cut at ``max_depth``) matching prefix and suffix."""
    if max_depth is not None and max_depth < 1:
        raise ValidationFailed("max_depth: must be at least 1")
    rows = conn.execute(
        NAMESPACES_SQL,
        {
            "uid": user_id,
            "prefix": check_namespace(prefix, "prefix"),
            "suffix": check_namespace(suffix, "suffix"),
            "depth": max_depth,
            "limit": limit,
            "offset": offset,
        },
    )
    return [list(r.ns) for r in rows]
