"""Checkpoint retention (``agentry prune``).

LangGraph keeps every checkpoint of every thread; a long conversation grows
without bound. Pruning keeps the latest N checkpoints of each thread (resuming
needs only the latest), drops all checkpoints of conversations deleted more than
D days ago and of threads that belong to no conversation, then the writes and
blobs no remaining checkpoint refers to. Runs go with them: a deleted
conversation's runs (and their events) go when its checkpoints do, and a live
thread keeps the events of its latest N finished runs only (the run rows, small,
stay). Webhook deliveries that are over go after the same D days. A dry run does the same in a
transaction that is rolled back, so its counts are exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sqlalchemy import Connection, text

DEAD_THREADS_SQL = text(
    "SELECT DISTINCT c.thread_id, CASE WHEN v.id IS NULL THEN 'orphan' ELSE 'deleted' END AS why"
    " FROM checkpoints c LEFT JOIN conversations v ON v.id::text = c.thread_id"
    " WHERE v.id IS NULL OR v.deleted_at < now() - make_interval(days => :days)"
    " ORDER BY 1"
)
DELETE_THREAD_SQL = {
    table: text(f"DELETE FROM {table} WHERE thread_id = ANY(:threads)")
    for table in ("checkpoint_writes", "checkpoint_blobs", "checkpoints")
}
OLD_CHECKPOINTS_SQL = text(
    "DELETE FROM checkpoints c USING ("
    " SELECT thread_id, checkpoint_ns, checkpoint_id, row_number() OVER ("
    "  PARTITION BY thread_id, checkpoint_ns ORDER BY checkpoint_id DESC) AS rn FROM checkpoints"
    ") r WHERE c.thread_id = r.thread_id AND c.checkpoint_ns = r.checkpoint_ns"
    " AND c.checkpoint_id = r.checkpoint_id AND r.rn > :keep"
)
STALE_WRITES_SQL = text(
    "DELETE FROM checkpoint_writes w WHERE NOT EXISTS (SELECT 1 FROM checkpoints c"
    " WHERE c.thread_id = w.thread_id AND c.checkpoint_ns = w.checkpoint_ns"
    " AND c.checkpoint_id = w.checkpoint_id)"
)
STALE_BLOBS_SQL = text(
    "DELETE FROM checkpoint_blobs b WHERE NOT EXISTS (SELECT 1 FROM checkpoints c"
    " WHERE c.thread_id = b.thread_id AND c.checkpoint_ns = b.checkpoint_ns"
    " AND c.checkpoint -> 'channel_versions' ->> b.channel = b.version)"
)

DEAD_RUNS_SQL = text(
    "DELETE FROM runs r USING conversations v WHERE v.id = r.thread_id"
    " AND v.deleted_at < now() - make_interval(days => :days)"
    " AND r.status NOT IN ('pending', 'running')"
)
OLD_RUN_EVENTS_SQL = text(
    "DELETE FROM run_events e USING ("
    " SELECT id, row_number() OVER (PARTITION BY thread_id ORDER BY created_at DESC) AS rn"
    " FROM runs WHERE status NOT IN ('pending', 'running')"
    ") r WHERE e.run_id = r.id AND r.rn > :keep"
)
# Webhook deliveries that are over (delivered or given up) and older than the same days.
OLD_DELIVERIES_SQL = text(
    "DELETE FROM webhook_deliveries WHERE status <> 'pending'"
    " AND created_at < now() - make_interval(days => :days)"
)
COUNT_RUN_EVENTS_SQL = text(
    "SELECT count(*) FROM run_events e JOIN runs r ON r.id = e.run_id"
    " JOIN conversations v ON v.id = r.thread_id"
    " WHERE v.deleted_at < now() - make_interval(days => :days)"
    " AND r.status NOT IN ('pending', 'running')"
)


@dataclass
class PruneReport:
    deleted_threads: list[str] = field(default_factory=list)
    orphan_threads: list[str] = field(default_factory=list)
    checkpoints: int = 0
    writes: int = 0
    blobs: int = 0
    runs: int = 0
    run_events: int = 0
    webhook_deliveries: int = 0

    def as_dict(self) -> dict[str, object]:
        return {
            "deleted_conversation_threads": self.deleted_threads,
            "orphan_threads": self.orphan_threads,
            "checkpoints": self.checkpoints,
            "writes": self.writes,
            "blobs": self.blobs,
            "runs": self.runs,
            "run_events": self.run_events,
            "webhook_deliveries": self.webhook_deliveries,
        }


def prune_checkpoints(conn: Connection, *, keep: int, deleted_after_days: int) -> PruneReport:
    """Remove old checkpoints in the caller's transaction (roll it back for a dry run).

    Args:
        conn: a connection in the caller's transaction.
        keep: latest checkpoints kept per thread (at least 1).
        deleted_after_days: conversations deleted longer ago lose all their checkpoints.

    Returns:
        What was removed.
    """
    report = PruneReport()
    for thread_id, why in conn.execute(DEAD_THREADS_SQL, {"days": deleted_after_days}):
        (report.orphan_threads if why == "orphan" else report.deleted_threads).append(thread_id)
    dead = report.deleted_threads + report.orphan_threads
    if dead:
        report.writes += conn.execute(
            DELETE_THREAD_SQL["checkpoint_writes"], {"threads": dead}
        ).rowcount
        report.blobs += conn.execute(
            DELETE_THREAD_SQL["checkpoint_blobs"], {"threads": dead}
        ).rowcount
        report.checkpoints += conn.execute(
            DELETE_THREAD_SQL["checkpoints"], {"threads": dead}
        ).rowcount
    report.checkpoints += conn.execute(OLD_CHECKPOINTS_SQL, {"keep": max(keep, 1)}).rowcount
    report.writes += conn.execute(STALE_WRITES_SQL).rowcount
    report.blobs += conn.execute(STALE_BLOBS_SQL).rowcount
    days = {"days": deleted_after_days}
    report.run_events += int(conn.execute(COUNT_RUN_EVENTS_SQL, days).scalar_one())
    report.runs += conn.execute(DEAD_RUNS_SQL, days).rowcount  # their events cascade
    report.run_events += conn.execute(OLD_RUN_EVENTS_SQL, {"keep": max(keep, 1)}).rowcount
    report.webhook_deliveries += conn.execute(OLD_DELIVERIES_SQL, days).rowcount
    return report
