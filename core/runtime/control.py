"""How a turn is steered: resuming a paused turn (``Command``) and breakpoints.

:class:`TurnControl` is plain JSON (runs keep it with their other arguments and a
worker hands it back to :func:`core.runtime.turns.run_turn`).
"""

from __future__ import annotations

import re
import uuid
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from langchain_core.messages import BaseMessage, convert_to_messages
from langgraph.graph import END
from langgraph.types import Command, StateSnapshot
from sqlalchemy import Connection, text

from core.errors import DecisionConflict, ValidationFailed
from core.runtime.approval import APPROVE_NODE, is_approval, parse_decision

PENDING_SQL = text("SELECT pending_interrupts FROM conversations WHERE id = :id")
INTERRUPT_ID = re.compile(r"[0-9a-f]{32}")  # xxh3-128 hex digests


@dataclass(frozen=True)
class TurnControl:
    """Options of one turn beyond its message.

    Attributes:
        resume: the answer to the pending interrupt, or ``{interrupt id: answer}`` for
            several; None: no answer.
        update: state to write before going on (``{"messages": [...]}``).
        goto: node(s) to go to next.
        interrupt_before: pause before these nodes (``"*"``: all) in this turn.
        interrupt_after: pause after these nodes in this turn.
    """

    resume: Any = None
    update: dict[str, Any] | None = None
    goto: list[str] = field(default_factory=list)
    interrupt_before: list[str] = field(default_factory=list)
    interrupt_after: list[str] = field(default_factory=list)

    @property
    def is_command(self) -> bool:
        return self.resume is not None or bool(self.update) or bool(self.goto)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> TurnControl | None:
        return cls(**data) if data else None


def check_nodes(control: TurnControl, nodes: set[str]) -> None:
    """422 naming the first node of ``goto``/``interrupt_*`` the graph does not have."""
    for key, names, allowed in (
        ("interrupt_before", control.interrupt_before, nodes | {"*"}),
        ("interrupt_after", control.interrupt_after, nodes | {"*"}),
        ("command.goto", control.goto, nodes | {END}),
    ):
        for name in names:
            if name not in allowed:
                known = ", ".join(sorted(nodes))
                raise ValidationFailed(f"{key}: no node {name!r} (nodes: {known})")


def update_messages(control: TurnControl) -> list[BaseMessage]:
    """The messages of ``command.update`` (each with an id, so it is stored once).

    Raises:
        ValidationFailed: other keys than ``messages``, or messages that do not convert.
    """
    update = control.update or {}
    extra = sorted(set(update) - {"messages"})
    if extra:
        raise ValidationFailed(f"command.update.{extra[0]}: only messages can be updated")
    raw = update.get("messages") or []
    try:
        messages = convert_to_messages(raw if isinstance(raw, list) else [raw])
    except (ValueError, NotImplementedError) as exc:
        raise ValidationFailed(f"command.update.messages: {exc}") from None
    for message in messages:
        if not message.id:
            message.id = f"s-{uuid.uuid4()}"
    return messages


def pending_interrupts(state: StateSnapshot) -> list[dict[str, Any]]:
    """The interrupts a paused thread waits on: id, value, node and task."""
    return [
        {"id": i.id, "value": i.value, "node": task.name, "task": task.id}
        for task in state.tasks
        for i in task.interrupts
    ]


def is_resume_map(resume: Any) -> bool:
    """``{interrupt id: answer}`` (LangGraph's rule: every key is an interrupt id)."""
    return (
        isinstance(resume, dict)
        and bool(resume)
        and all(isinstance(k, str) and INTERRUPT_ID.fullmatch(k) for k in resume)
    )


def check_resume(control: TurnControl, pending: list[dict[str, Any]] | None) -> None:
    """Refuse a resume that does not fit what the turn waits on, before anything runs.

    Args:
        control: the turn's control.
        pending: the conversation's pending interrupts (None: it is not paused).

    Raises:
        DecisionConflict: a resume while nothing waits for one.
        ValidationFailed: an answer for an unknown interrupt, one answer for several,
            or an approval answered with something else than a decision.
    """
    if control.resume is None:
        return
    if pending is None:
        raise DecisionConflict("nothing to resume: the conversation is not waiting for a decision")
    if not pending:
        return  # a breakpoint: any resume goes on
    by_id = {p["id"]: p for p in pending}
    answers: dict[str, Any]
    if is_resume_map(control.resume):
        unknown = sorted(set(control.resume) - set(by_id))
        if unknown:
            raise ValidationFailed(f"resume: no pending interrupt {unknown[0]!r}")
        answers = control.resume
    elif len(pending) > 1:
        raise ValidationFailed(
            f"resume: {len(pending)} interrupts are pending; answer them by id"
            f" ({{{', '.join(repr(i) for i in by_id)}: ...}})"
        )
    else:
        answers = {pending[0]["id"]: control.resume}
    for interrupt_id, answer in answers.items():
        if by_id[interrupt_id]["node"] == APPROVE_NODE or is_approval(by_id[interrupt_id]["value"]):
            parse_decision(answer, where=f"resume[{interrupt_id!r}]")


def command(control: TurnControl, messages: list[BaseMessage], agent: str) -> Command[Any]:
    """The LangGraph ``Command`` the turn resumes with (an update or goto also names the
    conversation's agent: a thread that never ran has none in its state yet)."""
    goto: Any = control.goto[0] if len(control.goto) == 1 else list(control.goto)
    update: dict[str, Any] | None = None
    if messages or control.goto:
        update = {"agent": agent} | ({"messages": messages} if messages else {})
    return Command(resume=control.resume, update=update, goto=goto)


def admit(
    control: TurnControl, pending: list[dict[str, Any]] | None, content: str | None, nodes: set[str]
) -> None:
    """Refuse what does not fit the conversation's pause, before anything is written
    (run_turn, and whoever queues a turn for later).

    Args:
        control: the turn's control.
        pending: the conversation's ``pending_interrupts``.
        content: the turn's message.
        nodes: the graph's nodes.

    Raises:
        ValidationFailed: unknown nodes or interrupts, a bad answer, message and command.
        DecisionConflict: a message, or a plain resume, while a decision is awaited.
    """
    check_nodes(control, nodes - {"__start__"})
    update_messages(control)  # only to check them: the turn converts them again
    if content is not None and control.is_command:
        raise ValidationFailed("command: send either a message or a command, not both")
    check_resume(control, pending)
    if pending is None or control.is_command:
        return
    if content is not None or pending:
        ids = ", ".join(p["id"] for p in pending) or "a breakpoint"
        raise DecisionConflict(
            f"the conversation is waiting for a decision ({ids}): resume it first"
            " (POST /v1/conversations/{id}/resume with a decision, or a run with command.resume)"
        )


def pending_of(conn: Connection, conversation_id: uuid.UUID) -> list[dict[str, Any]] | None:
    """The conversation's ``pending_interrupts`` (None: it waits for nothing)."""
    value: list[dict[str, Any]] | None = conn.execute(PENDING_SQL, {"id": conversation_id}).scalar()
    return value


def for_retry(control: TurnControl, pending: list[dict[str, Any]] | None) -> TurnControl:
    """The control of a queued turn tried again after its process died.

    The first try clears the pause before it resumes: when nothing waits any more, the
    command was taken (the checkpoint has it, or asks again) and the turn only completes.
    """
    if pending is not None or not control.is_command:
        return control
    return replace(control, resume=None, update=None, goto=[])
