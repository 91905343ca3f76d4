"""The model router (DESIGN §4): the most reliable usable model first, fallback on failure.

A model is usable when it is active and its credentials are present: the
environment variable its row names is set, or it is the default model configured by
``AGENTRY_LLM_*``, or its row names a stored credential (``ai_models.credential``,
core/secrets) that the calling user has, or that is shared: the user's own key wins
over the shared one, and either over the variable. Every call is recorded
in ``prompt_history`` and counted in ``ai_models`` with atomic increments.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage
from langchain_core.tools import BaseTool
from langchain_openai import ChatOpenAI
from psycopg_pool import ConnectionPool
from sqlalchemy import Connection, text
from sqlalchemy.dialects.postgresql import insert

from config import Settings
from core.db.engine import Database
from core.errors import ModelUnavailableError
from core.models import AiModel
from core.observability.metrics import record_model_call
from core.observability.tracing import span
from core.runtime.server_view import DEFAULT_KEY_ENV, DEFAULT_MODEL_NAME

log = logging.getLogger(__name__)

# Above anything an operator would type, so the configured default is tried first.
DEFAULT_PRIORITY = 1_000_000
HOW_TO_CONFIGURE = (
    "no usable model is configured: set AGENTRY_LLM_BASE_URL and AGENTRY_LLM_MODEL"
    " (and AGENTRY_LLM_API_KEY if the endpoint needs one) to an OpenAI-compatible endpoint,"
    " or set the API key variable of a catalogue model (GEMINI_API_KEY, GROQ_API_KEY,"
    " OPENROUTER_API_KEY, OPENAI_API_KEY; see `agentry models list`), or store your own key"
    " for a model that names a credential (POST /v1/credentials)"
)

# The ranking is re-read at most this often: one query per turn would otherwise be spent
# on something that changes slowly (counters move the scores a little per call).
RANKING_TTL_SECONDS = 1.0
# Clients are cached per model and key; users' own keys make that one per user.
MAX_CLIENTS = 512
RANKED_SQL = text(
    "SELECT id, name, api_endpoint, model_id, api_key_env, timeout_seconds, credential"
    " FROM ai_models"
    " WHERE is_active ORDER BY priority DESC, reliability_score DESC, name"
)
HAS_CREDENTIAL_SQL = text(
    "SELECT 1 FROM credentials WHERE name = ANY(:names)"
    " AND (owner_id = :owner OR owner_id IS NULL) LIMIT 1"
)
# Atomic increments (concurrent turns in many processes never lose a count) and the
# history row, in one statement: one round trip per model call.
RECORD_SQL = text(
    "WITH counted AS (UPDATE ai_models SET request_count = request_count + 1,"
    " success_count = success_count + CAST(CAST(:ok AS boolean) AS int),"
    " failure_count = failure_count + 1 - CAST(CAST(:ok AS boolean) AS int),"
    " total_response_time = total_response_time + CAST(:elapsed AS float8), last_checked = now()"
    " WHERE id = :id RETURNING id)"
    " INSERT INTO prompt_history (user_id, conversation_id, prompt_text, selected_model_id,"
    " response_text, response_time, success, error_message)"
    " SELECT CAST(:user_id AS uuid), CAST(:conversation_id AS uuid), CAST(:prompt AS text), id,"
    " CAST(:response AS text), CAST(:elapsed AS float8), CAST(:ok AS boolean),"
    " CAST(:error AS text) FROM counted"
)
# The same statement for a plain psycopg connection.
RECORD_PSYCOPG_SQL = re.sub(r"(?<!:):(\w+)", r"%(\1)s", str(RECORD_SQL))


@dataclass(frozen=True)
class Candidate:
    id: uuid.UUID
    name: str
    endpoint: str
    model_id: str
    api_key: str  # empty: only a stored credential can make it usable
    timeout: float
    credential: str | None = None


def register_default_model(conn: Connection, settings: Settings) -> bool:
    """Upsert the model of ``AGENTRY_LLM_BASE_URL``/``AGENTRY_LLM_MODEL`` with top priority.

    Returns:
        True when one is configured (and now registered).
    """
    if not (settings.llm_base_url and settings.llm_model):
        return False
    values: dict[str, Any] = {
        "provider": "openai-compatible",
        "api_endpoint": settings.llm_base_url,
        "model_id": settings.llm_model,
        "api_key_env": DEFAULT_KEY_ENV,
        "priority": DEFAULT_PRIORITY,
        "is_active": True,
        "description": "the default model (AGENTRY_LLM_BASE_URL / AGENTRY_LLM_MODEL)",
    }
    conn.execute(
        insert(AiModel)
        .values(name=DEFAULT_MODEL_NAME, **values)
        .on_conflict_do_update(index_elements=["name"], set_=values)
    )
    return True


def _credentials(row: Any, settings: Settings) -> str | None:
    if row.name == DEFAULT_MODEL_NAME:
        # Only while configured: an old row must not outlive its configuration.
        if not (settings.llm_base_url and settings.llm_base_url == row.api_endpoint):
            return None
        return settings.llm_api_key or "not-needed"
    if row.api_key_env:
        return os.environ.get(row.api_key_env) or None
    if row.credential:
        return None  # only a stored credential makes it usable (resolved per user)
    return "not-needed"  # a keyless local endpoint (Ollama, llama.cpp)


def usable_models(
    conn: Connection, settings: Settings, prefer: str | None = None, *, deferred: bool = False
) -> list[Candidate]:
    """Active models with credentials, best first (``prefer`` first when usable).

    Args:
        deferred: also models that only a stored credential can make usable (the router
            resolves those per user at call time; their ``api_key`` is empty).
    """
    found = []
    for row in conn.execute(RANKED_SQL):
        key = _credentials(row, settings)
        if key is None and not (deferred and row.credential):
            continue
        timeout = row.timeout_seconds or settings.llm_timeout
        found.append(
            Candidate(
                row.id,
                row.name,
                row.api_endpoint,
                row.model_id,
                key or "",
                timeout,
                row.credential,
            )
        )
    if prefer:
        found.sort(key=lambda c: c.name != prefer)
    return found


def _prompt_text(messages: Sequence[BaseMessage]) -> str:
    for message in reversed(messages):
        if isinstance(message, HumanMessage):
            return str(message.content)
    return str(messages[-1].content) if messages else ""


class ModelRouter:
    """Calls the best usable model and falls back to the next on error or timeout."""

    def __init__(
        self, db: Database, settings: Settings, record_pool: ConnectionPool[Any] | None = None
    ) -> None:
        """Args:
        db: where the ranking is read and calls are recorded.
        settings: timeouts and the default model's configuration.
        record_pool: an autocommit psycopg pool for the call records (one round trip
            each instead of a transaction); the engine is used without it.
        """
        self.db = db
        self.settings = settings
        self.record_pool = record_pool
        self._clients: dict[Candidate, ChatOpenAI] = {}
        self._lock = threading.Lock()
        self._ranked: tuple[float, list[Candidate]] | None = None

    def candidates(
        self, conn: Connection | None = None, prefer: str | None = None
    ) -> list[Candidate]:
        """Usable models best first, re-read at most every ``RANKING_TTL_SECONDS``.

        Args:
            conn: a connection to read with (saves a checkout); one is opened otherwise.
            prefer: a model name to put first when usable.
        """
        now = time.monotonic()
        cached = self._ranked
        if cached is None or now - cached[0] > RANKING_TTL_SECONDS:
            if conn is None:
                with self.db.engine.connect() as own:
                    found = usable_models(own, self.settings, deferred=True)
            else:
                found = usable_models(conn, self.settings, deferred=True)
            self._ranked = cached = (now, found)
        ranked = list(cached[1])
        if prefer:
            ranked.sort(key=lambda c: c.name != prefer)
        return ranked

    def has_usable(self, conn: Connection, user_id: uuid.UUID | None) -> bool:
        """Whether a turn of ``user_id`` has a model to call (checked before it starts)."""
        found = self.candidates(conn)
        if any(c.api_key for c in found):
            return True
        names = sorted({c.credential for c in found if c.credential})
        if not names or not self.settings.secret_key:
            return False
        return (
            conn.execute(HAS_CREDENTIAL_SQL, {"names": names, "owner": user_id}).first() is not None
        )

    def with_user_keys(
        self, candidates: list[Candidate], user_id: uuid.UUID | None
    ) -> list[Candidate]:
        """Candidates with the stored credentials of ``user_id`` (else the shared ones)
        in place of their variable's key; those left without any key are dropped."""
        names = {c.credential for c in candidates if c.credential}
        values: dict[str, str] = {}
        if names and self.settings.secret_key:
            from core.secrets.keys import keyring
            from core.secrets.store import resolve

            with self.db.engine.connect() as conn:
                values = resolve(conn, keyring(self.settings), user_id, names)
        out = []
        for c in candidates:
            if c.credential and c.credential in values:
                out.append(dataclasses.replace(c, api_key=values[c.credential]))
            elif c.api_key:
                out.append(c)
        return out

    def _client(self, candidate: Candidate) -> ChatOpenAI:
        with self._lock:
            client = self._clients.get(candidate)
            if client is None:
                if len(self._clients) >= MAX_CLIENTS:
                    self._clients.clear()  # per-user keys: bounded, rebuilt on demand
                client = ChatOpenAI(
                    base_url=candidate.endpoint,
                    api_key=candidate.api_key,  # type: ignore[arg-type]
                    model=candidate.model_id,
                    timeout=candidate.timeout,
                    max_retries=0,  # the router's fallback is the retry
                    stream_usage=True,
                )
                self._clients[candidate] = client
            return client

    def invoke(
        self,
        messages: Sequence[BaseMessage],
        tools: Sequence[BaseTool | dict[str, Any]],
        *,
        tool_choice: str | None = None,
        prefer: str | None = None,
        user_id: uuid.UUID | None = None,
        conversation_id: uuid.UUID | None = None,
    ) -> AIMessage:
        """Answer with the first model that succeeds.

        Args:
            messages: the prompt (system message first).
            tools: tools the model may call (LangChain tools or OpenAI tool definitions).
            tool_choice: a tool the model must call.
            prefer: the agent's model name, tried first when usable.
            user_id: recorded in prompt_history.
            conversation_id: recorded in prompt_history.

        Returns:
            The model's message; ``response_metadata['agentry_model']`` names the model.

        Raises:
            ModelUnavailableError: no usable model, or all of them failed.
        """
        candidates = self.with_user_keys(self.candidates(prefer=prefer), user_id)
        if not candidates:
            raise ModelUnavailableError(HOW_TO_CONFIGURE)
        prompt = _prompt_text(messages)
        failures = []
        for candidate in candidates:
            client = self._client(candidate)
            runnable = client.bind_tools(list(tools), tool_choice=tool_choice) if tools else client
            started = time.monotonic()
            try:
                with span("agentry.model_call", model=candidate.name):
                    reply = runnable.invoke(list(messages))
            except Exception as exc:  # any failure of a model means: try the next one
                elapsed = time.monotonic() - started
                record_model_call(candidate.name, False, elapsed, None)
                reason = f"{type(exc).__name__}: {exc}"[:500]
                log.warning("model %s failed after %.2fs: %s", candidate.name, elapsed, reason)
                self._record(candidate, prompt, None, elapsed, reason, user_id, conversation_id)
                failures.append(f"{candidate.name} ({type(exc).__name__})")
                continue
            elapsed = time.monotonic() - started
            assert isinstance(reply, AIMessage)
            usage = reply.usage_metadata
            record_model_call(candidate.name, True, elapsed, dict(usage) if usage else None)
            reply.response_metadata["agentry_model"] = candidate.name
            text_out = reply.text if reply.content else str(reply.tool_calls)
            self._record(candidate, prompt, text_out, elapsed, None, user_id, conversation_id)
            return reply
        raise ModelUnavailableError("every usable model failed: " + ", ".join(failures))

    def _record(
        self,
        candidate: Candidate,
        prompt: str,
        response: str | None,
        elapsed: float,
        error: str | None,
        user_id: uuid.UUID | None,
        conversation_id: uuid.UUID | None,
    ) -> None:
        params = {
            "ok": error is None,
            "elapsed": elapsed,
            "id": candidate.id,
            "user_id": user_id,
            "conversation_id": conversation_id,
            "prompt": prompt or "(empty)",
            "response": response,
            "error": error,
        }
        if self.record_pool is not None:
            with self.record_pool.connection() as pconn:
                pconn.execute(RECORD_PSYCOPG_SQL, params)
            return
        with self.db.engine.begin() as conn:
            conn.execute(RECORD_SQL, params)
