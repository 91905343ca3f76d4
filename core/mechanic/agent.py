"""The mechanic agent: a natural-language instruction becomes a spec through an LLM tool call.

The model must call ``propose_schema_change`` whose input schema is :class:`ChangeSpec`;
its arguments are validated like any other spec. The model never writes code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from langchain_core.messages import HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from config import Settings
from core.errors import ServiceUnavailable, ValidationFailed
from core.mechanic.spec import ChangeSpec, parse_spec

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


def chat_model(settings: Settings) -> ChatOpenAI:
    """The configured default model, or a 503 that says how to configure one."""
    if not settings.llm_base_url or not settings.llm_model:
        raise ServiceUnavailable(
            "no LLM is configured for the mechanic agent: set AGENTRY_LLM_BASE_URL and "
            "AGENTRY_LLM_MODEL (and AGENTRY_LLM_API_KEY), or send a spec instead of an instruction"
        )
    return ChatOpenAI(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=SecretStr(settings.llm_api_key or "not-needed"),
        timeout=60,
        max_retries=1,
    )


def spec_from_instruction(settings: Settings, instruction: str) -> ChangeSpec:
    """Ask the model for a spec.

    Raises:
        ServiceUnavailable: no model configured, or it could not be reached (503).
        ValidationFailed: the model did not propose a valid spec (422).
    """
    model = chat_model(settings).bind_tools([spec_tool()], tool_choice=TOOL_NAME)
    try:
        reply = model.invoke([SystemMessage(system_prompt(settings)), HumanMessage(instruction)])
    except Exception as exc:
        raise ServiceUnavailable(f"the mechanic's model failed: {exc}") from exc
    calls = [c for c in getattr(reply, "tool_calls", []) if c["name"] == TOOL_NAME]
    if not calls:
        raise ValidationFailed(
            f"the model proposed no schema change (it answered: {str(reply.content)[:200]!r})"
        )
    return parse_spec(calls[0]["args"])
