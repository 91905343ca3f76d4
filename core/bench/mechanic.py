"""``agentry bench mechanic``'s work: plan-to-live lead time, how long live tables are locked.

Runs in a scratch database on the configured server and a scratch git project, so the
real data and checkout are never touched. Lead time is measured from the start of the
plan until this process's LISTEN/NOTIFY-driven registry serves the new entity; the
baseline is the bare DDL (the Alembic upgrade) of the same changes. Lock impact is
measured by a writer inserting into an existing table while changes to that table are
applied, against the same writer's latency with nothing being applied. Conversation-to-live
time (``core.bench.mechanic_chat``): a conversation with the mechanic agent from the request
to the first record, through proposal, approval and apply, with the instant scripted model.
"""

from __future__ import annotations

import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import text

from config import Settings
from core.bench.database import bench_database
from core.bench.mechanic_chat import conversation_to_live
from core.db import Database
from core.errors import NotFoundError
from core.mechanic.apply import apply_change
from core.mechanic.live import EntityListener, EntityRegistry
from core.mechanic.plan import plan_change
from core.mechanic.scratch import scratch_deployment
from core.mechanic.spec import parse_spec

GOAL_SECONDS = 10.0


def _entity(i: int) -> dict[str, Any]:
    return {
        "action": "add_entity",
        "entity": f"bench_item_{i}",
        "fields": [
            {"name": "title", "type": "string", "max_length": 200, "required": True},
            {"name": "body", "type": "text", "searchable": True},
            {"name": "score", "type": "integer"},
        ],
    }


class Writer(threading.Thread):
    """Inserts into a table, one transaction per row, recording each insert's latency."""

    def __init__(self, db: Database, table: str) -> None:
        super().__init__(daemon=True)
        self.db, self.table = db, table
        self.samples: list[tuple[float, float]] = []  # (start, seconds)
        self.stop = threading.Event()

    def run(self) -> None:
        sql = text(f'INSERT INTO "{self.table}" (title) VALUES (:t)')
        with self.db.engine.connect() as conn:
            while not self.stop.is_set():
                started = time.perf_counter()
                conn.execute(sql, {"t": "w"})
                conn.commit()
                self.samples.append((started, time.perf_counter() - started))
                time.sleep(0.002)

    def between(self, start: float, end: float) -> list[float]:
        return [s for t, s in self.samples if start <= t <= end]


class LockSampler(threading.Thread):
    """Samples pg_locks for ACCESS EXCLUSIVE locks on one table; longest hold in seconds."""

    SQL = text(
        "SELECT count(*) FROM pg_locks WHERE relation = to_regclass(:t) "
        "AND mode = 'AccessExclusiveLock' AND granted"
    )

    def __init__(self, db: Database, table: str) -> None:
        super().__init__(daemon=True)
        self.db, self.table = db, table
        self.stop = threading.Event()
        self.longest = 0.0
        self.samples = 0
        self.began = self.finished = 0.0

    def interval(self) -> float:
        """Mean seconds between samples (the resolution of ``longest``)."""
        return (self.finished - self.began) / self.samples if self.samples else 0.0

    def run(self) -> None:
        self.began = self.finished = time.perf_counter()
        held_since: float | None = None
        with self.db.engine.connect() as conn:
            while not self.stop.is_set():
                now = time.perf_counter()
                held = conn.execute(self.SQL, {"t": self.table}).scalar_one() > 0
                conn.commit()
                self.samples += 1
                if held and held_since is None:
                    held_since = now
                elif not held and held_since is not None:
                    self.longest = max(self.longest, now - held_since)
                    held_since = None
                self.finished = time.perf_counter()
                time.sleep(0.001)


def _wait_live(registry: EntityRegistry, name: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            registry.get(name)
            return
        except NotFoundError:
            time.sleep(0.005)
    raise TimeoutError(f"{name} not live after {timeout} s")


def run_bench(
    settings: Settings, entities: int, tick: Callable[[], None] | None = None
) -> dict[str, Any]:
    """Measure; returns the report (see the module docstring). ``tick`` after each addition."""
    lead, plans, applies, ddl = [], [], [], []
    with (
        bench_database(settings, "mechanic") as (db, _),
        scratch_deployment(prefix="agentry-bench-") as project,
    ):
        bench_settings = settings.model_copy(
            update={
                "project_dir": project,
                "backup_dir": project.parent / "backups",
                "git_repo": None,
                "git_branch": None,
            }
        )
        registry = EntityRegistry()
        listener = EntityListener(db.conninfo, db.engine, registry).start(wait=10)
        try:
            for i in range(entities):
                spec = parse_spec(_entity(i))
                started = time.perf_counter()
                change = plan_change(db, bench_settings, spec, actor="system")
                planned = time.perf_counter()
                apply_change(db, bench_settings, change["id"], actor="system")
                applied = time.perf_counter()
                _wait_live(registry, spec.entity)
                lead.append(time.perf_counter() - started)
                plans.append(planned - started)
                applies.append(applied - planned)
                with db.engine.connect() as conn:
                    ddl.append(float(conn.execute(
                        text("SELECT (details->>'upgrade_seconds')::float FROM audit_log "
                             "WHERE details->>'change_id' = :c AND status = 'succeeded'"),
                        {"c": str(change["id"])},
                    ).scalar_one()))  # fmt: skip
                if tick:
                    tick()
            lock = _lock_impact(db, bench_settings)
            chat = conversation_to_live(db, bench_settings, registry)
        finally:
            listener.stop()
    p50 = statistics.median(lead)
    return {
        "entities": entities,
        "lead_time_s": {"p50": round(p50, 3), "max": round(max(lead), 3)},
        "plan_s_p50": round(statistics.median(plans), 3),
        "apply_s_p50": round(statistics.median(applies), 3),
        "baseline_ddl_s_p50": round(statistics.median(ddl), 4),
        "lead_time_vs_ddl_ratio": round(p50 / max(statistics.median(ddl), 1e-6), 1),
        "goal_s": GOAL_SECONDS,
        "lead_time_vs_goal_ratio": round(p50 / GOAL_SECONDS, 3),
        "meets_goal": p50 <= GOAL_SECONDS,
        "lock": lock,
        "conversation_to_live": chat,
    }


def _lock_impact(db: Database, settings: Settings) -> dict[str, Any]:
    """A writer's insert latency on an existing table, idle vs while changes to it apply."""
    writer = Writer(db, "bench_item_0")
    sampler = LockSampler(db, "bench_item_0")
    writer.start()
    try:
        time.sleep(0.3)
        base_start = time.perf_counter()
        time.sleep(1.0)
        base_end = time.perf_counter()
        note = {"name": "note", "type": "text"}
        changes: list[dict[str, Any]] = [
            {"action": "add_fields", "entity": "bench_item_0", "fields": [note]},
            {"action": "add_index", "entity": "bench_item_0", "index": {"fields": ["score"]}},
        ]
        windows = []
        sampler.start()
        for spec in changes:
            change = plan_change(db, settings, parse_spec(spec), actor="system")
            start = time.perf_counter()
            apply_change(db, settings, change["id"], actor="system")
            windows.append((start, time.perf_counter()))
        time.sleep(0.2)
    finally:
        writer.stop.set()
        sampler.stop.set()
        writer.join(timeout=10)
        if sampler.is_alive() or sampler.samples:
            sampler.join(timeout=10)
    baseline = writer.between(base_start, base_end)
    during = [s for a, b in windows for s in writer.between(a, b)]
    base_max = max(baseline)
    worst = max(during) if during else 0.0
    return {
        "table": "bench_item_0",
        "changes": ["add_fields (nullable column)", "add_index (concurrently)"],
        "writes_baseline": len(baseline),
        "writes_during_apply": len(during),
        "baseline_write_p50_ms": round(statistics.median(baseline) * 1000, 2),
        "baseline_write_max_ms": round(base_max * 1000, 2),
        "during_apply_write_max_ms": round(worst * 1000, 2),
        "max_stall_vs_baseline_ratio": round(worst / base_max, 2) if base_max else None,
        "access_exclusive_longest_ms": round(sampler.longest * 1000, 2),
        "lock_samples": sampler.samples,
        "lock_sample_interval_ms": round(sampler.interval() * 1000, 2),
        "lock_timeout_ms": int(settings.mechanic_lock_timeout * 1000),
        "within_lock_timeout": max(worst, sampler.longest) <= settings.mechanic_lock_timeout,
    }
