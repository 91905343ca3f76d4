"""Which models the *server* can use, seen from any shell (``agentry models list``).

A model is usable when it is active and has credentials in the environment of the
process that calls it. The CLI's shell is usually not that process, so each server
records at start the names of the key variables it has set (never their values) and
its default model's endpoint; the CLI judges from that record.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, select, text
from sqlalchemy.dialects.postgresql import insert

from config import Settings
from core.models import ServerConfig

DEFAULT_MODEL_NAME = "default"
DEFAULT_KEY_ENV = "AGENTRY_LLM_API_KEY"
SERVER_NAME = "api"
KEY_SUFFIXES = ("_KEY", "_TOKEN")
KEY_VARIABLES_SQL = text("SELECT DISTINCT api_key_env FROM ai_models WHERE api_key_env IS NOT NULL")


@dataclass(frozen=True)
class ServerView:
    """The key variables set and the default model's endpoint, as one process sees them."""

    key_variables: frozenset[str]
    default_endpoint: str | None
    pid: int | None = None
    recorded_at: datetime | None = None

    def usable(self, row: Any) -> bool:
        """Whether the router of that process could call this ``ai_models`` row."""
        if not row.is_active:
            return False
        if row.name == DEFAULT_MODEL_NAME:
            return self.default_endpoint is not None and self.default_endpoint == row.api_endpoint
        if row.api_key_env:
            return row.api_key_env in self.key_variables
        # No variable and a stored credential named: usable only for users who have it.
        # Neither: a keyless local endpoint (Ollama, llama.cpp).
        return not getattr(row, "credential", None)


def local_view(conn: Connection, settings: Settings) -> ServerView:
    """This process's view: the key variables set here.

    Those the catalogue names, and any other ``*_KEY`` / ``*_TOKEN`` variable, so a
    model synced after the server started (``models sync --api-key-env``) is judged too.
    """
    names = set(conn.execute(KEY_VARIABLES_SQL).scalars()) | {DEFAULT_KEY_ENV}
    names |= {n for n in os.environ if n.endswith(KEY_SUFFIXES)}
    default = settings.llm_base_url if settings.llm_base_url and settings.llm_model else None
    return ServerView(frozenset(_set(names)), default, pid=os.getpid())


def _set(names: Iterable[str]) -> list[str]:
    return sorted(n for n in names if os.environ.get(n))


def record_server_view(conn: Connection, settings: Settings) -> ServerView:
    """Record this server's view (at start, in the caller's transaction)."""
    view = local_view(conn, settings)
    config = {
        "key_variables": sorted(view.key_variables),
        "default_endpoint": view.default_endpoint,
        "pid": view.pid,
    }
    stmt = insert(ServerConfig).values(name=SERVER_NAME, config=config)
    conn.execute(
        stmt.on_conflict_do_update(
            index_elements=[ServerConfig.name],
            set_={"config": stmt.excluded.config, "updated_at": text("now()")},
        )
    )
    return view


def read_server_view(conn: Connection) -> ServerView | None:
    """The view the last server to start recorded, or None when none has started."""
    row = conn.execute(
        select(ServerConfig.config, ServerConfig.updated_at).where(ServerConfig.name == SERVER_NAME)
    ).first()
    if row is None:
        return None
    config = row.config
    return ServerView(
        frozenset(config.get("key_variables", [])),
        config.get("default_endpoint"),
        pid=config.get("pid"),
        recorded_at=row.updated_at,
    )
