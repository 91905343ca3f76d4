"""Every Prometheus metric of Agentry, defined once.

Each process serves its own registry (``GET /metrics`` of that process): counters
and histograms count what this process did. Numbers that live in the database (the
embedding backlog, queued and running runs) are read at scrape time by
:func:`refresh_database_gauges`, so every process reports the same, current value.
prometheus_client's multiprocess mode is not used: ``agentry up`` is one process per
port, and a scrape target per process keeps counters exact without a shared folder.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.gc_collector import GCCollector
from prometheus_client.platform_collector import PlatformCollector
from prometheus_client.process_collector import ProcessCollector
from sqlalchemy import Connection, text

disable_created_metrics()  # no *_created series: half the exposition, nothing alerts on it
REGISTRY = CollectorRegistry(auto_describe=True)
ProcessCollector(registry=REGISTRY)
PlatformCollector(registry=REGISTRY)
GCCollector(registry=REGISTRY)

# Seconds: from a cheap route (~1 ms) to a long model turn.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)

HTTP_REQUESTS = Counter(
    "agentry_http_requests",
    "HTTP requests by method, route template (never the raw path) and status.",
    ["method", "route", "status"],
    registry=REGISTRY,
)
HTTP_LATENCY = Histogram(
    "agentry_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response (streams: to their end).",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
TURNS = Counter(
    "agentry_turns",
    "Turns run by this process by outcome: completed, interrupted (waits for a person),"
    " refused (4xx), failed, abandoned (the client left).",
    ["outcome"],
    registry=REGISTRY,
)
TURN_DURATION = Histogram(
    "agentry_turn_duration_seconds",
    "Wall time of a turn.",
    ["outcome"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_CALLS = Counter(
    "agentry_model_calls",
    "Model calls by model (ai_models.name) and outcome (ok, error).",
    ["model", "outcome"],
    registry=REGISTRY,
)
MODEL_DURATION = Histogram(
    "agentry_model_call_duration_seconds",
    "Time of one model call.",
    ["model"],
    buckets=LATENCY_BUCKETS,
    registry=REGISTRY,
)
MODEL_TOKENS = Counter(
    "agentry_model_tokens",
    "Tokens the models reported, by model and kind (prompt, completion).",
    ["model", "kind"],
    registry=REGISTRY,
)
EMBEDDED = Counter(
    "agentry_embeddings",
    "Vectors embedded by this process (rate(): the embedding rate).",
    registry=REGISTRY,
)
EMBEDDING_BACKLOG = Gauge(
    "agentry_embedding_backlog",
    "Index rows still waiting for their vector (read from the database at scrape time).",
    registry=REGISTRY,
)
RUNS = Gauge(
    "agentry_runs",
    "Agent Protocol runs by status (pending = queued, running), all processes.",
    ["status"],
    registry=REGISTRY,
)
POOL_IN_USE = Gauge(
    "agentry_db_pool_in_use",
    "Connections checked out of this process's pools (engine, checkpoints).",
    ["pool"],
    registry=REGISTRY,
)
POOL_SIZE = Gauge(
    "agentry_db_pool_size",
    "Connections each pool of this process may hold.",
    ["pool"],
    registry=REGISTRY,
)
MECHANIC_APPLIES = Counter(
    "agentry_mechanic_applies",
    "Schema changes applied by this process, by outcome (applied, failed).",
    ["outcome"],
    registry=REGISTRY,
)
RATE_LIMITED = Counter(
    "agentry_rate_limit_refusals",
    "Requests refused with 429, by limit (requests, turns, auth_failures).",
    ["limit"],
    registry=REGISTRY,
)
BODY_REFUSED = Counter(
    "agentry_body_too_large_refusals",
    "Requests refused with 413 because their body passed AGENTRY_MAX_BODY_BYTES.",
    registry=REGISTRY,
)

# One round trip for every database gauge. The backlog count walks the partial index
# on "embedding IS NULL"; the runs counts read the pending/running rows only.
DATABASE_GAUGES_SQL = text(
    "SELECT (SELECT count(*) FROM search_index WHERE embedding IS NULL) AS backlog,"
    " (SELECT count(*) FROM runs WHERE status = 'pending') AS pending,"
    " (SELECT count(*) FROM runs WHERE status = 'running') AS running"
)


def refresh_database_gauges(conn: Connection) -> None:
    """Set the gauges whose truth is in the database (called at scrape time)."""
    row = conn.execute(DATABASE_GAUGES_SQL).one()
    EMBEDDING_BACKLOG.set(row.backlog)
    RUNS.labels("pending").set(row.pending)
    RUNS.labels("running").set(row.running)


def set_pool(name: str, in_use: int, size: int) -> None:
    POOL_IN_USE.labels(name).set(in_use)
    POOL_SIZE.labels(name).set(size)


def record_model_call(model: str, ok: bool, seconds: float, usage: dict[str, Any] | None) -> None:
    """Count one model call and the tokens its reply reported (LangChain usage_metadata)."""
    MODEL_CALLS.labels(model, "ok" if ok else "error").inc()
    MODEL_DURATION.labels(model).observe(seconds)
    if usage:
        MODEL_TOKENS.labels(model, "prompt").inc(usage.get("input_tokens") or 0)
        MODEL_TOKENS.labels(model, "completion").inc(usage.get("output_tokens") or 0)


def exposition() -> bytes:
    """The registry in the Prometheus text format."""
    return generate_latest(REGISTRY)
