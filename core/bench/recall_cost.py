"""What automatic recall adds to a turn (``agentry bench chat``, ``recall`` in its report).

Measured on the chat benchmark's own history (its DailyDialog conversations, embedded
first): the time :func:`core.memory.prompting.memory_prompt` takes per model call with
``recall: {k: 3, scope: all}`` against the same call without recall, and the prompt
tokens the recalled memories add.
"""

from __future__ import annotations

import statistics
import time
import uuid
from typing import Any

from langchain_core.messages import HumanMessage

from config import Settings
from core.auth.users import Principal
from core.bench.metrics import percentile
from core.db.engine import Database
from core.memory.drain import drain_pending
from core.memory.embeddings import get_embedder
from core.memory.prompting import CHARS_PER_TOKEN, DEFAULT_BUDGET, memory_prompt
from core.runtime.context import TurnContext

RECALL = {"k": 3, "scope": "all", "budget": DEFAULT_BUDGET}


def measure_recall_cost(
    db: Database, settings: Settings, principal: Principal, questions: list[str], agent: str
) -> dict[str, Any]:
    """p50/p95 ms added per model call by automatic recall, and the tokens it adds."""
    embedder = get_embedder(settings)
    drain_pending(db.engine, embedder, batch_size=256)
    turn = TurnContext(db, settings, principal, uuid.uuid4(), principal.id)
    memory_prompt(turn, agent, RECALL, [HumanMessage("warm up")])
    added_ms: list[float] = []
    tokens: list[float] = []
    for q in questions:
        messages = [HumanMessage(q)]
        started = time.perf_counter()
        memory_prompt(turn, agent, None, messages)  # blocks only
        plain = time.perf_counter() - started
        started = time.perf_counter()
        section, _ = memory_prompt(turn, agent, RECALL, messages)
        added_ms.append((time.perf_counter() - started - plain) * 1000)
        tokens.append(len(section) / CHARS_PER_TOKEN)
    return {
        "config": RECALL,
        "turns": len(added_ms),
        "added_ms": {
            "p50": round(statistics.median(added_ms), 2),
            "p95": round(percentile(added_ms, 95), 2),
        },
        "added_prompt_tokens": {
            "mean": round(statistics.fmean(tokens), 1),
            "max": round(max(tokens), 1),
        },
    }
