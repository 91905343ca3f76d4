"""Searchable sources: tables whose text fields feed the search index.

Messages are one source; every entity type the mechanic creates declares itself
here with its searchable fields, and the indexer (backlog, re-embedding) and
search treat all sources alike. This is the whole plug-in surface:
:class:`SearchableSource` and :func:`register_source` / :func:`unregister_source`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass

_IDENT = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


@dataclass(frozen=True)
class SearchableSource:
    """A table whose rows are searchable.

    Args:
        entity_type: the name hits carry (``message``, ``character``, ...).
        table: the table holding the rows (``id`` uuid primary key).
        fields: text columns to index, each indexed as its own document field.
        user_column: column holding the owner's user id (search scoping); None: admin-only.
        deleted_column: boolean soft-delete column; rows with it true are never indexed
            and leave the index on the next ``agentry index``.
        metadata_columns: columns copied into the index row's metadata (filterable).
        created_column: timestamp column used for since/until filters.
        deleted_predicate: extra SQL on alias ``t`` that is true for rows to treat as
            deleted (messages of a soft-deleted conversation); trusted code only.

    The fields of a row are joined (one per line) into one document.
    """

    entity_type: str
    table: str
    fields: tuple[str, ...]
    user_column: str | None = "created_by"
    deleted_column: str | None = "is_deleted"
    metadata_columns: tuple[str, ...] = ()
    created_column: str | None = "created_at"
    deleted_predicate: str | None = None

    def __post_init__(self) -> None:
        # These names are spliced into SQL: only plain identifiers are accepted.
        names = [self.table, *self.fields, *self.metadata_columns]
        names += [n for n in (self.user_column, self.deleted_column, self.created_column) if n]
        bad = [n for n in names if not _IDENT.match(n)]
        if bad or not self.fields:
            raise ValueError(f"searchable source {self.entity_type!r}: bad identifiers {bad}")


MESSAGES = SearchableSource(
    entity_type="message",
    table="messages",
    fields=("content",),
    user_column="user_id",
    deleted_column=None,
    metadata_columns=("conversation_id", "role"),
    deleted_predicate=(
        "EXISTS (SELECT 1 FROM conversations c "
        "WHERE c.id = t.conversation_id AND c.deleted_at IS NOT NULL)"
    ),
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
