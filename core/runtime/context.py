"""What a running turn knows about itself, visible to tools and tool providers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from config import Settings
from core.auth.users import Principal
from core.db.engine import Database


@dataclass(frozen=True)
class TurnContext:
    """The LangGraph run context of one turn (never checkpointed).

    Attributes:
        db: the database (tools open their own short connections).
        settings: the process settings.
        principal: the user the turn runs for; tools act with their rights.
        conversation_id: the conversation (= LangGraph thread id).
        owner_id: the conversation's user (differs from the principal for an admin).
    """

    db: Database
    settings: Settings
    principal: Principal
    conversation_id: uuid.UUID
    owner_id: uuid.UUID

    @property
    def user_id(self) -> uuid.UUID:
        """The conversation's owner: what tools search and write is scoped to them."""
        return self.owner_id


_current: ContextVar[TurnContext | None] = ContextVar("agentry_turn", default=None)


def current_turn() -> TurnContext:
    """The turn a tool is running in.

    Raises:
        RuntimeError: called outside a turn (a tool invoked directly).
    """
    turn = _current.get()
    if turn is None:
        raise RuntimeError("this tool needs a running turn (call it through the runtime)")
    return turn


@contextmanager
def in_turn(turn: TurnContext) -> Iterator[None]:
    """Make ``turn`` the current turn for the code in the block (tool execution)."""
    token = _current.set(turn)
    try:
        yield
    finally:
        _current.reset(token)
