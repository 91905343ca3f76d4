"""An Agent Protocol run's ``command``, ``interrupt_before`` and ``interrupt_after``
as the :class:`~core.runtime.control.TurnControl` of its turn."""

from __future__ import annotations

from typing import Any

from core.errors import ValidationFailed
from core.protocols.threads import input_text
from core.runtime.control import TurnControl

COMMAND_KEYS = {"resume", "update", "goto"}


def _names(value: Any, where: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"{where}: a node name or a list of node names ('*': all)")
    return list(value)


def _update(value: Any) -> dict[str, Any] | None:
    if value is None:
        return None
    if isinstance(value, list) and all(isinstance(p, list) and len(p) == 2 for p in value):
        value = {k: v for k, v in value}  # the (key, value) pairs form
    if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
        raise ValidationFailed("command.update: an object of state keys (messages)")
    return value


def run_control(body: dict[str, Any]) -> TurnControl | None:
    """The control of a run body (``command``, ``interrupt_before``, ``interrupt_after``).

    Returns:
        None when the run uses none of them.

    Raises:
        ValidationFailed: a malformed option, named.
    """
    raw = body.get("command")
    before = _names(body.get("interrupt_before"), "interrupt_before")
    after = _names(body.get("interrupt_after"), "interrupt_after")
    if raw is None and not before and not after:
        return None
    if raw is not None and not isinstance(raw, dict):
        raise ValidationFailed("command: an object with resume, update and/or goto")
    command = raw or {}
    unknown = sorted(set(command) - COMMAND_KEYS)
    if unknown:
        raise ValidationFailed(f"command.{unknown[0]}: not a command key (resume, update, goto)")
    if isinstance(command.get("goto"), dict) or (
        isinstance(command.get("goto"), list) and any(isinstance(g, dict) for g in command["goto"])
    ):
        raise ValidationFailed("command.goto: only node names are supported (no Send)")
    control = TurnControl(
        resume=command.get("resume"),
        update=_update(command.get("update")),
        goto=_names(command.get("goto"), "command.goto"),
        interrupt_before=before,
        interrupt_after=after,
    )
    if raw is not None and not control.is_command:
        raise ValidationFailed("command: give resume, update or goto")
    return control


def run_input(graph_input: Any, control: TurnControl | None) -> str | None:
    """The user's message of a run; a command comes with no input (or ``{}``, as Agent
    Chat UI sends it).

    Raises:
        ValidationFailed: a message and a command together, or a malformed input.
    """
    if control is not None and control.is_command:
        if graph_input in (None, {}, {"messages": []}):
            return None
        raise ValidationFailed("input: a run with a command takes no input")
    return input_text(graph_input)
