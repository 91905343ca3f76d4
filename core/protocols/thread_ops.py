"""Thread operations beyond one conversation's turns: client-chosen ids, copy,
prune and time-to-live (the Agent Protocol's ``/threads`` extras).

A thread's ``ttl`` (strategy ``delete``) counts from its last activity: a
conversation silent for longer is soft-deleted by :func:`expire_threads`, which
the server runs every :data:`SWEEP_SECONDS` and ``agentry prune`` runs too. Its
checkpoints go with the rest of the deleted conversations' (``agentry prune``).
"""

from __future__ import annotations

import logging
import threading
import uuid
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from sqlalchemy import Connection, Row, select, text, update
from sqlalchemy.exc import IntegrityError

from core.auth.users import Principal
from core.conversations.messages import from_langchain, store_messages
from core.conversations.store import create_conversation, delete_conversation, get_conversation
from core.db.engine import Database
from core.errors import ConflictError, ValidationFailed
from core.models import Conversation
from core.protocols.threads import thread_config
from core.protocols.ttl import expire_threads
from core.runtime.service import AgentRuntime

log = logging.getLogger(__name__)

SWEEP_SECONDS = 60.0
# LangGraph's checkpoint tables, copied row for row under the new thread id.
COPY_CHECKPOINTS_SQL = [
    text(
        f"INSERT INTO {table} (thread_id, {columns}) SELECT :target, {columns}"
        f" FROM {table} WHERE thread_id = :source"
    )
    for table, columns in (
        (
            "checkpoints",
            "checkpoint_ns, checkpoint_id, parent_checkpoint_id, type, checkpoint, metadata",
        ),
        ("checkpoint_blobs", "checkpoint_ns, channel, version, type, blob"),
        (
            "checkpoint_writes",
            "checkpoint_ns, checkpoint_id, task_id, idx, channel, type, blob, task_path",
        ),
    )
]


def parse_ttl(value: Any) -> float | None:
    """Minutes of a thread ``ttl`` (``{"ttl": minutes, "strategy": "delete"}`` or a number).

    Raises:
        ValidationFailed: not a positive number of minutes, or another strategy.
    """
    if value is None:
        return None
    if isinstance(value, dict):
        strategy = value.get("strategy", "delete")
        if strategy != "delete":
            raise ValidationFailed(f"ttl.strategy: {strategy!r} is not supported (only 'delete')")
        extra = sorted(set(value) - {"ttl", "strategy"})
        if extra:
            raise ValidationFailed(f"ttl.{extra[0]}: option not supported by Agentry")
        value = value.get("ttl")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        raise ValidationFailed("ttl: a positive number of minutes")
    return float(value)


def set_ttl(conn: Connection, conversation_id: uuid.UUID, minutes: float | None) -> None:
    conn.execute(
        update(Conversation).where(Conversation.id == conversation_id).values(ttl_minutes=minutes)
    )


def create_thread(
    conn: Connection,
    principal: Principal,
    agent: str,
    metadata: dict[str, Any],
    *,
    channel: str,
    thread_id: uuid.UUID | None = None,
    if_exists: str | None = None,
) -> Row[Any]:
    """A new conversation, under the client's ``thread_id`` when it names one.

    Raises:
        ConflictError: that id is taken (``if_exists`` ``raise``, the default), or
            taken by a thread the caller may not see or that was deleted.
    """
    if thread_id is not None:
        taken = conn.execute(
            select(Conversation.user_id, Conversation.deleted_at).where(
                Conversation.id == thread_id
            )
        ).first()
        if taken is not None:
            mine = taken.deleted_at is None and (
                principal.is_admin or taken.user_id == principal.id
            )
            if if_exists == "do_nothing" and mine:
                return get_conversation(conn, principal, thread_id)
            raise ConflictError(f"thread_id: a thread {thread_id} exists already")
    try:
        return create_conversation(
            conn, principal, agent, metadata=metadata, channel=channel, conversation_id=thread_id
        )
    except IntegrityError:  # created by a concurrent request meanwhile
        raise ConflictError(f"thread_id: a thread {thread_id} exists already") from None


def copy_thread(
    runtime: AgentRuntime, principal: Principal, source_id: uuid.UUID, channel: str
) -> Row[Any]:
    """A new thread of the caller with the source's metadata, agent, ttl, checkpoints
    (so its history and forks too) and its current messages."""
    snapshot = runtime.compiled().graph.get_state(thread_config(source_id))
    messages: list[BaseMessage] = list((snapshot.values or {}).get("messages", []))
    with runtime.db.engine.begin() as conn:
        source = get_conversation(conn, principal, source_id)
        agent = str(source.current_agent)
        row = create_conversation(
            conn, principal, agent, metadata=dict(source.context_data or {}), channel=channel
        )
        set_ttl(conn, row.id, source.ttl_minutes)
        for statement in COPY_CHECKPOINTS_SQL:
            conn.execute(statement, {"source": str(source_id), "target": str(row.id)})
        rows = [
            r
            for r in (
                from_langchain(m, agent if isinstance(m, AIMessage) else None) for m in messages
            )
            if r is not None
        ]
        store_messages(conn, row.id, principal.id, rows, track_turn=False)
        return get_conversation(conn, principal, row.id)


def prune_threads(
    runtime: AgentRuntime, principal: Principal, thread_ids: list[uuid.UUID], strategy: str
) -> int:
    """``delete``: the threads go (soft delete, checkpoints at once); ``keep_latest``:
    only their latest checkpoint stays. Threads the caller may not see are skipped.

    Returns:
        How many threads were pruned.
    """
    with runtime.db.engine.begin() as conn:
        stmt = select(Conversation.id).where(
            Conversation.id.in_(thread_ids), Conversation.deleted_at.is_(None)
        )
        if not principal.is_admin:
            stmt = stmt.where(Conversation.user_id == principal.id)
        visible = list(conn.execute(stmt).scalars())
        if strategy == "delete":
            for conversation_id in visible:
                delete_conversation(conn, principal, conversation_id)
    if visible:
        runtime.saver.prune([str(t) for t in visible], strategy=strategy)
    return len(visible)


class TtlSweeper:
    """Runs :func:`expire_threads` every ``interval`` seconds in a daemon thread."""

    def __init__(self, db: Database, interval: float = SWEEP_SECONDS) -> None:
        self.db = db
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="agentry-ttl", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                with self.db.engine.begin() as conn:
                    expired = expire_threads(conn)
                if expired:
                    log.info("deleted %d threads whose ttl ran out", len(expired))
            except Exception:  # the database may be away for a while; try again later
                log.exception("thread ttl sweep failed")
