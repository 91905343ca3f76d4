"""``agentry index``: bring the index up to date with every searchable source.

For each registered source (core/memory/sources.py): index the rows that have no
index rows yet (skipping deleted ones), drop index rows whose source row is gone
or soft-deleted, bring the keyword postings up to date (core/memory/keyword_index.py),
then embed everything pending — in batches, one transaction per batch, reporting
progress.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from sqlalchemy import Connection, Engine, text

from config import Settings
from core.memory.drain import drain_pending
from core.memory.embeddings import Embedder
from core.memory.indexer import index_document
from core.memory.keyword_index import maintain
from core.memory.sources import SearchableSource, sources

Progress = Callable[[str, int, int], None]
"""progress(phase, done, total) — called after every batch."""


@dataclass
class BacklogReport:
    indexed: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    embedded: int = 0


def _live(source: SearchableSource) -> str:
    parts = ["TRUE"]
    if source.deleted_column:
        parts.append(f"NOT COALESCE(t.{source.deleted_column}, FALSE)")
    if source.deleted_predicate:
        parts.append(f"NOT ({source.deleted_predicate})")
    return " AND ".join(parts)


def _missing_sql(source: SearchableSource, *, count: bool, first: bool = True) -> str:
    cols = ", ".join(f"t.{f}" for f in source.fields)
    user = f"t.{source.user_column}" if source.user_column else "NULL"
    created = f"t.{source.created_column}" if source.created_column else "NULL"
    meta = "".join(f", t.{c} AS meta_{c}" for c in source.metadata_columns)
    where = (
        f"{_live(source)} AND NOT EXISTS (SELECT 1 FROM search_index s "
        "WHERE s.entity_type = :entity_type AND s.entity_id = t.id)"
    )
    if count:
        return f"SELECT count(*) FROM {source.table} t WHERE {where}"
    return (
        f"SELECT t.id, {cols}, {user} AS owner, {created} AS created{meta} "
        f"FROM {source.table} t WHERE {where}{'' if first else ' AND t.id > :after'} "
        "ORDER BY t.id LIMIT :limit"
    )


def _purge_sql(source: SearchableSource) -> str:
    return (
        "DELETE FROM search_index s WHERE s.entity_type = :entity_type AND NOT EXISTS "
        f"(SELECT 1 FROM {source.table} t WHERE t.id = s.entity_id AND {_live(source)})"
    )


def index_source(
    conn: Connection, source: SearchableSource, settings: Settings, *, after: object, limit: int
) -> tuple[int, object]:
    """Index one batch of a source's unindexed rows (no vectors yet).

    Returns:
        (rows indexed, last id seen) — (0, after) when the source is done.
    """
    rows = conn.execute(
        text(_missing_sql(source, count=False, first=after is None)),
        {"entity_type": source.entity_type, "after": after, "limit": limit},
    ).mappings()
    last, n = after, 0
    for row in rows:
        body = "\n".join(str(row[f]) for f in source.fields if row[f] is not None)
        meta = {c: _jsonable(row[f"meta_{c}"]) for c in source.metadata_columns}
        index_document(
            conn,
            entity_type=source.entity_type,
            entity_id=row["id"],
            text=body,
            user_id=row["owner"],
            metadata=meta,
            created_at=row["created"],
            settings=settings,
        )
        last, n = row["id"], n + 1
    return n, last


def sync_row(
    conn: Connection, entity_type: str, entity_id: object, *, settings: Settings | None = None
) -> int:
    """Bring one row of a registered source up to date in the index (after a write).

    The mechanic's CRUD calls this after create, update and (soft) delete: the row is
    read by its source declaration and indexed, or removed when deleted or gone.

    Returns:
        Index rows the document now has (0 when removed).

    Raises:
        KeyError: ``entity_type`` is not a registered source.
    """
    import uuid

    from config import get_settings
    from core.memory.indexer import remove_document
    from core.memory.sources import source_for

    source = source_for(entity_type)
    if source is None:
        raise KeyError(f"{entity_type!r} is not a searchable source")
    cols = ", ".join(f"t.{f}" for f in source.fields)
    user = f"t.{source.user_column}" if source.user_column else "NULL"
    created = f"t.{source.created_column}" if source.created_column else "NULL"
    meta = "".join(f", t.{c} AS meta_{c}" for c in source.metadata_columns)
    row = (
        conn.execute(
            text(
                f"SELECT t.id, {cols}, {user} AS owner, {created} AS created{meta} "
                f"FROM {source.table} t WHERE t.id = :id AND {_live(source)}"
            ),
            {"id": entity_id},
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        assert isinstance(entity_id, uuid.UUID)
        remove_document(conn, entity_type=entity_type, entity_id=entity_id)
        return 0
    return index_document(
        conn,
        entity_type=entity_type,
        entity_id=row["id"],
        text="\n".join(str(row[f]) for f in source.fields if row[f] is not None),
        user_id=row["owner"],
        metadata={c: _jsonable(row[f"meta_{c}"]) for c in source.metadata_columns},
        created_at=row["created"],
        settings=settings or get_settings(),
    )


TABLE_EXISTS_SQL = text("SELECT to_regclass(:name)")


def _jsonable(value: object) -> object:
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def run_backlog(
    engine: Engine,
    embedder: Embedder,
    settings: Settings,
    *,
    batch_size: int = 256,
    progress: Progress | None = None,
) -> BacklogReport:
    """Index every source's backlog, purge deleted content, embed everything pending.

    Args:
        engine: the database; each batch is its own transaction.
        embedder: the index's active model.
        settings: chunking settings.
        batch_size: rows per transaction.
        progress: optional progress callback.

    Returns:
        What was done, per source.
    """
    report = BacklogReport()
    for source in sources():
        with engine.begin() as conn:
            # Sources are registered per process; a table another database of this
            # process declared (tests, benchmarks) may not exist in this one.
            if conn.execute(TABLE_EXISTS_SQL, {"name": source.table}).scalar() is None:
                continue
            removed = conn.execute(
                text(_purge_sql(source)), {"entity_type": source.entity_type}
            ).rowcount
            report.removed[source.entity_type] = removed
            total = int(
                conn.execute(
                    text(_missing_sql(source, count=True)), {"entity_type": source.entity_type}
                ).scalar_one()
            )
        done, after = 0, None
        while total:
            with engine.begin() as conn:
                n, after = index_source(conn, source, settings, after=after, limit=batch_size)
            if n == 0:
                break
            done += n
            if progress:
                progress(f"index {source.entity_type}", done, total)
        report.indexed[source.entity_type] = done
    # Postings for rows that predate them (or all, after the average length drifted).
    maintain(engine, settings, progress=progress)
    report.embedded = drain_pending(
        engine,
        embedder,
        batch_size=batch_size,
        threads=settings.embed_threads,
        progress=(lambda done, total: progress("embed", done, total)) if progress else None,
    )
    return report
