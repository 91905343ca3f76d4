from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Connection, text

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.errors import ValidationFailed
from core.mechanic.scratch import RUNTIME_PARTS, populate
from core.registry.snapshot import fingerprint
from core.registry.sync import sync_registry
from core.registry.tools import describe_tool
from tests.conftest import auth, create_test_user
from tests.core.runtime.helpers import ROOT, runtime_settings


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return populate(tmp_path, RUNTIME_PARTS, source=ROOT)


def audit_count(conn: Connection) -> int:
    return int(
        conn.execute(
            text("SELECT count(*) FROM audit_log WHERE action = 'registry_change'")
        ).scalar_one()
    )


def test_tool_schema_comes_from_signature_and_docstring(project: Path) -> None:
    tool = describe_tool(project, "tools/current_time.py")
    assert tool.name == "current_time" and tool.description.startswith("Tell the current date")
    prop = tool.schema["properties"]["timezone"]
    assert prop["type"] == "string" and prop["default"] == "UTC" and "IANA" in prop["description"]
    search = describe_tool(project, "tools.search_memory")
    assert search.schema["required"] == ["query"]
    assert search.schema["properties"]["k"]["type"] == "integer"


def test_sync_creates_then_is_idempotent_and_audited(db: Database, project: Path) -> None:
    with db.engine.begin() as conn:
        before = audit_count(conn)
        report = sync_registry(conn, project)
        assert ("tool", "current_time", "created") in report.changes
        assert {("agent", "assistant"), ("agent", "mechanic")} <= {
            (k, n) for k, n, _ in report.changes
        }
        assert audit_count(conn) == before + len(report.changes)
        spec = conn.execute(text("SELECT spec FROM agents WHERE name = 'assistant'")).scalar_one()
        assert spec["tools"] == ["search_memory", "current_time"] and spec["handoffs"] == [
            "mechanic"
        ]
        assert not sync_registry(conn, project).changed
        # an edited file bumps the version
        path = project / "agents" / "assistant.yaml"
        path.write_text(path.read_text().replace("briefly", "very briefly"))
        version = conn.execute(
            text("SELECT version FROM agents WHERE name = 'assistant'")
        ).scalar_one()
        assert sync_registry(conn, project).changes == [("agent", "assistant", "updated")]
        assert (
            conn.execute(text("SELECT version FROM agents WHERE name = 'assistant'")).scalar_one()
            == version + 1
        )
        row = conn.execute(
            text(
                "SELECT actor, details FROM audit_log WHERE action = 'registry_change'"
                " AND details->>'op' = 'updated'"
            )
        ).one()
        assert row.details["name"] == "assistant" and row.actor == "system"
        assert row.details["version"] == version + 1


@pytest.mark.parametrize(
    ("filename", "content", "message"),
    [
        ("broken.yaml", "name: broken\nsystem_prompt: [unclosed", "invalid YAML"),
        (
            "ghost.yaml",
            "name: ghost\nsystem_prompt: hi\ntools: [no_such_tool]\n",
            "unknown tool 'no_such_tool'",
        ),
        (
            "lost.yaml",
            "name: lost\nsystem_prompt: hi\nhandoffs: [nobody]\n",
            "unknown handoff target",
        ),
        ("other.yaml", "name: different\nsystem_prompt: hi\n", "must match the file name"),
    ],
)
def test_invalid_files_are_refused_and_change_nothing(
    db: Database, project: Path, filename: str, content: str, message: str
) -> None:
    with db.engine.begin() as conn:
        sync_registry(conn, project)
    (project / "agents" / "assistant.yaml").write_text(
        (project / "agents" / "assistant.yaml").read_text().replace("briefly", "tersely")
    )
    (project / "agents" / filename).write_text(content)
    with db.engine.connect() as conn:
        mark, audits = fingerprint(conn), audit_count(conn)
    with pytest.raises(ValidationFailed, match=message), db.engine.begin() as conn:
        sync_registry(conn, project)
    with db.engine.connect() as conn:
        assert fingerprint(conn) == mark and audit_count(conn) == audits


@pytest.fixture
def two_servers(
    db: Database, project: Path
) -> Iterator[tuple[TestClient, TestClient, ScriptedLLM, str]]:
    """Two app instances (two runtimes, two pools) on one database, as two processes would be."""
    _, admin = create_test_user(db, f"admin-{project.name}@example.org", admin=True)
    with ScriptedLLM() as llm:
        settings = runtime_settings(llm.base_url, AGENTRY_PROJECT_DIR=str(project))
        with TestClient(create_app(db, settings)) as a, TestClient(create_app(db, settings)) as b:
            yield a, b, llm, admin


def talk(client: TestClient, key: str) -> None:
    conv = client.post("/v1/conversations", json={}, headers=auth(key)).json()
    response = client.post(
        f"/v1/conversations/{conv['id']}/messages", json={"content": "hi"}, headers=auth(key)
    )
    assert response.status_code == 200, response.text


def test_changes_reach_another_process_on_its_next_turn(
    two_servers: tuple[TestClient, TestClient, ScriptedLLM, str], project: Path
) -> None:
    a, b, llm, admin = two_servers
    talk(b, admin)
    assert "Agentry's assistant" in llm.chat_requests()[-1]["messages"][0]["content"]
    runtime_b = b.app.state.runtime  # type: ignore[attr-defined]
    compiled = runtime_b.compilations

    updated = a.put(
        "/v1/agents/assistant",
        json={
            "system_prompt": "You are the NEW assistant.",
            "tools": ["current_time"],
            "handoffs": [],
        },
        headers=auth(admin),
    )
    assert updated.status_code == 200, updated.text
    assert updated.json()["version"] >= 2
    assert "NEW assistant" in (project / "agents" / "assistant.yaml").read_text()

    talk(b, admin)
    request = llm.chat_requests()[-1]
    assert request["messages"][0]["content"] == "You are the NEW assistant."
    assert [t["function"]["name"] for t in request["tools"]] == ["current_time"]
    assert runtime_b.compilations == compiled + 1
    talk(b, admin)  # unchanged registry: no recompilation
    assert runtime_b.compilations == compiled + 1

    # a tool switched off in process A disappears from process B's next turn
    a.put(
        "/v1/agents/assistant",
        json={"system_prompt": "p", "tools": ["current_time", "search_memory"]},
        headers=auth(admin),
    )
    assert (
        a.patch(
            "/v1/tools/search_memory", json={"is_active": True}, headers=auth(admin)
        ).status_code
        == 200
    )
    refused = a.patch("/v1/tools/search_memory", json={"is_active": False}, headers=auth(admin))
    assert refused.status_code == 422 and "assistant" in refused.json()["detail"]
    a.put(
        "/v1/agents/assistant",
        json={"system_prompt": "p", "tools": ["current_time"]},
        headers=auth(admin),
    )
    assert (
        a.patch(
            "/v1/tools/search_memory", json={"is_active": False}, headers=auth(admin)
        ).status_code
        == 200
    )
    llm.enqueue(Reply("ok"))
    talk(b, admin)
    assert [t["function"]["name"] for t in llm.chat_requests()[-1]["tools"]] == ["current_time"]


def test_admin_crud_validates_and_audits(
    two_servers: tuple[TestClient, TestClient, ScriptedLLM, str], db: Database, project: Path
) -> None:
    a, _, _, admin = two_servers
    key = auth(admin)
    with db.engine.connect() as conn:
        audits = audit_count(conn)
    created = a.post(
        "/v1/agents",
        json={"name": "poet", "system_prompt": "Write verse.", "tools": ["current_time"]},
        headers=key,
    )
    assert created.status_code == 201 and created.json()["version"] == 1
    assert (project / "agents" / "poet.yaml").is_file()
    assert (
        a.post("/v1/agents", json={"name": "poet", "system_prompt": "x"}, headers=key).status_code
        == 409
    )
    bad_tool = a.post(
        "/v1/agents", json={"name": "bad", "system_prompt": "x", "tools": ["rm_rf"]}, headers=key
    )
    assert bad_tool.status_code == 422 and "unknown tool 'rm_rf'" in bad_tool.json()["detail"]
    assert not (project / "agents" / "bad.yaml").exists()
    assert a.delete("/v1/agents/poet", headers=key).status_code == 204
    assert a.get("/v1/agents/poet", headers=key).json()["is_active"] is False
    with db.engine.connect() as conn:
        assert audit_count(conn) == audits + 2

    for outside in (
        "../core/errors.py",
        "core/cli/main.py",
        "/etc/passwd",
        "tools/../config/settings.py",
    ):
        refused = a.post("/v1/tools", json={"module_path": outside}, headers=key)
        assert refused.status_code == 422, outside
        assert "outside tools/" in refused.json()["detail"]
    (project / "tools" / "shout.py").write_text(
        "def shout(text: str) -> str:\n"
        '    """Shout.\n\n    Args:\n        text: what to shout.\n    """\n'
        "    return text.upper()\n"
    )
    made = a.post("/v1/tools", json={"module_path": "tools/shout.py"}, headers=key)
    assert made.status_code == 201, made.text
    assert made.json()["schema"]["properties"]["text"]["description"] == "what to shout."
    # an edited module is picked up by a reload: new schema, new version
    (project / "tools" / "shout.py").write_text(
        "def shout(text: str, times: int = 1) -> str:\n"
        '    """Shout.\n\n    Args:\n        text: what to shout.\n'
        '        times: how often.\n    """\n'
        "    return text.upper() * times\n"
    )
    reloaded = a.post("/v1/tools/shout/reload", headers=key).json()
    assert reloaded["version"] == made.json()["version"] + 1
    assert reloaded["schema"]["properties"]["times"]["type"] == "integer"
    (project / "tools" / "untyped.py").write_text(
        'def untyped(x):\n    """No types."""\n    return x\n'
    )
    untyped = a.post("/v1/tools", json={"module_path": "tools/untyped.py"}, headers=key)
    assert untyped.status_code == 422 and "type hint" in untyped.json()["detail"]
    with db.engine.connect() as conn:
        assert audit_count(conn) == audits + 4
