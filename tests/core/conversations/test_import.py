"""``agentry import sessions`` (legacy tables in a real PostgreSQL) and ``import conversations``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings
from core.api.app import create_app
from core.cli.main import app
from core.db import Database
from tests.conftest import auth, create_test_user, fresh_database
from tests.core.protocols.conftest import LiveServer

runner = CliRunner()

LEGACY_DDL = """
CREATE TABLE sessions (session_id text PRIMARY KEY, messages text, last_activity timestamptz,
                       created_at timestamptz);
CREATE TABLE agent_contexts (session_id text PRIMARY KEY, current_agent text,
    agent_history text, context_metadata text, created_at timestamptz,
    last_switch_at timestamptz, switch_count integer);
"""
GOOD = [
    {
        "role": "user",
        "content": "My cat Miso turned three today",
        "timestamp": "2021-03-04T10:00:00Z",
    },
    {"role": "ai", "content": "Happy birthday to Miso!", "timestamp": "2021-03-04T10:00:05Z"},
    {"role": "human", "content": "Can billing refund me?", "timestamp": 1614852010},
]


@pytest.fixture(scope="module")
def legacy(pg_server: Any, test_settings: Settings) -> Iterator[str]:
    """A legacy database: good sessions, malformed JSON, an invalid message, an orphan."""
    database = fresh_database(pg_server, test_settings, "legacy", template=None)
    url = database.url.render_as_string(hide_password=False)
    database.dispose()
    rows = [
        ("s-good", json.dumps(GOOD), "2021-03-04T09:59:00Z"),
        ("s-plain", json.dumps([{"role": "user", "content": "hello there"}]), "2021-03-05"),
        ("s-broken", '[{"role": "user", "content": "unterminated', "2021-03-06"),
        ("s-badrole", json.dumps([{"role": "wizard", "content": "abracadabra"}]), "2021-03-07"),
    ]
    contexts = [
        ("s-good", "support", json.dumps(["triage", "billing"]), json.dumps({"tier": "gold"})),
        ("s-ghost", "triage", json.dumps(["triage"]), "{}"),
    ]
    libpq = url.replace("postgresql+psycopg://", "postgresql://")
    with psycopg.connect(libpq) as conn:
        conn.execute(LEGACY_DDL)
        for sid, messages, created in rows:
            conn.execute(
                "INSERT INTO sessions VALUES (%s, %s, %s, %s)", (sid, messages, created, created)
            )
        for sid, agent, history, meta in contexts:
            conn.execute(
                "INSERT INTO agent_contexts VALUES (%s, %s, %s, %s, '2021-03-04T09:59:00Z', "
                "'2021-03-04T10:00:03Z', 2)",
                (sid, agent, history, meta),
            )
    yield url


def _counts(db: Database) -> tuple[int, int, int, int]:
    with db.engine.connect() as conn:
        return tuple(  # type: ignore[return-value]
            conn.execute(text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("conversations", "messages", "agent_switches", "search_index")
        )


def test_legacy_sessions_import_once_with_timestamps_switches_and_bad_rows_reported(
    db: Database, legacy: str, use_database: Any
) -> None:
    user, _ = create_test_user(db, "legacy@import.org")
    use_database(db)
    args = ["import", "sessions", "--from", legacy, "--user", "legacy@import.org"]
    first = runner.invoke(app, [*args, "--no-embed", "--json"])
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert (report["imported"], report["messages"], report["switches"]) == (2, 4, 2)
    skipped = {s["where"]: s["reason"] for s in report["skipped"]}
    assert "not valid JSON" in skipped["session s-broken"]
    assert "role" in skipped["session s-badrole"]
    assert "orphan" in skipped["agent_contexts s-ghost"]
    assert report["indexed"] == 10  # two views per message, one per conversation
    before = _counts(db)
    assert before[:3] == (2, 4, 2)

    with db.engine.connect() as conn:
        conv = conn.execute(
            text(
                "SELECT id, user_id, current_agent, context_data, messages_count, created_at "
                "FROM conversations WHERE session_id = 's-good'"
            )
        ).one()
        assert conv.user_id == user.id and conv.current_agent == "support"  # as the legacy row says
        assert conv.context_data == {"tier": "gold", "imported_from": "legacy"}
        assert conv.messages_count == 3
        msgs = conn.execute(
            text(
                "SELECT role, content, created_at FROM messages WHERE conversation_id = :c "
                "ORDER BY seq"
            ),
            {"c": conv.id},
        ).all()
        assert [m.role for m in msgs] == ["user", "assistant", "user"]
        assert msgs[0].created_at.isoformat() == "2021-03-04T10:00:00+00:00"
        assert msgs[2].created_at.timestamp() == 1614852010
        switches = conn.execute(
            text(
                "SELECT from_agent, to_agent FROM agent_switches WHERE conversation_id = :c "
                "ORDER BY switched_at"
            ),
            {"c": conv.id},
        ).all()
        assert [tuple(s) for s in switches] == [(None, "triage"), ("triage", "billing")]
        # Indexed for this user, keyword-searchable at once.
        hit = conn.execute(
            text("SELECT count(*) FROM search_index WHERE user_id = :u AND content LIKE '%Miso%'"),
            {"u": user.id},
        ).scalar_one()
        assert hit >= 2

    second = runner.invoke(app, [*args, "--no-embed", "--json"])
    again = json.loads(second.output)
    assert (again["imported"], again["unchanged"]) == (0, 2)
    assert _counts(db) == before

    table = runner.invoke(app, [*args, "--no-embed"])
    assert "2 already there" in table.output and "orphan context" in table.output


def test_legacy_import_needs_a_reachable_legacy_database(db: Database, use_database: Any) -> None:
    use_database(db)
    url = db.url.render_as_string(hide_password=False)  # no legacy tables here
    out = runner.invoke(app, ["import", "sessions", "--from", url, "--user", "x@y.org"])
    assert out.exit_code != 0 and "not a legacy database" in out.output


def _line(conversation: str, **extra: Any) -> str:
    body = {
        "conversation": conversation,
        "messages": [
            {
                "role": "user",
                "speaker": "Calvin",
                "content": "I flew to Tokyo for the first time",
                "timestamp": "2023-03-02T09:00:00Z",
            },
            {
                "role": "assistant",
                "speaker": "Dave",
                "content": "How was Shibuya?",
                "metadata": {"mood": "curious"},
            },
        ],
        "switches": [{"to_agent": "travel", "reason": "imported"}],
    }
    return json.dumps(body | extra)


def test_jsonl_import_is_idempotent_validates_and_embeds(
    db: Database, use_database: Any, tmp_path: Path
) -> None:
    create_test_user(db, "calvin@import.org")
    file = tmp_path / "history.jsonl"
    file.write_text(
        "\n".join(
            [
                _line("j-1"),
                _line("j-2", user="calvin@import.org"),
                "{not json",
                json.dumps({"conversation": "j-3", "messages": []}),
                _line("j-4", user="nobody@import.org"),
                # A duplicate message id fails in the database: nothing of j-5 stays.
                json.dumps(
                    {
                        "conversation": "j-5",
                        "messages": [
                            {"id": "a", "role": "user", "content": "one"},
                            {"id": "a", "role": "user", "content": "two"},
                        ],
                    }
                ),
                "",
            ]
        ),
        encoding="utf-8",
    )
    use_database(db)
    args = ["import", "conversations", str(file), "--user", "calvin@import.org", "--json"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    report = json.loads(first.output)
    assert (report["imported"], report["messages"], report["switches"]) == (2, 4, 2)
    skipped = {s["where"]: s["reason"] for s in report["skipped"]}
    assert set(skipped) == {"line 3", "line 4", "line 5", "line 6"}
    assert "not JSON" in skipped["line 3"] and "messages" in skipped["line 4"]
    assert "no user" in skipped["line 5"] and "database refused" in skipped["line 6"]
    with db.engine.connect() as conn:
        assert (
            conn.execute(
                text("SELECT count(*) FROM conversations WHERE session_id = 'j-5'")
            ).scalar_one()
            == 0
        )
        meta, at = conn.execute(
            text(
                "SELECT metadata, created_at FROM messages WHERE content = 'How was Shibuya?' "
                "LIMIT 1"
            )
        ).one()
        assert meta == {"mood": "curious", "speaker": "Dave"}
        assert at.isoformat() == "2023-03-02T09:00:00+00:00"  # the previous message's time
        pending = conn.execute(
            text("SELECT count(*) FROM search_index WHERE embedding IS NULL")
        ).scalar_one()
        assert pending == 0  # embedded by the command
    before = _counts(db)
    second = runner.invoke(app, args)
    assert json.loads(second.output)["unchanged"] == 2
    assert _counts(db) == before

    missing = runner.invoke(app, ["import", "conversations", str(tmp_path / "none.jsonl")])
    assert missing.exit_code != 0 and "no such file" in missing.output


def test_post_import_is_for_admins_and_reports_per_line(
    db: Database, test_settings: Settings
) -> None:
    _, admin = create_test_user(db, "root@import.org", admin=True)
    _, alice = create_test_user(db, "alice@import.org")
    body = "\n".join([_line("http-1", user="alice@import.org"), '{"conversation": 3}'])
    with (
        LiveServer(create_app(db, test_settings)) as server,
        httpx.Client(base_url=server.url, timeout=120) as client,
    ):
        headers = {"Content-Type": "application/x-ndjson"}
        denied = client.post("/v1/import", content=body, headers=headers | auth(alice))
        assert denied.status_code == 403
        ok = client.post("/v1/import", content=body, headers=headers | auth(admin))
        assert ok.status_code == 200, ok.text
        report = ok.json()
        assert report["imported"] == 1 and report["skipped"][0]["where"] == "line 2"
        again = client.post("/v1/import", content=body, headers=headers | auth(admin))
        assert again.json()["unchanged"] == 1 and again.json()["imported"] == 0
        bad = client.post("/v1/import", content=b"\xff\xfe", headers=headers | auth(admin))
        assert bad.status_code == 422 and "body" in bad.text
        empty = client.post("/v1/import", content=b"\n", headers=headers | auth(admin))
        assert empty.status_code == 422 and "no conversation" in empty.text
        found = client.get(
            "/v1/search", params={"q": "Tokyo", "mode": "keyword"}, headers=auth(alice)
        )
        assert found.status_code == 200
        assert "Tokyo" in found.json()["hits"][0]["snippet"]
        # Conversational recall through the same route: turn and context views fused,
        # the hit is the message and its snippet the turn with its speaker.
        recalled = client.get(
            "/v1/search", params={"q": "first trip to Tokyo", "mode": "recall"}, headers=auth(alice)
        )
        assert recalled.status_code == 200, recalled.text
        top = recalled.json()["hits"][0]
        assert top["entity_type"] == "message"
        assert top["snippet"] == "Calvin: I flew to Tokyo for the first time"
        assert {"keyword", "context_keyword"} <= set(top["rank"])
        assert "context" not in top["metadata"]
