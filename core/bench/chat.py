"""``agentry bench chat``: what the platform costs per turn, and turns/s under concurrency.

The model is the local scripted server answering instantly, so what is measured
is Agentry's own work per turn: the turn lock, checkpoints in PostgreSQL,
storing and indexing messages, the router's bookkeeping. The baseline is the
same compiled graph on LangGraph's in-memory saver calling the same server
directly, measured in the same run.
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from langgraph.checkpoint.memory import InMemorySaver
from pydantic import SecretStr
from sqlalchemy import text

from config import Settings
from core.auth.users import Principal, create_user
from core.bench.datasets import load_dialogues
from core.bench.metrics import percentile
from core.bench.model_server import model_server
from core.conversations.store import create_conversation
from core.db.engine import Database
from core.registry.specs import AgentSpec
from core.registry.sync import sync_registry
from core.runtime.context import TurnContext
from core.runtime.graph import GraphBuilder
from core.runtime.router import register_default_model
from core.runtime.service import AgentRuntime
from core.runtime.turns import run_turn

AGENT = "assistant"


@dataclass
class Bench:
    db: Database
    settings: Settings
    model_url: str
    principal: Principal
    runtime: AgentRuntime

    def new_conversation(self) -> uuid.UUID:
        with self.db.engine.begin() as conn:
            return uuid.UUID(str(create_conversation(conn, self.principal, AGENT).id))

    def platform_turn(self, conversation_id: uuid.UUID, content: str) -> dict[str, Any]:
        *_, final = run_turn(self.runtime, self.principal, conversation_id, content)
        return final.data

    def baseline(self) -> Callable[[str, str], None]:
        """The same graph, in memory, calling the scripted model directly."""
        client = ChatOpenAI(
            base_url=self.model_url,
            api_key=SecretStr("not-needed"),
            model="scripted",
            max_retries=0,
        )

        def call(
            spec: AgentSpec, prompt: list[BaseMessage], tools: list[BaseTool], turn: TurnContext
        ) -> AIMessage:
            reply = (client.bind_tools(tools) if tools else client).invoke(prompt)
            assert isinstance(reply, AIMessage)
            return reply

        snapshot = self.runtime.compiled().snapshot
        graph = GraphBuilder(snapshot, self.settings.project_dir, call).compile(InMemorySaver())
        context = TurnContext(
            self.db, self.settings, self.principal, uuid.uuid4(), self.principal.id
        )

        def turn(thread: str, content: str) -> None:
            graph.invoke(
                {"messages": [HumanMessage(content)], "agent": AGENT},
                {"configurable": {"thread_id": thread}},
                context=context,
            )

        return turn


def measure_overhead(bench: Bench, dialogues: list[list[str]], turns: int) -> dict[str, Any]:
    """p50/p95 of a platform turn and of the in-memory baseline over the same dialogues.

    Each dialogue is replayed in a fresh conversation (and a fresh baseline thread),
    turn by turn, alternating baseline and platform so both see the same history
    length and the same machine load.
    """
    baseline_turn = bench.baseline()
    warm = bench.new_conversation()
    for text_ in dialogues[0][:3]:  # connections, compiled graph, HTTP keep-alive
        baseline_turn(f"warm-{warm}", text_)
        bench.platform_turn(warm, text_)
    base_ms: list[float] = []
    plat_ms: list[float] = []
    base_cpu: list[float] = []
    plat_cpu: list[float] = []
    for dialogue in dialogues:
        thread, conversation = f"baseline-{uuid.uuid4()}", bench.new_conversation()
        for text_ in dialogue:
            if len(plat_ms) >= turns:
                break
            started, cpu = time.perf_counter(), time.process_time()
            baseline_turn(thread, text_)
            base_ms.append((time.perf_counter() - started) * 1000)
            base_cpu.append((time.process_time() - cpu) * 1000)
            started, cpu = time.perf_counter(), time.process_time()
            bench.platform_turn(conversation, text_)
            plat_ms.append((time.perf_counter() - started) * 1000)
            plat_cpu.append((time.process_time() - cpu) * 1000)
    b50, p50 = statistics.median(base_ms), statistics.median(plat_ms)
    return {
        "turns": len(plat_ms),
        "baseline_inmemory_ms": {"p50": round(b50, 2), "p95": round(percentile(base_ms, 95), 2)},
        "platform_ms": {"p50": round(p50, 2), "p95": round(percentile(plat_ms, 95), 2)},
        "overhead_ms": {
            "p50": round(p50 - b50, 2),
            "p95": round(percentile(plat_ms, 95) - percentile(base_ms, 95), 2),
        },
        "ratio_p50": round(p50 / b50, 2) if b50 else None,
        # CPU of this process per turn (both include the in-process scripted model): the
        # part of the overhead that does not depend on how loaded the machine is.
        "cpu_ms_p50": {
            "baseline": round(statistics.median(base_cpu), 2),
            "platform": round(statistics.median(plat_cpu), 2),
        },
        "load_average": round(os.getloadavg()[0], 2),
        "goal_overhead_p50_ms": 15,
    }


def measure_concurrency(bench: Bench, dialogues: list[list[str]], sessions: int) -> dict[str, Any]:
    """``sessions`` clients at once, each replaying its share of the dialogues (one
    conversation per dialogue); then checks that every message arrived."""
    chosen = (
        dialogues
        if len(dialogues) >= sessions
        else [dialogues[i % len(dialogues)] for i in range(sessions)]
    )
    conversations = [bench.new_conversation() for _ in chosen]
    errors: list[str] = []

    def replay(session: int) -> int:
        done = 0
        for index in range(session, len(chosen), sessions):
            for utterance in chosen[index]:
                try:
                    bench.platform_turn(conversations[index], utterance)
                    done += 1
                except Exception as exc:  # counted and reported, never hidden
                    errors.append(f"{type(exc).__name__}: {exc}")
        return done

    started = time.perf_counter()
    with ThreadPoolExecutor(max_workers=sessions) as pool:
        turns = sum(pool.map(replay, range(sessions)))
    elapsed = time.perf_counter() - started
    expected = 2 * sum(len(d) for d in chosen)
    with bench.db.engine.connect() as conn:
        stored = conn.execute(
            text("SELECT count(*) FROM messages WHERE conversation_id = ANY(:ids)"),
            {"ids": conversations},
        ).scalar_one()
        counted = conn.execute(
            text("SELECT coalesce(sum(messages_count), 0) FROM conversations WHERE id = ANY(:ids)"),
            {"ids": conversations},
        ).scalar_one()
    return {
        "sessions": sessions,
        "dialogues": len(chosen),
        "turns": turns,
        "seconds": round(elapsed, 2),
        "turns_per_second": round(turns / elapsed, 1) if elapsed else None,
        "messages_expected": expected,
        "messages_stored": int(stored),
        "messages_counted": int(counted),
        "lost_messages": expected - int(stored),
        "errors": errors[:5],
    }


def run_chat_bench(
    db: Database, settings: Settings, *, turns: int, sessions: int, dialogues: int
) -> dict[str, Any]:
    """Both measurements on ``db`` (a database of the benchmark's own)."""
    lines = load_dialogues(settings.datasets_dir, max(dialogues, sessions, turns))
    with model_server() as model_url:
        local = settings.model_copy(
            update={"llm_base_url": model_url, "llm_model": "scripted", "llm_api_key": None}
        )
        with db.engine.begin() as conn:
            sync_registry(conn, local.project_dir)
            register_default_model(conn, local)
            principal, _ = create_user(conn, f"bench-{uuid.uuid4().hex[:8]}@bench.invalid")
        runtime = AgentRuntime(db, local)
        try:
            bench = Bench(db, local, model_url, principal, runtime)
            overhead = measure_overhead(bench, lines, turns)
            concurrency = measure_concurrency(bench, lines[: max(dialogues, sessions)], sessions)
            from core.bench.recall_cost import measure_recall_cost  # it builds on this module

            questions = [d[-1] for d in lines[-min(turns, 50) :]]
            recall = measure_recall_cost(db, local, principal, questions, AGENT)
        finally:
            runtime.close()
    return {
        "benchmark": "chat",
        "overhead": overhead,
        "concurrency": concurrency,
        "recall": recall,
    }
