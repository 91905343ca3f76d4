"""The runs table (record and queue) and the run_events table, as SQL.

Every function works in the caller's transaction. Notifications (``pg_notify``) are
sent on commit, so a listener never hears of a row it cannot read yet.
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import Connection, Row, text

from core.auth.users import Principal
from core.errors import NotFoundError
from core.models import UserRole

ACTIVE = ("pending", "running")
FINISHED = ("success", "error", "interrupted")
# New work (or a finished run that may unblock a queued one): workers wake up.
RUNS_CHANNEL = "agentry_runs"
# A run to cancel (payload: run id): the process holding it stops it.
CANCEL_CHANNEL = "agentry_run_cancel"
# New events or a new status of a run (payload: run id): tails read on.
EVENTS_CHANNEL = "agentry_run_events"

NOTIFY_SQL = text("SELECT pg_notify(:channel, :payload)")
THREAD_LOCK_SQL = text("SELECT pg_advisory_xact_lock(hashtextextended(:key, 0))")
TURN_FREE_SQL = text("SELECT pg_try_advisory_xact_lock(hashtextextended(:key, 0))")
INSERT_SQL = text(
    "INSERT INTO runs (id, thread_id, user_id, assistant_id, multitask_strategy, kwargs,"
    " metadata, stateless) VALUES (:id, :thread_id, :user_id, :assistant_id, :strategy,"
    " CAST(:kwargs AS jsonb), CAST(:metadata AS jsonb), :stateless) RETURNING *"
)
GET_SQL = text("SELECT * FROM runs WHERE id = :id AND thread_id = :thread_id")
ACTIVE_OF_THREAD_SQL = text(
    "SELECT * FROM runs WHERE thread_id = :thread_id AND status IN ('pending', 'running')"
    " ORDER BY created_at"
)
LIST_SQL = text(
    "SELECT * FROM runs WHERE thread_id = :thread_id"
    " AND (CAST(:status AS text) IS NULL OR status = :status)"
    " ORDER BY created_at DESC, id DESC LIMIT :limit OFFSET :offset"
)
BUSY_SQL = text(
    "SELECT DISTINCT thread_id FROM runs WHERE thread_id = ANY(:ids)"
    " AND status IN ('pending', 'running')"
)
DELETE_SQL = text("DELETE FROM runs WHERE id = :id")
# The oldest claimable run: pending (and due), or running with an expired lease (its
# process died), of a thread with no older unfinished run and no live running one.
# The unfinished-older rule queues runs per thread (multitask_strategy enqueue).
CLAIM_SQL = text(
    "WITH next AS ("
    " SELECT r.id FROM runs r"
    " WHERE r.status IN ('pending', 'running')"
    "  AND ((r.status = 'pending' AND r.available_at <= now())"
    "   OR (r.status = 'running' AND r.lease_expires_at < now()))"
    "  AND NOT EXISTS (SELECT 1 FROM runs o WHERE o.thread_id = r.thread_id AND o.id <> r.id"
    "   AND o.status IN ('pending', 'running')"
    "   AND ((o.created_at, o.id) < (r.created_at, r.id)"
    "    OR (o.status = 'running' AND o.lease_expires_at >= now())))"
    " ORDER BY r.created_at, r.id LIMIT 1 FOR UPDATE OF r SKIP LOCKED)"
    " UPDATE runs SET status = 'running', attempt = runs.attempt + 1, worker = :worker,"
    " lease_expires_at = now() + make_interval(secs => :lease),"
    " started_at = coalesce(runs.started_at, now()), updated_at = now()"
    " FROM next WHERE runs.id = next.id RETURNING runs.*"
)
# A run whose holders keep dying (a crash it causes) is not retried for ever.
MAX_ATTEMPTS = 5
GIVE_UP_SQL = text(
    "UPDATE runs SET status = 'error', lease_expires_at = NULL, ended_at = now(),"
    " updated_at = now(), error = jsonb_build_object('error', 'RunAbandoned', 'message',"
    " 'the run was taken over ' || attempt || ' times; its processes kept dying')"
    " WHERE status = 'running' AND lease_expires_at < now() AND attempt >= :max"
    " RETURNING id"
)
HEARTBEAT_SQL = text(
    "UPDATE runs SET lease_expires_at = now() + make_interval(secs => :lease)"
    " WHERE id = ANY(:ids) AND worker = :worker AND status = 'running'"
    " RETURNING id, attempt, cancel"
)
# The checkpoint is the one before the run's first start (a rollback forks from it);
# the version is the one each attempt runs.
START_SQL = text(
    "UPDATE runs SET checkpoint_id = coalesce(checkpoint_id, :checkpoint_id),"
    " assistant_version = :version WHERE id = :id"
)
RELEASE_SQL = text(
    "UPDATE runs SET status = 'pending', worker = NULL, lease_expires_at = NULL,"
    " available_at = now() + make_interval(secs => :delay), updated_at = now()"
    " WHERE id = :id AND worker = :worker AND attempt = :attempt AND status = 'running'"
)
FINISH_SQL = text(
    "UPDATE runs SET status = :status, output = CAST(:output AS jsonb),"
    " error = CAST(:error AS jsonb), lease_expires_at = NULL, ended_at = now(),"
    " updated_at = now() WHERE id = :id AND worker = :worker AND attempt = :attempt"
    " AND status = 'running' RETURNING *"
)
# A pending run that is cancelled never starts.
CANCEL_PENDING_SQL = text(
    "UPDATE runs SET status = 'interrupted', cancel = :action, ended_at = now(),"
    " updated_at = now() WHERE id = :id AND status = 'pending' RETURNING id"
)
CANCEL_RUNNING_SQL = text(
    "UPDATE runs SET cancel = :action, updated_at = now()"
    " WHERE id = :id AND status = 'running' RETURNING id"
)
NEXT_SEQ_SQL = text("SELECT coalesce(max(seq) + 1, 0) FROM run_events WHERE run_id = :id")
APPEND_SQL = text(
    "INSERT INTO run_events (run_id, seq, event, data)"
    " SELECT :id, s, e, d FROM unnest(CAST(:seqs AS bigint[]), CAST(:events AS text[]),"
    " CAST(:datas AS jsonb[])) AS t(s, e, d)"
)
# One statement, so one snapshot: when the status read is final, every event is visible.
READ_EVENTS_SQL = text(
    "SELECT r.status, e.seq, e.event, e.data FROM runs r"
    " LEFT JOIN LATERAL (SELECT seq, event, data FROM run_events"
    "  WHERE run_id = r.id AND seq > :after ORDER BY seq LIMIT :limit) e ON true"
    " WHERE r.id = :id ORDER BY e.seq"
)
PRINCIPAL_SQL = text("SELECT id, email, role FROM users WHERE id = :id")
STORED_SQL = text(
    "SELECT EXISTS (SELECT 1 FROM messages WHERE conversation_id = :thread_id AND lc_id = :lc_id)"
)


def notify(conn: Connection, channel: str, payload: str = "") -> None:
    conn.execute(NOTIFY_SQL, {"channel": channel, "payload": payload})


def lock_thread_runs(conn: Connection, thread_id: uuid.UUID) -> None:
    """Serialise run creation per thread for this transaction (reject is exact)."""
    conn.execute(THREAD_LOCK_SQL, {"key": f"agentry-runs:{thread_id}"})


def turn_is_free(conn: Connection, thread_id: uuid.UUID) -> bool:
    """No turn of the thread runs now (e.g. through the conversation API)."""
    return bool(conn.execute(TURN_FREE_SQL, {"key": f"agentry-turn:{thread_id}"}).scalar_one())


def insert_run(
    conn: Connection,
    *,
    run_id: uuid.UUID,
    thread_id: uuid.UUID,
    user_id: uuid.UUID,
    assistant_id: str,
    strategy: str,
    kwargs: dict[str, Any],
    metadata: dict[str, Any],
    stateless: bool,
) -> Row[Any]:
    row = conn.execute(
        INSERT_SQL,
        {
            "id": run_id,
            "thread_id": thread_id,
            "user_id": user_id,
            "assistant_id": assistant_id,
            "strategy": strategy,
            "kwargs": json.dumps(kwargs, default=str),
            "metadata": json.dumps(metadata, default=str),
            "stateless": stateless,
        },
    ).one()
    notify(conn, RUNS_CHANNEL, str(run_id))
    return row


def get_run(conn: Connection, thread_id: uuid.UUID, run_id: uuid.UUID) -> Row[Any]:
    row = conn.execute(GET_SQL, {"id": run_id, "thread_id": thread_id}).first()
    if row is None:
        raise NotFoundError(f"no run {run_id} on thread {thread_id}")
    return row


def active_runs(conn: Connection, thread_id: uuid.UUID) -> list[Row[Any]]:
    return list(conn.execute(ACTIVE_OF_THREAD_SQL, {"thread_id": thread_id}))


def list_runs(
    conn: Connection, thread_id: uuid.UUID, *, limit: int, offset: int, status: str | None
) -> list[Row[Any]]:
    params = {"thread_id": thread_id, "limit": limit, "offset": offset, "status": status}
    return list(conn.execute(LIST_SQL, params))


def busy_threads(conn: Connection, thread_ids: list[uuid.UUID]) -> set[uuid.UUID]:
    """The threads among ``thread_ids`` with a pending or running run."""
    if not thread_ids:
        return set()
    return set(conn.execute(BUSY_SQL, {"ids": thread_ids}).scalars())


def delete_run(conn: Connection, run_id: uuid.UUID) -> None:
    conn.execute(DELETE_SQL, {"id": run_id})


def request_cancel(conn: Connection, run_id: uuid.UUID, action: str) -> None:
    """Cancel a run: a pending one ends now, a running one is told (NOTIFY) to stop."""
    params = {"id": run_id, "action": action}
    if conn.execute(CANCEL_PENDING_SQL, params).first() is not None:
        notify(conn, EVENTS_CHANNEL, str(run_id))
        notify(conn, RUNS_CHANNEL, str(run_id))
    elif conn.execute(CANCEL_RUNNING_SQL, params).first() is not None:
        notify(conn, CANCEL_CHANNEL, str(run_id))


def claim(conn: Connection, worker: str, lease: float) -> Row[Any] | None:
    """The next run for ``worker`` (now running under its lease), or None."""
    for (run_id,) in conn.execute(GIVE_UP_SQL, {"max": MAX_ATTEMPTS}):
        notify(conn, EVENTS_CHANNEL, str(run_id))
        notify(conn, RUNS_CHANNEL, str(run_id))
    return conn.execute(CLAIM_SQL, {"worker": worker, "lease": lease}).first()


def heartbeat(
    conn: Connection, worker: str, run_ids: list[uuid.UUID], lease: float
) -> list[Row[Any]]:
    """Extend the leases this worker still holds; what comes back is still ours."""
    return list(conn.execute(HEARTBEAT_SQL, {"ids": run_ids, "worker": worker, "lease": lease}))


def record_start(
    conn: Connection, run_id: uuid.UUID, checkpoint_id: str | None, version: int | None
) -> None:
    """The thread's checkpoint as the run first starts ('' when it had none yet) and the
    assistant version this attempt runs."""
    params = {"id": run_id, "checkpoint_id": checkpoint_id or "", "version": version}
    conn.execute(START_SQL, params)


def release(conn: Connection, run: Row[Any], worker: str, delay: float) -> None:
    """Hand a claimed run back to the queue (due again after ``delay`` seconds)."""
    params = {"id": run.id, "worker": worker, "attempt": run.attempt, "delay": delay}
    conn.execute(RELEASE_SQL, params)
    notify(conn, RUNS_CHANNEL, str(run.id))


def finish(
    conn: Connection,
    run: Row[Any],
    worker: str,
    status: str,
    output: dict[str, Any] | None,
    error: dict[str, Any] | None,
) -> Row[Any] | None:
    """Record the outcome; None when the run is not ours any more (taken over)."""
    row = conn.execute(
        FINISH_SQL,
        {
            "id": run.id,
            "worker": worker,
            "attempt": run.attempt,
            "status": status,
            "output": None if output is None else json.dumps(output, default=str),
            "error": None if error is None else json.dumps(error, default=str),
        },
    ).first()
    if row is not None:
        notify(conn, EVENTS_CHANNEL, str(run.id))
        notify(conn, RUNS_CHANNEL, str(run.id))
    return row


def next_seq(conn: Connection, run_id: uuid.UUID) -> int:
    return int(conn.execute(NEXT_SEQ_SQL, {"id": run_id}).scalar_one())


def append_events(
    conn: Connection, run_id: uuid.UUID, first_seq: int, events: list[tuple[str, Any]]
) -> None:
    if not events:
        return
    conn.execute(
        APPEND_SQL,
        {
            "id": run_id,
            "seqs": list(range(first_seq, first_seq + len(events))),
            "events": [name for name, _ in events],
            "datas": [json.dumps(data, default=str) for _, data in events],
        },
    )
    notify(conn, EVENTS_CHANNEL, str(run_id))


def read_events(
    conn: Connection, run_id: uuid.UUID, after: int, limit: int = 500
) -> tuple[str | None, list[tuple[int, str, Any]]]:
    """The run's status and its events after ``after`` (status None: no such run)."""
    rows = list(conn.execute(READ_EVENTS_SQL, {"id": run_id, "after": after, "limit": limit}))
    if not rows:
        return None, []
    events = [(r.seq, r.event, r.data) for r in rows if r.seq is not None]
    return rows[0].status, events


def principal_of(conn: Connection, user_id: uuid.UUID) -> Principal:
    """The user a run belongs to (its turn runs as them)."""
    row = conn.execute(PRINCIPAL_SQL, {"id": user_id}).first()
    if row is None:
        raise NotFoundError(f"no user {user_id}")
    return Principal(id=row.id, email=row.email, role=UserRole(row.role))


def input_stored(conn: Connection, thread_id: uuid.UUID, message_id: str) -> bool:
    return bool(conn.execute(STORED_SQL, {"thread_id": thread_id, "lc_id": message_id}).scalar())


def run_json(row: Row[Any]) -> dict[str, Any]:
    """A ``Run`` as ``langgraph_sdk`` parses it."""
    return {
        "run_id": str(row.id),
        "thread_id": str(row.thread_id),
        "assistant_id": row.assistant_id,
        # Agentry's addition: the version the run used (None until a worker starts it).
        "assistant_version": row.assistant_version,
        "created_at": row.created_at.isoformat(),
        "updated_at": row.updated_at.isoformat(),
        "status": row.status,
        "metadata": row.metadata,
        "multitask_strategy": row.multitask_strategy,
        "kwargs": {k: v for k, v in row.kwargs.items() if k != "content"},
    }


def outcome(row: Row[Any]) -> dict[str, Any]:
    """What ``wait`` and ``join`` answer: the final values, or the error."""
    if row.error is not None:
        return {"__error__": row.error}
    return dict(row.output or {})
