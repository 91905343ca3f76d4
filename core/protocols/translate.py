"""Turn events -> Agent Protocol stream events (one translator per run).

Kept apart from run bookkeeping (:mod:`core.protocols.runs`): what a stream mode
means does not depend on where a run's record and events are kept.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from langchain_core.messages import (
    AIMessageChunk,
    BaseMessage,
    BaseMessageChunk,
    message_chunk_to_message,
)

from core.protocols.serialize import checkpoint_json, jsonable, message_json, values_json
from core.runtime.turns import TurnEvent

# "custom" carries what nodes write with LangGraph's stream writer; Agentry's nodes
# write nothing there, so it is valid and stays empty.
STREAM_MODES = (
    "values",
    "updates",
    "messages",
    "messages-tuple",
    "events",
    "tasks",
    "checkpoints",
    "debug",
    "custom",
)
# The modes LangGraph itself streams for a run (see core.runtime.turns, raw mode).
GRAPH_MODES = ("tasks", "checkpoints", "debug")
# Modes that need the models' tokens.
TOKEN_MODES = ("messages", "messages-tuple", "events")


def _checkpoint_payload(payload: dict[str, Any], thread_id: str) -> dict[str, Any]:
    """A checkpoint as LangGraph servers stream it: the config also as ``checkpoint``
    and ``parent_checkpoint`` (what clients fork from), values as JSON."""
    out = jsonable({k: v for k, v in payload.items() if k != "values"})
    out["values"] = values_json(payload.get("values"))
    out["checkpoint"] = checkpoint_json(payload.get("config"), thread_id)
    out["parent_checkpoint"] = checkpoint_json(payload.get("parent_config"), thread_id)
    return out


class Translator:
    """Turn events -> Agent Protocol stream events, for the modes asked for."""

    def __init__(
        self,
        run_id: uuid.UUID,
        thread_id: uuid.UUID,
        stream_modes: list[str],
        values: dict[str, Any],
    ) -> None:
        self.run_id = run_id
        self.thread_id = thread_id
        self.modes = set(stream_modes)
        self.messages: list[BaseMessage] = list(values.get("messages", []))
        self.agent: str | None = values.get("agent")
        self.streamed: set[str] = set()  # ids of messages sent as chunks
        self.partial: dict[str, BaseMessageChunk] = {}  # "messages": chunks so far, by id
        self.completed: set[str] = set()  # "messages": ids sent as messages/complete
        self.interrupts: list[dict[str, Any]] | None = None  # the run paused on these

    def values(self) -> dict[str, Any]:
        """The state as the run leaves it (with ``__interrupt__`` use :meth:`outcome`)."""
        state: dict[str, Any] = {"messages": self.messages}
        if self.agent is not None:
            state["agent"] = self.agent
        return values_json(state)

    def _merge(self, messages: list[BaseMessage]) -> None:
        # add_messages semantics: a known id replaces, a new one appends.
        index = {m.id: i for i, m in enumerate(self.messages)}
        for message in messages:
            if message.id in index:
                self.messages[index[message.id]] = message
            else:
                self.messages.append(message)

    def start(self, graph_input: Any) -> Iterator[tuple[str, Any]]:
        yield "metadata", {"run_id": str(self.run_id), "attempt": 1}
        if "events" in self.modes:
            yield "events", self._event("on_chain_start", "LangGraph", {"input": graph_input})

    def translate(self, event: TurnEvent) -> Iterator[tuple[str, Any]]:
        if event.type == "input":
            self.agent = event.data["agent"]
            self._merge([event.data["message"]])
            if "values" in self.modes:
                yield "values", self.values()
        elif event.type == "step":
            node, update = event.data["node"], event.data["update"]
            self._merge(list(update.get("messages", [])))
            if update.get("agent"):
                self.agent = str(update["agent"])
            if "updates" in self.modes:
                yield "updates", {node: values_json(update)}
            if "messages" in self.modes:
                for message in update.get("messages", []):
                    yield from self._complete(message)
            if "events" in self.modes:
                output = values_json(update)
                yield "events", self._event("on_chain_stream", node, {"chunk": output})
                yield "events", self._event("on_chain_end", node, {"output": output})
                yield (
                    "events",
                    self._event("on_chain_stream", "LangGraph", {"chunk": {node: output}}),
                )
            if "values" in self.modes:
                yield "values", self.values()
        elif event.type == "interrupt":
            # As LangGraph servers send a pause: "__interrupt__" in updates and values.
            self.interrupts = [
                {"value": i["value"], "id": i["id"]} for i in event.data["interrupts"]
            ]
            if "updates" in self.modes:
                yield "updates", {"__interrupt__": self.interrupts}
            if "values" in self.modes:  # [] at a breakpoint
                yield "values", {**self.values(), "__interrupt__": self.interrupts}
        elif event.type == "chunk":
            message, meta = event.data["message"], jsonable(event.data["metadata"])
            namespace = str(meta.get("langgraph_checkpoint_ns", ""))
            if isinstance(message, AIMessageChunk) and ":" in namespace:
                # The graph names a model's reply after its task (m-<task id>); chunks get
                # that id too, so clients merge them into the message the state holds.
                message = message.model_copy(update={"id": f"m-{namespace.rsplit(':', 1)[1]}"})
                self.streamed.add(str(message.id))
            elif message.id in self.streamed:
                return  # the complete message of chunks already sent
            if "messages" in self.modes:
                yield from self._partial(message, meta)
            if "messages-tuple" in self.modes:
                yield "messages", [message_json(message), meta]
            if "events" in self.modes:
                data = {"chunk": message_json(message)}
                yield (
                    "events",
                    self._event(
                        "on_chat_model_stream", str(meta.get("langgraph_node", "")), data, meta
                    ),
                )

        elif event.type == "graph":
            mode, chunk = event.data["mode"], event.data["chunk"]
            if mode not in self.modes:
                return
            thread = str(self.thread_id)
            if mode == "checkpoints":
                yield mode, _checkpoint_payload(chunk, thread)
            elif mode == "debug" and chunk.get("type") == "checkpoint":
                yield (
                    mode,
                    {**jsonable(chunk), "payload": _checkpoint_payload(chunk["payload"], thread)},
                )
            else:
                yield mode, jsonable(chunk)

    def _partial(self, message: BaseMessage, meta: dict[str, Any]) -> Iterator[tuple[str, Any]]:
        """``messages`` mode: a chunk is sent as the message so far (its metadata
        first, once); a whole message (a tool's result) as complete."""
        if not isinstance(message, BaseMessageChunk):
            yield from self._complete(message)
            return
        key = str(message.id)
        if key in self.partial:
            self.partial[key] = self.partial[key] + message
        else:
            self.partial[key] = message
            yield "messages/metadata", {key: {"metadata": meta}}
        yield "messages/partial", [message_json(message_chunk_to_message(self.partial[key]))]

    def _complete(self, message: BaseMessage) -> Iterator[tuple[str, Any]]:
        key = str(message.id)
        if key not in self.completed:
            self.completed.add(key)
            yield "messages/complete", [message_json(message)]

    def outcome(self) -> dict[str, Any]:
        """What ``wait``/``join`` answer: the values, and ``__interrupt__`` when paused."""
        if self.interrupts is not None:
            return {**self.values(), "__interrupt__": self.interrupts}
        return self.values()

    def finish(self) -> Iterator[tuple[str, Any]]:
        if "events" in self.modes:
            yield "events", self._event("on_chain_end", "LangGraph", {"output": self.values()})

    def _event(
        self, kind: str, name: str, data: dict[str, Any], meta: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        return {
            "event": kind,
            "name": name,
            "run_id": str(self.run_id),
            "data": data,
            "metadata": meta or {"thread_id": str(self.thread_id)},
            "tags": [],
            "parent_ids": [],
        }
