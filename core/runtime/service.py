"""One per process: the checkpointer pool, the model router and the compiled-graph cache."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.tools import BaseTool
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.graph.state import CompiledStateGraph
from psycopg.rows import dict_row
from psycopg_pool import ConnectionPool
from sqlalchemy import Connection

from config import Settings
from core.db.engine import Database
from core.registry.snapshot import RegistrySnapshot, fingerprint, load_snapshot
from core.registry.specs import AgentSpec
from core.runtime.context import TurnContext
from core.runtime.graph import GraphBuilder
from core.runtime.router import ModelRouter

Graph = CompiledStateGraph[Any, Any, Any, Any]


class _Unlocked:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True)
class CompiledRegistry:
    snapshot: RegistrySnapshot
    graph: Graph
    builder: GraphBuilder


class AgentRuntime:
    """Runs agent graphs for this process.

    The compiled graph is cached per registry fingerprint: before each turn one
    cheap query compares it, so a change made by any process (API, ``agentry
    agents sync``, another server) is used by the next turn without a restart.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self.db = db
        self.settings = settings
        # LangGraph's saver needs autocommit, dict rows and no server-side prepared
        # statements (poolers); its pool is sized like the engine's.
        self.pool: ConnectionPool[Any] = ConnectionPool(
            db.conninfo,
            min_size=1,
            max_size=settings.db_max_connections,
            max_idle=settings.db_pool_idle_timeout,
            timeout=max(settings.db_connect_timeout * 2, 10),
            kwargs={"autocommit": True, "row_factory": dict_row, "prepare_threshold": 0},
            open=True,
            name="agentry-checkpoints",
            # A connection the server terminated (restart, pg_terminate_backend) is
            # replaced at checkout instead of failing the turn that gets it.
            check=ConnectionPool.check_connection,
        )
        self.saver = PostgresSaver(self.pool)
        # PostgresSaver serializes every operation on one lock, which only a single shared
        # connection needs; with a pool each operation has its own connection, so
        # concurrent turns need not queue behind each other.
        self.saver.lock = _Unlocked()  # type: ignore[assignment]
        self.router = ModelRouter(db, settings, record_pool=self.pool)
        self._compiled: CompiledRegistry | None = None
        self._lock = threading.Lock()
        self.compilations = 0  # how many times the registry was (re)compiled

    def call_model(
        self, spec: AgentSpec, prompt: list[BaseMessage], tools: list[BaseTool], turn: TurnContext
    ) -> AIMessage:
        return self.router.invoke(
            prompt,
            tools,
            prefer=spec.model,
            user_id=turn.user_id,
            conversation_id=turn.conversation_id,
        )

    def compiled(self, conn: Connection | None = None, mark: str | None = None) -> CompiledRegistry:
        """The graph of the current registry (recompiled when it changed anywhere).

        Args:
            conn: a connection to check the fingerprint on (saves a checkout).
            mark: the fingerprint, when the caller has just read it.
        """
        if mark is None:
            if conn is None:
                with self.db.engine.connect() as own:
                    mark = fingerprint(own)
            else:
                mark = fingerprint(conn)
        current = self._compiled
        if current is not None and current.snapshot.fingerprint == mark:
            return current
        with self._lock:
            current = self._compiled
            if current is not None and current.snapshot.fingerprint == mark:
                return current
            with self.db.engine.connect() as conn:
                snapshot = load_snapshot(conn)
            builder = GraphBuilder(snapshot, self.settings.project_dir, self.call_model)
            current = CompiledRegistry(snapshot, builder.compile(self.saver), builder)
            self._compiled = current
            self.compilations += 1
            return current

    def close(self) -> None:
        self.pool.close()
