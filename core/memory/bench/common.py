"""Shared benchmark plumbing: a throwaway database, timing, ranking metrics."""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from psycopg import sql

from config import Settings, load_settings
from core.db import Database, open_database, prepare_database
from core.db.engine import normalize_url


@contextmanager
def bench_database(settings: Settings, label: str) -> Iterator[tuple[Database, Settings]]:
    """A fresh migrated database beside the configured one, dropped afterwards.

    Benchmarks never write into the real database: on the embedded server this is
    another database of the same server; with DATABASE_URL, a sibling database on
    the same server (the role needs CREATEDB).
    """
    name = f"agentry_bench_{label}_{os.getpid()}"
    if settings.database_url is None:
        db = open_database(settings, database=name)
        bench_settings = settings
    else:
        url = normalize_url(settings.database_url)
        admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        sibling = url.set(database=name).render_as_string(hide_password=False)
        bench_settings = load_settings(
            **{
                **{
                    f.alias: getattr(settings, k)
                    for k, f in Settings.model_fields.items()
                    if f.alias
                },
                "DATABASE_URL": sibling,
            }
        )
        db = open_database(bench_settings)
    try:
        prepare_database(db, bench_settings)
        yield db, bench_settings
    finally:
        conninfo = db.conninfo
        db.dispose()
        _drop(conninfo, name)


def _drop(conninfo: str, name: str) -> None:
    maintenance = psycopg.conninfo.make_conninfo(conninfo, dbname="postgres")
    with psycopg.connect(maintenance, autocommit=True) as conn:
        conn.execute(
            sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
        )


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000 for s in seconds]
    return {
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else 0.0,
    }


def ndcg_at(ranked: list[str], relevant: set[str], k: int) -> float:
    """Binary-relevance nDCG@k."""
    dcg = sum(1 / math.log2(i + 2) for i, d in enumerate(ranked[:k]) if d in relevant)
    ideal = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
    return dcg / ideal if ideal else 0.0


def recall_at(ranked: list[str], relevant: set[str], k: int) -> float:
    return len(set(ranked[:k]) & relevant) / len(relevant) if relevant else 0.0
