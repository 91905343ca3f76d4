"""Compiling the registry into one LangGraph tool-calling graph.

Every active agent is a node (``agent:<name>``) that calls a model with the
agent's system prompt and tools; one ``tools`` node runs the calls. A call of a
tool the agent lists in ``approve_tools`` first goes to an ``approve`` task (one
per call, so several wait side by side and are resumed together by interrupt
id); the tools node then runs it as decided. Handoff
tools change ``state["agent"]``, and the graph routes to that agent's node, so a
handoff continues in the same turn on the same checkpointed thread.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Annotated, Any, NotRequired

from langchain_core.messages import AIMessage, AnyMessage, BaseMessage, SystemMessage, ToolMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.errors import GraphBubbleUp
from langgraph.graph import END, START, StateGraph
from langgraph.graph.message import add_messages
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Send, interrupt
from typing_extensions import TypedDict  # pydantic (state JSON schemas) needs it on 3.11

from core.errors import ValidationFailed
from core.memory.prompting import block_tools, memory_prompt
from core.registry.access import may_use
from core.registry.snapshot import RegistrySnapshot
from core.registry.specs import AgentSpec
from core.registry.tools import build_tool, resolve_module_path
from core.runtime.approval import APPROVE_NODE, approval_request, parse_decision, refusal
from core.runtime.context import TurnContext, in_turn
from core.runtime.handoffs import handoff_target, handoff_tool, record_switch
from core.runtime.tool_providers import provided_tools

log = logging.getLogger(__name__)

TOOLS_NODE = "tools"


def _decisions(old: dict[str, Any] | None, new: dict[str, Any] | None) -> dict[str, Any]:
    """Approval decisions by tool call id; the tools node clears them (None) once used."""
    return {} if new is None else {**(old or {}), **new}


class AgentState(TypedDict):
    messages: Annotated[list[AnyMessage], add_messages]
    agent: str
    decisions: NotRequired[Annotated[dict[str, Any], _decisions]]


class ApprovalRequest(TypedDict):
    """What an ``approve`` task is sent: the agent and one of its tool calls."""

    agent: str
    call: dict[str, Any]


# (agent, prompt, tools, turn) -> the model's reply
ModelCall = Callable[[AgentSpec, list[BaseMessage], list[BaseTool], TurnContext], AIMessage]


def agent_node(name: str) -> str:
    return f"agent.{name}"


def load_registry_tools(snapshot: RegistrySnapshot, project_dir: Path) -> dict[str, BaseTool]:
    """Import every active tool module; a broken one is logged and left out."""
    loaded: dict[str, BaseTool] = {}
    for row in snapshot.tools.values():
        try:
            loaded[row.name] = build_tool(resolve_module_path(project_dir, row.module_path))
        except ValidationFailed as exc:
            log.error("tool %s is unusable: %s", row.name, exc)
    return loaded


def _task_id(runtime: Runtime[TurnContext]) -> str:
    info = getattr(runtime, "execution_info", None)
    return info.task_id if info is not None else uuid.uuid4().hex


class GraphBuilder:
    """Builds the graph of one registry snapshot."""

    def __init__(self, snapshot: RegistrySnapshot, project_dir: Path, model_call: ModelCall):
        self.snapshot = snapshot
        self.model_call = model_call
        self.registry_tools = load_registry_tools(snapshot, project_dir)

    def tools_for(
        self, spec: AgentSpec, turn: TurnContext, *, with_blocks: bool = True
    ) -> list[BaseTool]:
        """The agent's registry tools, the providers' tools and its handoff tools
        (and the memory-block tools: offered when it has blocks, runnable always)."""
        tools = [self.registry_tools[n] for n in spec.tools if n in self.registry_tools]
        tools += provided_tools(turn)
        if with_blocks:
            tools += block_tools(spec.name)
        for target in spec.handoffs:
            other = self.snapshot.agents.get(target)
            if other is not None and may_use(turn.principal, other):
                tools.append(handoff_tool(other))
        return tools

    def _agent(self, spec: AgentSpec) -> Callable[..., dict[str, Any]]:
        def call(state: AgentState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
            turn = runtime.context
            memory, blocks = memory_prompt(turn, spec.name, spec.recall, state["messages"])
            prompt: list[BaseMessage] = [
                SystemMessage(spec.system_prompt + memory),
                *state["messages"],
            ]
            tools = self.tools_for(spec, turn, with_blocks=blocks)
            reply = self.model_call(spec, prompt, tools, turn)
            reply.response_metadata["agentry_agent"] = spec.name
            # Task ids are deterministic: a step re-run after a crash makes the same message
            # id, so the message store replaces instead of duplicating.
            reply.id = f"m-{_task_id(runtime)}"
            return {"messages": [reply]}

        return call

    def _tools(self, state: AgentState, runtime: Runtime[TurnContext]) -> dict[str, Any]:
        turn = runtime.context
        last = state["messages"][-1]
        assert isinstance(last, AIMessage)
        agent = state["agent"]
        available = {t.name: t for t in self.tools_for(self.snapshot.agents[agent], turn)}
        approve = set(self.snapshot.agents[agent].approve_tools)
        decisions = state.get("decisions") or {}
        results: list[ToolMessage] = []
        for call in last.tool_calls:
            name, call_id = call["name"], call["id"] or ""
            tool = available.get(name)
            target = handoff_target(name)
            args = call["args"]
            note = ""
            if name in approve and tool is not None:
                # No decision (e.g. a Command(goto="tools") past the approval) is a refusal.
                decision = decisions.get(call_id) or {"type": "ignore", "args": None}
                if decision["type"] in ("response", "ignore"):
                    results.append(refusal(call, decision))
                    continue
                if decision["type"] == "edit":
                    args = decision["args"]
                    note = f"(run with arguments edited by the person: {args}) "
            if tool is None:
                results.append(
                    ToolMessage(
                        f"error: no tool named {name}",
                        tool_call_id=call_id,
                        name=name,
                        status="error",
                    )
                )
            elif target is not None:
                reason = str(call["args"].get("reason") or "")
                with turn.db.engine.begin() as conn:
                    record_switch(conn, turn.conversation_id, agent, target, reason)
                results.append(
                    ToolMessage(
                        f"transferred to {target}",
                        tool_call_id=call_id,
                        name=name,
                        artifact={"handoff": {"from": agent, "to": target, "reason": reason}},
                    )
                )
                agent = target
            else:
                result = self._run(tool, args, call_id, turn)
                if note:
                    result.content = note + result.text
                results.append(result)
        task = _task_id(runtime)
        for result in results:
            result.id = f"t-{task}-{result.tool_call_id}"
        update: dict[str, Any] = {"messages": results}
        if decisions:
            update["decisions"] = None
        if agent != state["agent"]:
            update["agent"] = agent
        return update

    @staticmethod
    def _run(tool: BaseTool, args: dict[str, Any], call_id: str, turn: TurnContext) -> ToolMessage:
        try:
            with in_turn(turn):
                result = tool.invoke(args)
        except GraphBubbleUp:
            raise  # interrupt() in the tool: the turn pauses here
        except Exception as exc:  # the model sees the error and may recover
            return ToolMessage(
                f"error: {type(exc).__name__}: {exc}",
                tool_call_id=call_id,
                name=tool.name,
                status="error",
            )
        content = result if isinstance(result, str) else str(result)
        return ToolMessage(content or "(no output)", tool_call_id=call_id, name=tool.name)

    def _route(self, state: AgentState) -> str:
        agent = state.get("agent")
        if agent not in self.snapshot.agents:
            raise ValidationFailed(f"agent {agent!r} is not active")
        return agent_node(agent)

    @staticmethod
    def _after_model(spec: AgentSpec) -> Callable[[AgentState], str | list[Send]]:
        def route(state: AgentState) -> str | list[Send]:
            messages = state["messages"]
            # Empty after a rollback of a thread's first run (its state is cleared).
            last = messages[-1] if messages else None
            if not isinstance(last, AIMessage) or not last.tool_calls:
                return END
            asks = [
                Send(APPROVE_NODE, {"agent": spec.name, "call": call})
                for call in last.tool_calls
                if call["name"] in spec.approve_tools
            ]
            return asks or TOOLS_NODE

        return route

    @staticmethod
    def _approve(state: ApprovalRequest) -> dict[str, Any]:
        """One approval (a Send task per call): pause until the person decides."""
        call = state["call"]
        answer = interrupt(approval_request(state["agent"], call))  # type: ignore[arg-type]
        try:
            decision = parse_decision(answer)
        except ValidationFailed:
            # run_turn checks answers before resuming; anything else is no approval.
            decision = {"type": "ignore", "args": None}
        return {"decisions": {call["id"] or "": decision}}

    def compile(
        self, checkpointer: BaseCheckpointSaver[Any]
    ) -> CompiledStateGraph[Any, Any, Any, Any]:
        """The compiled graph, checkpointed by ``checkpointer``."""
        graph = StateGraph(AgentState, context_schema=TurnContext)
        nodes: dict[Hashable, str] = {agent_node(n): agent_node(n) for n in self.snapshot.agents}
        for name, spec in self.snapshot.agents.items():
            graph.add_node(agent_node(name), self._agent(spec))
            graph.add_conditional_edges(
                agent_node(name),
                self._after_model(spec),
                {TOOLS_NODE: TOOLS_NODE, APPROVE_NODE: APPROVE_NODE, END: END},
            )
        graph.add_node(TOOLS_NODE, self._tools)
        graph.add_node(APPROVE_NODE, self._approve, input_schema=ApprovalRequest)
        graph.add_edge(APPROVE_NODE, TOOLS_NODE)
        graph.add_conditional_edges(START, self._route, nodes)
        graph.add_conditional_edges(TOOLS_NODE, self._route, nodes)
        return graph.compile(checkpointer=checkpointer)
