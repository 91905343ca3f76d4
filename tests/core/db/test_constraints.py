"""The schema refuses what would corrupt the data, whatever code writes it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from sqlalchemy import Connection, text
from sqlalchemy.exc import DBAPIError, IntegrityError

from core.db import Database


@pytest.fixture
def conn(db: Database) -> Iterator[Connection]:
    """A connection whose work is rolled back after each test."""
    with db.engine.connect() as connection:
        transaction = connection.begin()
        yield connection
        transaction.rollback()


def make_user(conn: Connection, email: str = "ada@example.org") -> uuid.UUID:
    return conn.execute(
        text("INSERT INTO users (email) VALUES (:e) RETURNING id"), {"e": email}
    ).scalar_one()


def make_conversation(conn: Connection, user_id: uuid.UUID) -> uuid.UUID:
    return conn.execute(
        text("INSERT INTO conversations (session_id, user_id) VALUES (:s, :u) RETURNING id"),
        {"s": f"s-{uuid.uuid4()}", "u": user_id},
    ).scalar_one()


def add_message(conn: Connection, conversation_id: uuid.UUID, role: str, content: str) -> None:
    conn.execute(
        text("INSERT INTO messages (conversation_id, role, content) VALUES (:c, :r, :t)"),
        {"c": conversation_id, "r": role, "t": content},
    )


def constraint_of(error: DBAPIError) -> str | None:
    return getattr(error.orig.diag, "constraint_name", None)  # type: ignore[union-attr]


def test_message_for_missing_conversation_is_refused(conn: Connection) -> None:
    with pytest.raises(IntegrityError) as caught:
        add_message(conn, uuid.uuid4(), "user", "hello")
    assert constraint_of(caught.value) == "fk_messages_conversation_id_conversations"


@pytest.mark.parametrize("content", ["", "   ", "\n\t"])
def test_empty_message_content_is_refused(conn: Connection, content: str) -> None:
    conversation = make_conversation(conn, make_user(conn))
    with pytest.raises(IntegrityError) as caught:
        add_message(conn, conversation, "user", content)
    assert constraint_of(caught.value) == "ck_messages_content_not_empty"


def test_unknown_message_role_is_refused(conn: Connection) -> None:
    conversation = make_conversation(conn, make_user(conn))
    with pytest.raises(IntegrityError) as caught:
        add_message(conn, conversation, "wizard", "hello")
    assert constraint_of(caught.value) == "ck_messages_role_known"


def test_known_roles_are_accepted_and_cascade_with_their_conversation(conn: Connection) -> None:
    conversation = make_conversation(conn, make_user(conn))
    for role in ("user", "assistant", "system", "tool"):
        add_message(conn, conversation, role, f"a {role} message")
    conn.execute(
        text("INSERT INTO agent_switches (conversation_id, to_agent) VALUES (:c, 'assistant')"),
        {"c": conversation},
    )
    conn.execute(text("DELETE FROM conversations WHERE id = :c"), {"c": conversation})
    left = conn.execute(
        text(
            "SELECT (SELECT count(*) FROM messages WHERE conversation_id = :c)"
            " + (SELECT count(*) FROM agent_switches WHERE conversation_id = :c)"
        ),
        {"c": conversation},
    ).scalar_one()
    assert left == 0


def test_deleting_a_model_with_history_is_refused(conn: Connection) -> None:
    model = conn.execute(
        text(
            "INSERT INTO ai_models (name, provider, api_endpoint, model_id)"
            " VALUES ('m', 'p', 'http://x', 'm') RETURNING id"
        )
    ).scalar_one()
    conn.execute(
        text(
            "INSERT INTO prompt_history (prompt_text, selected_model_id, success)"
            " VALUES ('hi', :m, true)"
        ),
        {"m": model},
    )
    with pytest.raises(IntegrityError) as caught:
        conn.execute(text("DELETE FROM ai_models WHERE id = :m"), {"m": model})
    assert constraint_of(caught.value) == "fk_prompt_history_selected_model_id_ai_models"


def test_conversation_status_is_an_enum(conn: Connection) -> None:
    user = make_user(conn)
    with pytest.raises(DBAPIError, match="invalid input value for enum conversation_status"):
        conn.execute(
            text(
                "INSERT INTO conversations (session_id, user_id, status)"
                " VALUES ('x', :u, 'sleeping')"
            ),
            {"u": user},
        )


def test_emails_are_unique_regardless_of_case(conn: Connection) -> None:
    make_user(conn, "Grace@Example.org")
    with pytest.raises(IntegrityError) as caught:
        make_user(conn, "grace@example.org")
    assert constraint_of(caught.value) == "uq_users_email_lower"


def test_audit_log_is_append_only(conn: Connection) -> None:
    conn.execute(
        text(
            "INSERT INTO audit_log (action, actor, status) VALUES ('deploy', 'system', 'succeeded')"
        )
    )
    for statement in ("UPDATE audit_log SET status = 'failed'", "DELETE FROM audit_log"):
        savepoint = conn.begin_nested()
        with pytest.raises(DBAPIError, match="audit_log is append-only"):
            conn.execute(text(statement))
        savepoint.rollback()
    assert conn.execute(text("SELECT count(*) FROM audit_log")).scalar_one() == 1


def test_model_scores_are_computed_by_the_database(conn: Connection) -> None:
    conn.execute(
        text(
            "INSERT INTO ai_models (name, provider, api_endpoint, model_id, success_count,"
            " failure_count, request_count, total_response_time)"
            " VALUES ('scored', 'p', 'http://x', 'm', 3, 1, 4, 8.0)"
        )
    )
    row = conn.execute(
        text(
            "SELECT success_rate, average_response_time, speed_score, reliability_score"
            " FROM ai_models WHERE name = 'scored'"
        )
    ).one()
    assert row.success_rate == pytest.approx(0.75)
    assert row.average_response_time == pytest.approx(2.0)
    assert row.speed_score == pytest.approx(0.8)
    assert row.reliability_score == pytest.approx(0.6 * 0.75 + 0.4 * 0.8)
    with pytest.raises(IntegrityError) as caught:
        conn.execute(text("UPDATE ai_models SET success_count = 9 WHERE name = 'scored'"))
    assert constraint_of(caught.value) == "ck_ai_models_outcomes_within_requests"
