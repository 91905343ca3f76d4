from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from langchain_core.messages import HumanMessage
from sqlalchemy import text

from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.errors import ModelUnavailableError
from core.runtime.router import (
    DEFAULT_MODEL_NAME,
    DEFAULT_PRIORITY,
    ModelRouter,
    register_default_model,
    usable_models,
)
from tests.core.runtime.helpers import runtime_settings

PROMPT = [HumanMessage("hello router")]


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture
def models(db: Database, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Two catalogue models on the scripted server: primary (priority 10), secondary (5)."""
    monkeypatch.setenv("ROUTER_TEST_KEY", "k")
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE ai_models SET is_active = false"))
        for name, priority, timeout in (("primary", 10, 0.5), ("secondary", 5, None)):
            conn.execute(
                text(
                    "INSERT INTO ai_models (name, provider, api_endpoint, model_id, api_key_env,"
                    " priority, timeout_seconds)"
                    " VALUES (:n, 'test', :e, :n, 'ROUTER_TEST_KEY', :p, :t)"
                ),
                {"n": name, "e": llm.base_url, "p": priority, "t": timeout},
            )
    yield
    with db.engine.begin() as conn:
        conn.execute(text("DELETE FROM prompt_history"))
        conn.execute(text("DELETE FROM ai_models WHERE name IN ('primary', 'secondary')"))


def counters(db: Database, name: str) -> tuple[int, int, int]:
    with db.engine.connect() as conn:
        row = conn.execute(
            text(
                "SELECT request_count, success_count, failure_count FROM ai_models WHERE name = :n"
            ),
            {"n": name},
        ).one()
    return row[0], row[1], row[2]


def history(db: Database) -> list[tuple[str, bool]]:
    with db.engine.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT m.name, h.success FROM prompt_history h"
                " JOIN ai_models m ON m.id = h.selected_model_id"
                " ORDER BY h.created_at, h.success"
            )
        )
        return [(r[0], r[1]) for r in rows]


def router(db: Database) -> ModelRouter:
    return ModelRouter(db, runtime_settings(None))


def test_fallback_on_error_is_recorded(db: Database, llm: ScriptedLLM, models: None) -> None:
    llm.enqueue(Reply(status=503, error="overloaded"), model="primary")
    llm.enqueue(Reply("from secondary"), model="secondary")
    reply = router(db).invoke(PROMPT, [])
    assert reply.content == "from secondary"
    assert reply.response_metadata["agentry_model"] == "secondary"
    assert counters(db, "primary") == (1, 0, 1)
    assert counters(db, "secondary") == (1, 1, 0)
    assert sorted(history(db)) == [("primary", False), ("secondary", True)]
    with db.engine.connect() as conn:
        error = conn.execute(
            text("SELECT error_message, prompt_text FROM prompt_history WHERE NOT success")
        ).one()
    assert "overloaded" in error[0] and error[1] == "hello router"


def test_fallback_on_timeout(db: Database, llm: ScriptedLLM, models: None) -> None:
    llm.enqueue(Reply("too late", delay=6), model="primary")
    llm.enqueue(Reply("in time"), model="secondary")
    started = time.monotonic()
    reply = router(db).invoke(PROMPT, [])
    assert reply.content == "in time"
    assert time.monotonic() - started < 5  # primary's 0.5 s timeout, not its 6 s delay
    assert counters(db, "primary") == (1, 0, 1)


def test_ranking_prefers_reliability_within_a_priority(db: Database, models: None) -> None:
    settings = runtime_settings(None)
    with db.engine.begin() as conn:
        assert [c.name for c in usable_models(conn, settings)] == ["primary", "secondary"]
        conn.execute(
            text("UPDATE ai_models SET priority = 0 WHERE name IN ('primary', 'secondary')")
        )
        conn.execute(
            text(
                "UPDATE ai_models SET request_count = 4, failure_count = 3, success_count = 1"
                " WHERE name = 'primary'"
            )
        )
        assert [c.name for c in usable_models(conn, settings)] == ["secondary", "primary"]
        assert usable_models(conn, settings, prefer="primary")[0].name == "primary"


def test_models_without_credentials_are_skipped(
    db: Database, models: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("ROUTER_TEST_KEY")
    with pytest.raises(ModelUnavailableError, match="AGENTRY_LLM_BASE_URL"):
        router(db).invoke(PROMPT, [])


def test_all_failing_is_503(db: Database, llm: ScriptedLLM, models: None) -> None:
    llm.enqueue(Reply(status=500), model="primary")
    llm.enqueue(Reply(status=429), model="secondary")
    with pytest.raises(ModelUnavailableError, match="every usable model failed") as caught:
        router(db).invoke(PROMPT, [])
    assert caught.value.status == 503


def test_counters_are_atomic_under_concurrency(
    db: Database, llm: ScriptedLLM, models: None
) -> None:
    # The fixture's 0.5 s timeout is for the fallback tests; on a loaded machine it would
    # make this test about timeouts instead of about counting.
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE ai_models SET timeout_seconds = 30 WHERE name = 'primary'"))
    shared = router(db)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(5):
                shared.invoke(PROMPT, [])
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert counters(db, "primary") == (40, 40, 0)
    assert len(history(db)) == 40


def test_default_model_is_registered_with_top_priority(
    db: Database, llm: ScriptedLLM, models: None
) -> None:
    settings = runtime_settings(llm.base_url)
    with db.engine.begin() as conn:
        assert register_default_model(conn, settings)
        assert register_default_model(conn, settings)  # idempotent upsert
        ranked = usable_models(conn, settings)
        priority = conn.execute(
            text("SELECT priority FROM ai_models WHERE name = 'default'")
        ).scalar_one()
        conn.execute(text("UPDATE ai_models SET is_active = false WHERE name = 'default'"))
    assert ranked[0].name == DEFAULT_MODEL_NAME and priority == DEFAULT_PRIORITY
    with db.engine.connect() as conn:
        assert not register_default_model(conn, runtime_settings(None))
