"""Health checks shared by ``GET /health`` and ``agentry doctor``."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any

from sqlalchemy import text

from config import Settings
from core.db import checkpoints, extensions, migrate
from core.db.engine import Database

SERVER_VERSION_SQL = text("SHOW server_version")
SERVER_VERSION_NUM_SQL = text("SHOW server_version_num")
HNSW_AM_SQL = text("SELECT 1 FROM pg_am WHERE amname = 'hnsw'")


@dataclass
class Check:
    """One verdict: a name, whether it passed, and what was seen."""

    name: str
    ok: bool
    detail: str
    data: dict[str, Any] = field(default_factory=dict)
    # Passed, but something should be fixed (``agentry doctor`` shows WARN, exits 0).
    warning: bool = False

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def database_checks(db: Database, settings: Settings) -> list[Check]:
    """Everything about the database that a serving process depends on.

    When the database cannot be reached, the checks that need it are reported
    failed with that reason rather than raising.
    """
    started = time.perf_counter()
    try:
        with db.engine.connect() as conn:
            server_version = conn.execute(SERVER_VERSION_SQL).scalar()
            latency_ms = round((time.perf_counter() - started) * 1000, 2)
            vector = extensions.installed_version(conn)
            available = extensions.available_version(conn)
            server_num = int(conn.execute(SERVER_VERSION_NUM_SQL).scalar_one())
            hnsw = conn.execute(HNSW_AM_SQL).scalar() is not None
            current = migrate.current_revision(conn)
            missing = checkpoints.missing_checkpoint_tables(conn)
    except Exception as exc:
        reason = f"unreachable: {_first_line(exc)}"
        return [
            Check("database", False, reason, {"url": db.display_url}),
            Check("pgvector", False, "not checked: database unreachable"),
            Check("hnsw", False, "not checked: database unreachable"),
            Check("migrations", False, "not checked: database unreachable"),
            Check("checkpoints", False, "not checked: database unreachable"),
            _pool_check(db),
        ]

    head = migrate.head_revision(settings)
    vector_text = extensions.format_version(vector)
    vector_warning = (
        extensions.version_warning(vector, available, server_num // 10000) if vector else None
    )
    return [
        Check(
            "database",
            True,
            f"PostgreSQL {server_version}",
            {
                "url": db.display_url,
                "server_version": server_version,
                "latency_ms": latency_ms,
                "embedded": db.server is not None,
            },
        ),
        Check(
            "pgvector",
            vector is not None,
            (vector_warning or f"pgvector {vector_text}")
            if vector
            else "extension not installed (run agentry db upgrade)",
            {
                "version": vector_text,
                "available": extensions.format_version(available),
                "iterative_scan": bool(vector and extensions.supports_iterative_scan(vector)),
            },
            warning=vector_warning is not None,
        ),
        Check("hnsw", hnsw, "HNSW access method available" if hnsw else "no HNSW access method"),
        Check(
            "migrations",
            current == head,
            f"at head {head}"
            if current == head
            else f"at {current}, head is {head} (run agentry db upgrade)",
            {"current": current, "head": head},
        ),
        Check(
            "checkpoints",
            not missing,
            "LangGraph checkpoint tables present"
            if not missing
            else f"missing: {', '.join(missing)}",
            {"missing": missing},
        ),
        _pool_check(db),
    ]


def _pool_check(db: Database) -> Check:
    stats = db.pool_stats()
    return Check("pool", True, f"{stats['in_use']} in use of {stats['max']}", stats)


def embedding_check(settings: Settings) -> Check:
    """Load the configured local embedding model and embed one sentence."""
    if settings.embedding_provider != "local":
        return Check(
            "embedding", True, f"remote provider {settings.embedding_provider}: not loaded"
        )
    try:
        from core.memory.embeddings import get_embedder

        embedder = get_embedder(settings)
        dims = len(embedder.embed(["health check"])[0])
    except Exception as exc:
        return Check("embedding", False, f"cannot load local model: {_first_line(exc)}")
    runtime = getattr(embedder, "runtime", "torch")
    detail = f"{settings.embedding_model}, {dims} dims, {runtime} runtime"
    if runtime != settings.embedding_runtime:
        # Still correct vectors, only slower: the log says why ONNX was not usable.
        detail += f" (AGENTRY_EMBEDDING_RUNTIME={settings.embedding_runtime} unavailable)"
    return Check("embedding", True, detail, {"dims": dims, "runtime": runtime})


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{exc.__class__.__name__}: {lines[0] if lines else ''}"
