"""Writing to the search index: the one interface every searchable thing uses.

Messages (runtime) and mechanic-made entities call :func:`index_document` when
they are written and :func:`remove_document` when they are deleted, inside the
caller's transaction. How text is chunked and embedded is this module's business.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Connection, delete
from sqlalchemy.dialects.postgresql import insert

from core.models import SearchIndex


def index_document(
    conn: Connection,
    *,
    entity_type: str,
    entity_id: uuid.UUID,
    text: str,
    user_id: uuid.UUID | None,
    metadata: dict[str, Any] | None = None,
) -> int:
    """Index (or re-index) one document; re-indexing replaces, never duplicates.

    Args:
        conn: a connection in the caller's transaction.
        entity_type: ``message`` or an entity type name.
        entity_id: the row's id.
        text: the searchable text.
        user_id: the owner; searches are scoped to it (None: visible to admins only).
        metadata: filterable attributes (conversation_id, role, field, ...).

    Returns:
        The number of index rows written.
    """
    remove_document(conn, entity_type=entity_type, entity_id=entity_id)
    if not text.strip():
        return 0
    conn.execute(
        insert(SearchIndex).values(
            entity_type=entity_type,
            entity_id=entity_id,
            chunk=0,
            content=text,
            user_id=user_id,
            metadata_=metadata or {},
        )
    )
    return 1


def remove_document(conn: Connection, *, entity_type: str, entity_id: uuid.UUID) -> None:
    """Remove a document from the index (deleted or soft-deleted content)."""
    conn.execute(
        delete(SearchIndex).where(
            SearchIndex.entity_type == entity_type, SearchIndex.entity_id == entity_id
        )
    )
