"""Tool approval (``approve_tools``): a person accepts, edits or refuses a tool call.

The request and the answer use the agent-inbox ``HumanInterrupt`` schema, so Agent
Chat UI shows its approve / edit / reject form unchanged:

- request: ``[{"action_request": {"action": name, "args": {...}}, "config":
  {"allow_accept", "allow_edit", "allow_respond", "allow_ignore"}, "description"}]``
- answer: ``{"type": "accept" | "edit" | "response" | "ignore", "args": ...}`` or a
  list holding one such answer (what Agent Chat UI sends).
"""

from __future__ import annotations

import json
from typing import Any

from langchain_core.messages import ToolCall, ToolMessage

from core.errors import ValidationFailed

APPROVE_NODE = "approve"
DECISION_TYPES = ("accept", "edit", "response", "ignore")
HOW_TO_ANSWER = (
    "answer a tool approval with {'type': 'accept'}, {'type': 'edit', 'args': {'args': {...}}},"
    " {'type': 'response', 'args': 'why not'} or {'type': 'ignore'} (or a list of one)"
)


def approval_request(agent: str, call: ToolCall) -> list[dict[str, Any]]:
    """What the approval interrupt shows the person (a list, as agent-inbox expects)."""
    return [
        {
            "action_request": {"action": call["name"], "args": call["args"]},
            "config": {
                "allow_accept": True,
                "allow_edit": True,
                "allow_respond": True,
                "allow_ignore": True,
            },
            "description": (
                f"{agent} wants to run {call['name']}({json.dumps(call['args'])}):"
                " accept, edit the arguments, or refuse with a reason."
            ),
        }
    ]


def is_approval(value: Any) -> bool:
    """Whether an interrupt's value is a ``HumanInterrupt`` (or a list of them)."""
    first = value[0] if isinstance(value, list) and value else value
    return isinstance(first, dict) and "action_request" in first and "config" in first


def parse_decision(answer: Any, where: str = "decision") -> dict[str, Any]:
    """The person's answer as ``{"type", "args"}``.

    Raises:
        ValidationFailed: not one of the answers a tool approval takes.
    """
    if isinstance(answer, list) and len(answer) == 1:
        answer = answer[0]
    if not isinstance(answer, dict) or answer.get("type") not in DECISION_TYPES:
        raise ValidationFailed(f"{where}: {HOW_TO_ANSWER}")
    kind, args = answer["type"], answer.get("args")
    if kind == "edit":
        # agent-inbox sends the edited ActionRequest ({"action", "args"}); plain args too.
        edited = args.get("args", args) if isinstance(args, dict) else None
        if not isinstance(edited, dict):
            raise ValidationFailed(f"{where}.args: an edit carries the new arguments as an object")
        return {"type": "edit", "args": edited}
    if kind == "response" and not isinstance(args, (str, type(None))):
        raise ValidationFailed(f"{where}.args: a response is the person's words (text)")
    return {"type": kind, "args": args if kind == "response" else None}


def refusal(call: ToolCall, decision: dict[str, Any]) -> ToolMessage:
    """What the model reads when the person did not let the tool run."""
    words = decision.get("args")
    content = f"The person refused to run {call['name']}."
    if words:
        content += f" They said: {words}"
    return ToolMessage(
        content,
        tool_call_id=call["id"] or "",
        name=call["name"],
        artifact={"approval": decision},
    )
