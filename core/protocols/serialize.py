"""LangGraph objects as the JSON the Agent Protocol sends (what ``langgraph_sdk`` parses)."""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

from langchain_core.messages import BaseMessage
from langgraph.types import Interrupt, StateSnapshot
from pydantic import BaseModel


def _default(obj: Any) -> Any:
    if isinstance(obj, BaseModel):
        return obj.model_dump()
    if isinstance(obj, (uuid.UUID, datetime)):
        return str(obj)
    if isinstance(obj, (set, tuple)):
        return list(obj)
    return repr(obj)


def jsonable(value: Any) -> Any:
    """``value`` with every LangChain message, UUID and date turned into JSON types."""
    return json.loads(json.dumps(value, default=_default))


def message_json(message: BaseMessage) -> dict[str, Any]:
    """A message as LangGraph servers send it (``type`` human/ai/tool, ``id``, ...)."""
    data: dict[str, Any] = jsonable(message.model_dump())
    return data


def values_json(values: dict[str, Any] | Any) -> dict[str, Any]:
    """The graph state (``messages``, ``agent``) as JSON."""
    if not isinstance(values, dict):
        return {}
    out: dict[str, Any] = {}
    for key, value in values.items():
        if key == "messages":
            out[key] = [message_json(m) for m in value]
        else:
            out[key] = jsonable(value)
    return out


def checkpoint_json(config: Any, thread_id: str) -> dict[str, Any] | None:
    if not config:
        return None
    conf = config.get("configurable", {})
    return {
        "thread_id": str(conf.get("thread_id", thread_id)),
        "checkpoint_ns": conf.get("checkpoint_ns", ""),
        "checkpoint_id": conf.get("checkpoint_id"),
        "checkpoint_map": conf.get("checkpoint_map"),
    }


def state_json(snapshot: StateSnapshot, thread_id: str) -> dict[str, Any]:
    """A ``ThreadState``: values, next nodes, checkpoint, metadata, parent, tasks."""
    checkpoint = checkpoint_json(snapshot.config, thread_id) or {
        "thread_id": thread_id,
        "checkpoint_ns": "",
        "checkpoint_id": None,
        "checkpoint_map": None,
    }
    return {
        "values": values_json(snapshot.values),
        "next": list(snapshot.next),
        "checkpoint": checkpoint,
        "metadata": jsonable(snapshot.metadata or {}),
        "created_at": snapshot.created_at,
        "parent_checkpoint": checkpoint_json(snapshot.parent_config, thread_id),
        "tasks": [
            {
                "id": task.id,
                "name": task.name,
                "error": task.error if isinstance(task.error, str) else None,
                "interrupts": [interrupt_json(i) for i in task.interrupts],
                "checkpoint": None,
                "state": None,
                "result": jsonable(task.result) if task.result is not None else None,
            }
            for task in snapshot.tasks
        ],
        "interrupts": [interrupt_json(i) for i in snapshot.interrupts],
    }


def interrupt_json(interrupt: Interrupt) -> dict[str, Any]:
    return {"value": jsonable(interrupt.value), "id": interrupt.id}
