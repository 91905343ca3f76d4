"""The mechanic agent: a natural-language instruction becomes a spec through an LLM tool call.

The model must call ``propose_schema_change`` whose input schema is :class:`ChangeSpec`;
its arguments are validated like any other spec. The model never writes code.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage, SystemMessage

from config import Settings
from core.errors import ModelUnavailableError, ServiceUnavailable, ValidationFailed
from core.mechanic.spec import ChangeSpec, parse_spec
from core.nul import reject_nul
from core.runtime.router import HOW_TO_CONFIGURE, ModelRouter

TOOL_NAME = "propose_schema_change"
FALLBACK_PROMPT = (
    "You are Agentry's mechanic. Turn the admin's request into a schema change spec by "
    f"calling {TOOL_NAME}. You never write code."
)


def spec_tool() -> dict[str, Any]:
    """The OpenAI tool definition whose parameters are the spec's JSON schema."""
    return {
        "type": "function",
        "function": {
            "name": TOOL_NAME,
            "description": (
                "Propose one schema change: add_entity, add_fields, add_index or retire_entity. "
                "Field types: string (max_length), text, integer, bigint, numeric, boolean, date, "
                "timestamptz, jsonb, reference (references: entity), enum (values), string_list."
            ),
            "parameters": ChangeSpec.model_json_schema(),
        },
    }


def system_prompt(settings: Settings) -> str:
    path = Path(settings.project_dir) / "agents" / "mechanic.yaml"
    try:
        data = yaml.safe_load(path.read_text())
        return str(data.get("system_prompt") or FALLBACK_PROMPT)
    except (OSError, yaml.YAMLError, AttributeError):
        return FALLBACK_PROMPT


def spec_from_instruction(
    router: ModelRouter, settings: Settings, instruction: str, *, user_id: uuid.UUID | None = None
) -> ChangeSpec:
    """Ask the model router for a spec (recorded in prompt_history like every call).

    Args:
        router: the process's model router (best usable model, fallback on failure).
        settings: where the mechanic's system prompt is read from.
        instruction: the admin's request in plain words.
        user_id: the admin, for the call record.

    Raises:
        ModelUnavailableError: no model configured (503, says how to configure one).
        ServiceUnavailable: every model failed (503).
        ValidationFailed: the model did not propose a valid spec (422).
    """
    reject_nul(instruction, "instruction")  # before a model is paid for it
    if not router.candidates():
        raise ModelUnavailableError(HOW_TO_CONFIGURE + "; or send a spec instead of an instruction")
    messages = [SystemMessage(system_prompt(settings)), HumanMessage(instruction)]
    try:
        reply = router.invoke(messages, [spec_tool()], tool_choice=TOOL_NAME, user_id=user_id)
    except ModelUnavailableError as exc:
        raise ServiceUnavailable(f"the mechanic's model failed: {exc.message}") from exc
    calls = [c for c in reply.tool_calls if c["name"] == TOOL_NAME]
    if not calls:
        raise ValidationFailed(
            f"the model proposed no schema change (it answered: {str(reply.content)[:200]!r})"
        )
    reject_nul(calls[0]["args"], "spec")
    return parse_spec(calls[0]["args"])
