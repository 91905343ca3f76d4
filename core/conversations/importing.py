"""Bringing old histories in: conversations with their messages, timestamps and agent switches.

Two readers feed one writer: the JSON Lines format (:func:`parse_jsonl`, documented
in the README, one conversation per line) and the legacy ``sessions`` /
``agent_contexts`` tables (core/conversations/legacy.py). Every conversation is
validated whole before anything is written, and written in a savepoint of its own:
a bad one is skipped and reported, never half imported. A conversation whose
``session_id`` is already there (same owner) is left as it is, so a second run of
the same import changes nothing. Imported messages are indexed for conversational
recall (core/memory/conversational.py).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError

from core.errors import ValidationFailed
from core.memory.conversational import Turn, index_turns

ROLE_ALIASES = {"human": "user", "ai": "assistant", "bot": "assistant", "function": "tool"}
MAX_MESSAGES = 100_000

FIND_CONVERSATION_SQL = text("SELECT user_id FROM conversations WHERE session_id = :sid")
INSERT_CONVERSATION_SQL = text(
    "INSERT INTO conversations (session_id, user_id, channel, current_agent, context_data, "
    "messages_count, last_activity, created_at) VALUES (:sid, :uid, 'import', :agent, "
    "CAST(:meta AS jsonb), :count, :last, :first) RETURNING id"
)
INSERT_MESSAGE_SQL = text(
    "INSERT INTO messages (conversation_id, user_id, role, content, agent, metadata, lc_id, "
    "created_at) VALUES (:cid, :uid, :role, :content, :agent, CAST(:meta AS jsonb), :lc, :at) "
    "RETURNING id"
)
INSERT_SWITCH_SQL = text(
    "INSERT INTO agent_switches (conversation_id, from_agent, to_agent, reason, switched_at) "
    "VALUES (:cid, :from_agent, :to_agent, :reason, :at)"
)
USER_SQL = text(
    "SELECT id FROM users WHERE lower(email) = lower(:ref) OR CAST(id AS text) = lower(:ref)"
)


def _clean(value: str, what: str) -> str:
    if "\x00" in value:
        raise ValueError(f"{what} must not contain NUL bytes")
    return value


class ImportMessage(BaseModel):
    """One message of an imported conversation (a line's ``messages[]`` entry)."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(None, max_length=100, description="stable id; default its position")
    role: Literal["user", "assistant", "system", "tool"]
    speaker: str | None = Field(None, max_length=200, description="who spoke (a person's name)")
    content: str = Field(min_length=1)
    timestamp: datetime | None = Field(None, description="when; default the previous message's")
    agent: str | None = Field(None, max_length=100)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("role", mode="before")
    @classmethod
    def _role(cls, v: Any) -> Any:
        return ROLE_ALIASES.get(v, v) if isinstance(v, str) else v

    @field_validator("content")
    @classmethod
    def _content(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("content must not be blank")
        return _clean(v, "content")


class ImportSwitch(BaseModel):
    model_config = ConfigDict(extra="forbid")

    from_agent: str | None = Field(None, max_length=100)
    to_agent: str = Field(min_length=1, max_length=100)
    reason: str | None = None
    timestamp: datetime | None = None


class ImportConversation(BaseModel):
    """One line of the JSON Lines import format."""

    model_config = ConfigDict(extra="forbid")

    conversation: str = Field(min_length=1, max_length=200, description="its session id")
    user: str | None = Field(None, description="owner: email or user id (default: --user)")
    agent: str | None = Field(None, max_length=100, description="current agent")
    created_at: datetime | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)
    messages: list[ImportMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    switches: list[ImportSwitch] = Field(default_factory=list)

    @field_validator("conversation")
    @classmethod
    def _conversation(cls, v: str) -> str:
        return _clean(v, "conversation")


@dataclass
class ImportReport:
    imported: int = 0
    unchanged: int = 0
    messages: int = 0
    switches: int = 0
    indexed: int = 0
    skipped: list[dict[str, str]] = field(default_factory=list)

    def skip(self, where: str, reason: str) -> None:
        self.skipped.append({"where": where, "reason": reason})

    def as_json(self) -> dict[str, Any]:
        return {
            "imported": self.imported,
            "unchanged": self.unchanged,
            "messages": self.messages,
            "switches": self.switches,
            "indexed": self.indexed,
            "skipped": self.skipped,
        }


def _errors(exc: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(p) for p in e['loc']) or 'line'}: {e['msg']}" for e in exc.errors()
    )


def parse_jsonl(
    lines: Iterable[str], report: ImportReport
) -> Iterator[tuple[str, ImportConversation]]:
    """Validated conversations with where they came from (``line N``); bad lines are reported."""
    for n, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {n}"
        try:
            data = json.loads(line)
        except ValueError as exc:
            report.skip(where, f"not JSON: {exc}")
            continue
        try:
            yield where, ImportConversation.model_validate(data)
        except ValidationError as exc:
            report.skip(where, _errors(exc))


def resolve_user(conn: Connection, ref: str) -> uuid.UUID:
    """The id of the user with this email or id."""
    if "\x00" in ref:  # outside any savepoint: the database must not see it
        raise ValidationFailed("user: must not contain NUL bytes")
    found = conn.execute(USER_SQL, {"ref": ref.strip()}).scalar()
    if found is None:
        raise ValidationFailed(f"user: no user {ref!r}")
    return uuid.UUID(str(found))


def import_conversations(
    conn: Connection,
    items: Iterable[tuple[str, ImportConversation]],
    report: ImportReport,
    *,
    default_user: uuid.UUID | None = None,
    progress: Callable[[int], None] | None = None,
) -> ImportReport:
    """Write validated conversations, each in a savepoint, in the caller's transaction.

    Args:
        conn: a connection in a transaction.
        items: ``(where, conversation)`` pairs (``where`` names it in the report).
        report: collects counts and the skipped conversations with their reasons.
        default_user: owner of conversations that name none.
        progress: called with the number of conversations done so far.
    """
    users: dict[str, uuid.UUID] = {}
    for done, (where, item) in enumerate(items, start=1):
        try:
            if item.user is None and default_user is None:
                raise ValidationFailed("user: the conversation names no user and none was given")
            owner = default_user if item.user is None else users.get(item.user)
            if owner is None and item.user is not None:
                owner = users[item.user] = resolve_user(conn, item.user)
            assert owner is not None
            existing = conn.execute(FIND_CONVERSATION_SQL, {"sid": item.conversation}).scalar()
            if existing is not None:
                if uuid.UUID(str(existing)) != owner:
                    raise ValidationFailed(
                        f"conversation: {item.conversation!r} exists and belongs to another user"
                    )
                report.unchanged += 1
            else:
                with conn.begin_nested():
                    _write(conn, item, owner, report)
                report.imported += 1
        except ValidationFailed as exc:
            report.skip(where, exc.message)
        except DBAPIError as exc:
            report.skip(where, f"the database refused it: {exc.orig}")
        if progress:
            progress(done)
    return report


def _write(
    conn: Connection, item: ImportConversation, owner: uuid.UUID, report: ImportReport
) -> None:
    stamps: list[datetime] = []
    last = item.created_at or item.messages[0].timestamp or datetime.now(UTC)
    for m in item.messages:
        last = m.timestamp or last
        stamps.append(last)
    current = item.agent or (item.switches[-1].to_agent if item.switches else None)
    cid = conn.execute(
        INSERT_CONVERSATION_SQL,
        {
            "sid": item.conversation,
            "uid": owner,
            "agent": current,
            "meta": json.dumps(item.metadata),
            "count": len(item.messages),
            "last": max(stamps),
            "first": item.created_at or min(stamps),
        },
    ).scalar_one()
    turns: list[Turn] = []
    for pos, (m, at) in enumerate(zip(item.messages, stamps, strict=True)):
        meta = {**m.metadata, **({"speaker": m.speaker} if m.speaker else {})}
        mid = conn.execute(
            INSERT_MESSAGE_SQL,
            {
                "cid": cid,
                "uid": owner,
                "role": m.role,
                "content": m.content,
                "agent": m.agent,
                "meta": json.dumps(meta),
                "lc": m.id or f"import-{pos}",
                "at": at,
            },
        ).scalar_one()
        turns.append(Turn(mid, m.role, m.content, at, m.speaker))
    for s in item.switches:
        conn.execute(
            INSERT_SWITCH_SQL,
            {
                "cid": cid,
                "from_agent": s.from_agent,
                "to_agent": s.to_agent,
                "reason": s.reason,
                "at": s.timestamp or stamps[0],
            },
        )
    report.indexed += index_turns(conn, cid, owner, turns)
    report.messages += len(turns)
    report.switches += len(item.switches)
