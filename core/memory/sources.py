"""Searchable sources: tables whose text fields feed the search index.

Messages are one source; every entity type the mechanic creates declares itself
here with its searchable fields, and the indexer (backlog, re-embedding) and
search treat all sources alike. This is the whole plug-in surface:
:class:`SearchableSource` and :func:`register_source` / :func:`unregister_source`.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class SearchableSource:
    """A table whose rows are searchable.

    Args:
        entity_type: the name hits carry (``message``, ``character``, ...).
        table: the table holding the rows (``id`` uuid primary key).
        fields: text columns to index, each indexed as its own document field.
        user_column: column holding the owner's user id (search scoping); None: admin-only.
        deleted_column: boolean soft-delete column; rows with it true are never indexed.
    """

    entity_type: str
    table: str
    fields: tuple[str, ...]
    user_column: str | None = "created_by"
    deleted_column: str | None = "is_deleted"


MESSAGES = SearchableSource(
    entity_type="message",
    table="messages",
    fields=("content",),
    user_column="user_id",
    deleted_column=None,
)

_lock = threading.Lock()
_sources: dict[str, SearchableSource] = {MESSAGES.entity_type: MESSAGES}


def register_source(source: SearchableSource) -> None:
    """Declare (or re-declare) a searchable source; safe to call repeatedly."""
    with _lock:
        _sources[source.entity_type] = source


def unregister_source(entity_type: str) -> None:
    """Stop treating an entity type as searchable (retired entities)."""
    with _lock:
        if entity_type != MESSAGES.entity_type:
            _sources.pop(entity_type, None)


def sources() -> list[SearchableSource]:
    """Every registered source, messages first."""
    with _lock:
        return list(_sources.values())


def source_for(entity_type: str) -> SearchableSource | None:
    with _lock:
        return _sources.get(entity_type)
