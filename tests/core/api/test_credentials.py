"""Encrypted credentials over real HTTP: stored, listed without values, used by the model
router (the scripted LLM sees the user's key, else the shared one) and by a tool that
declares one; audited; never in a response or a log line; rotated to a new key."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import text
from typer.testing import CliRunner

from config import Settings, load_settings
from core.api.app import create_app
from core.cli.main import app as cli
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM, ToolCall
from core.secrets.health import secret_check
from core.secrets.keys import keyring, new_key
from core.secrets.store import resolve
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import ROOT, prepare_registry, runtime_settings

KEY = new_key()
ALICE_KEY = "sk-or-alice-0123456789abcdef"
SHARED_KEY = "sk-or-shared-fedcba9876543210"
WEATHER_KEY = "wx-secret-55aa55aa"
SECRETS = (ALICE_KEY, SHARED_KEY, WEATHER_KEY)

WEATHER_TOOL = '''\
"""Weather from a provider that needs an API key."""

CREDENTIALS = ("weather_api_key",)


def weather(city: str, weather_api_key: str) -> str:
    """Tell the weather of a city.

    Args:
        city: the city.
    """
    return f"sunny in {city} (asked with a key ending {weather_api_key[-4:]})"
'''
FORECASTER = """\
name: forecaster
description: Tells the weather.
system_prompt: You tell the weather.
tools: [weather]
"""


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    project = tmp_path_factory.mktemp("credentials")
    for name in ("agents", "tools"):
        shutil.copytree(ROOT / name, project / name)
    (project / "tools" / "weather.py").write_text(WEATHER_TOOL)
    (project / "agents" / "forecaster.yaml").write_text(FORECASTER)
    return runtime_settings(None, AGENTRY_PROJECT_DIR=str(project), AGENTRY_SECRET_KEY=KEY)


@pytest.fixture(scope="module")
def live(db: Database, llm: ScriptedLLM, settings: Settings) -> Iterator[LiveServer]:
    prepare_registry(db, settings)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE ai_models SET is_active = false"))
        # Like the seeded OpenRouter models: no variable set, a credential named.
        conn.execute(
            text(
                "INSERT INTO ai_models (name, provider, api_endpoint, model_id, credential,"
                " priority) VALUES ('byok', 'openrouter', :e, 'scripted', 'openrouter', 100)"
            ),
            {"e": llm.base_url},
        )
    with LiveServer(create_app(db, settings)) as server:
        yield server


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    return {
        "alice": create_test_user(db, "alice@cred.org")[1],
        "bob": create_test_user(db, "bob@cred.org")[1],
        "admin": create_test_user(db, "root@cred.org", admin=True)[1],
    }


def call(live: LiveServer, method: str, path: str, key: str, **kw: Any) -> httpx.Response:
    response = httpx.request(method, live.url + path, headers=auth(key), timeout=30, **kw)
    for secret in SECRETS:
        assert secret not in response.text  # no response ever carries a value
    return response


def turn(live: LiveServer, key: str, agent: str = "assistant") -> httpx.Response:
    cid = call(live, "POST", "/v1/conversations", key, json={"agent": agent}).json()["id"]
    return call(live, "POST", f"/v1/conversations/{cid}/messages", key, json={"content": "hello"})


def test_store_list_and_the_model_router_uses_the_users_key(
    live: LiveServer,
    keys: dict[str, str],
    llm: ScriptedLLM,
    db: Database,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    # Nobody has the credential yet: no usable model, said before the turn starts.
    refused = turn(live, keys["alice"])
    assert refused.status_code == 503, refused.text
    assert "POST /v1/credentials" in refused.json()["detail"]

    made = call(
        live,
        "POST",
        "/v1/credentials",
        keys["alice"],
        json={"name": "openrouter", "value": ALICE_KEY},
    )
    assert made.status_code == 201, made.text
    assert made.json()["created"] is True and made.json()["shared"] is False
    denied = call(
        live,
        "POST",
        "/v1/credentials",
        keys["bob"],
        json={"name": "openrouter", "value": SHARED_KEY, "shared": True},
    )
    assert denied.status_code == 403
    shared = call(
        live,
        "POST",
        "/v1/credentials",
        keys["admin"],
        json={"name": "openrouter", "value": SHARED_KEY, "shared": True},
    )
    assert shared.status_code == 201, shared.text

    listed = call(live, "GET", "/v1/credentials", keys["alice"]).json()
    assert [(c["name"], c["shared"]) for c in listed] == [
        ("openrouter", False),
        ("openrouter", True),
    ]
    assert all("value" not in c and "ciphertext" not in c for c in listed)
    with db.engine.connect() as conn:
        stored = conn.execute(text("SELECT ciphertext, key_id FROM credentials")).all()
    assert len(stored) == 2
    assert all(
        r.key_id == keyring(load_settings(AGENTRY_SECRET_KEY=KEY)).current_id for r in stored
    )
    assert not any(s in r.ciphertext for r in stored for s in SECRETS)

    # Alice's own key wins over the shared one; Bob, who has none, gets the shared one.
    llm.requests.clear()
    assert turn(live, keys["alice"]).status_code == 200
    assert turn(live, keys["bob"]).status_code == 200
    sent = [r["_authorization"] for r in llm.chat_requests()]
    assert sent == [f"Bearer {ALICE_KEY}", f"Bearer {SHARED_KEY}"]

    # Without the shared one, Bob has no model; Alice still has hers.
    gone = call(live, "DELETE", "/v1/credentials/openrouter?shared=true", keys["admin"])
    assert gone.status_code == 204
    assert turn(live, keys["bob"]).status_code == 503
    assert turn(live, keys["alice"]).status_code == 200
    again = call(live, "DELETE", "/v1/credentials/openrouter?shared=true", keys["admin"])
    assert again.status_code == 404

    replaced = call(
        live,
        "POST",
        "/v1/credentials",
        keys["alice"],
        json={"name": "openrouter", "value": ALICE_KEY + "x"},
    )
    assert replaced.json()["created"] is False
    bad = call(
        live, "POST", "/v1/credentials", keys["alice"], json={"name": "Bad Name!", "value": "v"}
    )
    assert bad.status_code == 422 and "name" in bad.json()["detail"]
    assert not any(s in caplog.text for s in SECRETS)

    with db.engine.connect() as conn:
        audit = conn.execute(
            text(
                "SELECT action, actor, details FROM audit_log WHERE action LIKE 'credential%'"
                " ORDER BY created_at"
            )
        ).all()
    assert [a.action for a in audit] == [
        "credential.create",
        "credential.create",
        "credential.delete",
        "credential.replace",
    ]
    assert all(a.details["name"] == "openrouter" for a in audit)
    assert not any(s in json.dumps([a.details for a in audit]) for s in SECRETS)


def test_a_tool_gets_its_declared_credential(
    live: LiveServer, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    def weather_turn() -> str:
        llm.requests.clear()
        llm.enqueue(Reply(tool_calls=[ToolCall("weather", {"city": "Paris"})]), Reply("Done."))
        assert turn(live, keys["alice"], "forecaster").status_code == 200
        first, second = llm.chat_requests()
        (tool,) = [t for t in first["tools"] if t["function"]["name"] == "weather"]
        # The model is never offered the credential as an argument.
        assert set(tool["function"]["parameters"]["properties"]) == {"city"}
        return str(second["messages"][-1]["content"])

    missing = weather_turn()
    assert "needs the credential 'weather_api_key'" in missing
    assert "POST /v1/credentials" in missing
    stored = call(
        live,
        "POST",
        "/v1/credentials",
        keys["alice"],
        json={"name": "weather_api_key", "value": WEATHER_KEY},
    )
    assert stored.status_code == 201
    assert weather_turn() == "sunny in Paris (asked with a key ending 55aa)"


def test_without_the_secret_key_routes_say_which_setting(db: Database) -> None:
    from fastapi.testclient import TestClient

    _, key = create_test_user(db, "nokey@cred.org")
    with TestClient(create_app(db, runtime_settings(None))) as client:
        response = client.post(
            "/v1/credentials", json={"name": "x", "value": "secret-value"}, headers=auth(key)
        )
        assert response.status_code == 409
        assert "AGENTRY_SECRET_KEY" in response.json()["detail"]
        assert "secret-value" not in response.text
        assert client.get("/v1/credentials", headers=auth(key)).status_code == 200
    with db.engine.connect() as conn:
        check = secret_check(runtime_settings(None), conn)
    assert not check.ok and "AGENTRY_SECRET_KEY is not set" in check.detail


def test_rotate_re_encrypts_with_the_new_key(
    db: Database, live: LiveServer, use_database: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    new = new_key()
    old_ring = keyring(load_settings(AGENTRY_SECRET_KEY=KEY))
    with db.engine.connect() as conn:
        before = {
            r.name: r.owner_id for r in conn.execute(text("SELECT name, owner_id FROM credentials"))
        }
        values = {
            name: resolve(conn, old_ring, owner, [name])[name] for name, owner in before.items()
        }
    use_database(db)
    # The new key alone cannot read the old rows: the rotation refuses, changing nothing.
    monkeypatch.setenv("AGENTRY_SECRET_KEY", new)
    refused = CliRunner().invoke(cli, ["secrets", "rotate"])
    assert refused.exit_code != 0 and "AGENTRY_SECRET_KEYS_OLD" in refused.output
    monkeypatch.setenv("AGENTRY_SECRET_KEYS_OLD", KEY)
    use_database(db)
    done = CliRunner().invoke(cli, ["secrets", "rotate"])
    assert done.exit_code == 0, done.output
    assert f"re-encrypted {len(before)} credential(s)" in done.output
    new_ring = keyring(load_settings(AGENTRY_SECRET_KEY=new))
    with db.engine.connect() as conn:
        assert set(conn.execute(text("SELECT key_id FROM credentials")).scalars()) == {
            new_ring.current_id
        }
        for name, owner in before.items():
            assert resolve(conn, new_ring, owner, [name])[name] == values[name]
        rotated = conn.execute(
            text("SELECT actor, details FROM audit_log WHERE action = 'credentials.rotate'")
        ).one()
    assert rotated.actor == "cli" and rotated.details["count"] == len(before)
    with db.engine.connect() as conn:
        assert secret_check(load_settings(AGENTRY_SECRET_KEY=new), conn).ok


def test_a_bad_secret_key_is_one_line_without_the_value() -> None:
    from core.errors import ConfigError

    with pytest.raises(ConfigError) as caught:
        load_settings(AGENTRY_SECRET_KEY="not-a-fernet-key-but-secret")
    assert "AGENTRY_SECRET_KEY" in caught.value.message
    assert "not-a-fernet-key-but-secret" not in caught.value.message
