"""Entities live in every server process without a restart (PostgreSQL LISTEN/NOTIFY).

Each process keeps an :class:`EntityRegistry` built from ``entity_types``. An apply or
rollback commits ``NOTIFY agentry_entities``; every process's :class:`EntityListener`
hears it and refreshes: new entities get their routes' tables, models, tools and search
source; retired ones disappear from all of them.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import psycopg
from sqlalchemy import Connection, Engine

from core.errors import NotFoundError
from core.mechanic.entities import LiveEntity
from core.mechanic.registry import NOTIFY_CHANNEL, load_entities
from core.memory.sources import SearchableSource, register_source, unregister_source

log = logging.getLogger(__name__)


class EntityRegistry:
    """The active entities of this process, refreshed from the database."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entities: dict[str, LiveEntity] = {}
        self.loaded = False
        self.refreshes = 0

    def refresh(self, conn: Connection) -> None:
        """Rebuild from ``entity_types``: active entities in, retired ones out."""
        rows = load_entities(conn)
        with self._lock:
            fresh: dict[str, LiveEntity] = {}
            for name, reg in rows.items():
                if reg.status != "active":
                    continue
                old = self._entities.get(name)
                fresh[name] = (
                    old
                    if old is not None and old.defn == reg.defn
                    else LiveEntity(reg.defn, reg.revision)
                )
            for name in set(self._entities) - set(fresh):
                unregister_source(name)
            for ent in fresh.values():
                if ent.defn.searchable:
                    register_source(
                        SearchableSource(ent.name, ent.defn.table, tuple(ent.defn.searchable))
                    )
                else:
                    unregister_source(ent.name)
            self._entities = fresh
            self.loaded = True
            self.refreshes += 1

    def ensure_loaded(self, engine: Engine) -> None:
        if not self.loaded:
            with engine.connect() as conn:
                self.refresh(conn)

    def get(self, name: str) -> LiveEntity:
        with self._lock:
            ent = self._entities.get(name)
        if ent is None:
            raise NotFoundError(f"no entity type {name!r}")
        return ent

    def all(self) -> list[LiveEntity]:
        with self._lock:
            return sorted(self._entities.values(), key=lambda e: e.name)


class EntityListener:
    """A thread that LISTENs for entity changes and refreshes a registry."""

    def __init__(self, conninfo: str, engine: Engine, registry: EntityRegistry) -> None:
        self.conninfo = conninfo
        self.engine = engine
        self.registry = registry
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, name="entity-listener", daemon=True)

    def start(self, wait: float = 0.0) -> EntityListener:
        """Start listening; ``wait`` seconds at most for the first load (routes load lazily)."""
        self._thread.start()
        if wait > 0:
            self._ready.wait(wait)
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _refresh(self) -> None:
        with self.engine.connect() as conn:
            self.registry.refresh(conn)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
                    conn.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    # Anything committed while we were not listening is picked up here.
                    self._refresh()
                    self._ready.set()
                    while not self._stop.is_set():
                        # stop_after=1: refresh as soon as one arrives (the rest are batched).
                        got: list[Any] = list(conn.notifies(timeout=0.5, stop_after=1))
                        if got:
                            log.info("entities changed: %s", ", ".join(n.payload for n in got))
                            self._refresh()
            except Exception as exc:  # reconnect: the database restarted, or a refresh failed
                log.warning("entity listener: %s; reconnecting", exc)
                self._stop.wait(1.0)


# The registries of this process by database, so a change applied from a conversation's
# tool is live here before the tool returns (other processes hear the NOTIFY).
_tracked: list[tuple[Any, EntityRegistry]] = []
_tracked_lock = threading.Lock()


def refresh_live(db: Any) -> None:
    """Refresh every registry of this process that serves ``db``."""
    with _tracked_lock:
        mine = [reg for tracked_db, reg in _tracked if tracked_db is db]
    for reg in mine:
        with db.engine.connect() as conn:
            reg.refresh(conn)


def untrack(registry: EntityRegistry) -> None:
    with _tracked_lock:
        _tracked[:] = [t for t in _tracked if t[1] is not registry]


def start_live_entities(db: Any, registry: EntityRegistry, project_dir: Any) -> EntityListener:
    """At server start: import the dynamic models, load the registry, start listening."""
    from core.db.metadata import load_dynamic_models
    from core.mechanic.restore import restore_entity_types

    with _tracked_lock:
        _tracked.append((db, registry))

    try:
        load_dynamic_models(project_dir)
    except Exception as exc:  # a broken model file must not keep the server down
        log.error("loading dynamic models from %s failed: %s", project_dir, exc)
    try:
        # A fresh database of an existing deployment: tables made by its revisions,
        # registry empty until now.
        with db.engine.begin() as conn:
            restore_entity_types(conn, project_dir)
    except Exception as exc:
        log.error("restoring entity types from %s failed: %s", project_dir, exc)
    return EntityListener(db.conninfo, db.engine, registry).start()
