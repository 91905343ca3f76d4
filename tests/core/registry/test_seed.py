from __future__ import annotations

from sqlalchemy import text

from config import Settings
from core.db import Database
from core.registry.seed import load_seed_models, registry_is_empty, seed


def test_seed_file_has_six_distinct_models() -> None:
    models = load_seed_models()
    assert len(models) == 6
    assert len({m["name"] for m in models}) == 6
    names = {m["name"] for m in models}
    assert {"gemini-2.5-flash", "llama-3.3-70b-groq"} <= names
    assert all(m["api_endpoint"].startswith("https://") and m["api_key_env"] for m in models)


def test_seed_is_idempotent_and_keeps_operator_edits(db: Database, test_settings: Settings) -> None:
    with db.engine.begin() as conn:
        assert registry_is_empty(conn)
        first = seed(conn, test_settings)
    assert (first.models_added, first.agents_added) == (6, 2)

    with db.engine.begin() as conn:
        conn.execute(
            text(
                "UPDATE ai_models SET is_active = false, success_count = 5,"
                " request_count = 5 WHERE name = 'gpt-4o-mini'"
            )
        )
        second = seed(conn, test_settings)
        assert not second.changed
        assert not registry_is_empty(conn)
        counts = conn.execute(
            text("SELECT (SELECT count(*) FROM ai_models), (SELECT count(*) FROM agents)")
        ).one()
        edited = conn.execute(
            text("SELECT is_active, success_count FROM ai_models WHERE name = 'gpt-4o-mini'")
        ).one()
        agents = dict(conn.execute(text("SELECT name, config_path FROM agents")).all())
    assert tuple(counts) == (6, 2)
    assert tuple(edited) == (False, 5)
    assert agents == {"assistant": "agents/assistant.yaml", "mechanic": "agents/mechanic.yaml"}
