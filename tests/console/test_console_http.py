"""The console over plain HTTP (live server): sign-in and its cookie, CSRF, and the same
visibility rules as the REST API (another user's conversation, admin pages and writes)."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import pytest

from core.devtools.scripted_llm import Reply, ScriptedLLM
from tests.conftest import auth
from tests.core.protocols.conftest import LiveServer

TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
META = re.compile(r'<meta name="csrf-token" content="([^"]+)">')


@contextmanager
def sign_in(live: LiveServer, key: str) -> Iterator[httpx.Client]:
    # Planning and applying a change (dry run, backup) can take a while on a busy machine.
    with httpx.Client(base_url=live.url, timeout=120) as client:
        yield signed_in(client, key)


def signed_in(client: httpx.Client, key: str) -> httpx.Client:
    form = client.get("/console/login")
    match = TOKEN.search(form.text)
    assert match, form.text
    done = client.post(
        "/console/login", data={"api_key": key, "csrf_token": match[1], "next": "/console/agents"}
    )
    assert done.status_code == 303 and done.headers["location"] == "/console/agents", done.text
    return client


def page_token(client: httpx.Client) -> str:
    match = META.search(client.get("/console/conversations").text)
    assert match
    return match[1]


@pytest.fixture(scope="module")
def alice(live: LiveServer, keys: dict[str, str]) -> Iterator[httpx.Client]:
    with sign_in(live, keys["alice"]) as client:
        yield client


def test_pages_need_a_sign_in_and_the_cookie_is_httponly_strict(
    live: LiveServer, keys: dict[str, str]
) -> None:
    with httpx.Client(base_url=live.url) as anonymous:
        away = anonymous.get("/console/audit")
        assert away.status_code == 303
        assert away.headers["location"] == "/console/login?next=/console/audit"
        form = anonymous.get("/console/login")
        token = TOKEN.search(form.text)
        assert token
        wrong = anonymous.post("/console/login", data={"api_key": "nope", "csrf_token": token[1]})
        assert wrong.status_code == 401 and "not valid" in wrong.text
        # Without the form's own token (another site posting it), no sign-in at all.
        forged = httpx.post(
            f"{live.url}/console/login", data={"api_key": keys["alice"], "csrf_token": "x"}
        )
        assert forged.status_code == 403 and "agentry_console=" not in str(forged.headers)
        form = anonymous.get("/console/login")
        token = TOKEN.search(form.text)
        assert token
        done = anonymous.post(
            "/console/login",
            data={"api_key": keys["alice"], "csrf_token": token[1], "next": "https://evil.example"},
        )
        assert done.headers["location"] == "/console/conversations"  # never off-site
        cookie = next(
            v for k, v in done.headers.multi_items() if v.startswith("agentry_console=")
        ).lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/console" in cookie


def test_state_changes_need_the_csrf_token(alice: httpx.Client) -> None:
    refused = alice.post("/console/conversations", data={"agent": "assistant"})
    assert refused.status_code == 403 and "CSRF" in refused.text
    made = alice.post(
        "/console/conversations", data={"agent": "assistant", "csrf_token": page_token(alice)}
    )
    assert made.status_code == 303 and made.headers["location"].startswith(
        "/console/conversations/"
    )
    stream = alice.post(made.headers["location"] + "/turn", json={"content": "hi"})
    assert stream.status_code == 403  # the JSON chat route too (header X-CSRF-Token)


def test_the_console_shows_what_the_api_shows(
    live: LiveServer, alice: httpx.Client, keys: dict[str, str]
) -> None:
    made = httpx.post(f"{live.url}/v1/conversations", json={}, headers=auth(keys["alice"]))
    cid = made.json()["id"]
    assert cid in alice.get("/console/conversations").text
    with sign_in(live, keys["bob"]) as bob:
        assert cid not in bob.get("/console/conversations").text
        other = bob.get(f"/console/conversations/{cid}")
        assert other.status_code == 404  # as GET /v1/conversations/{id} answers
        for page in ("/console/mechanic", "/console/audit"):
            assert bob.get(page).status_code == 403
        token = page_token(bob)
        sync = bob.post("/console/agents/sync", data={"csrf_token": token})
        switch = bob.post(
            "/console/tools/web_search", data={"csrf_token": token, "is_active": "false"}
        )
        assert sync.status_code == 403 and switch.status_code == 403
        mechanic = bob.post(
            "/console/conversations", data={"agent": "mechanic", "csrf_token": token}
        )
        assert mechanic.status_code == 403  # core/registry/access.py


def test_bad_input_is_a_4xx_page_naming_the_field(
    live: LiveServer, keys: dict[str, str], alice: httpx.Client
) -> None:
    with sign_in(live, keys["admin"]) as admin:
        bad = admin.get("/console/audit", params={"since": "yesterday"})
        assert bad.status_code == 422 and "since" in bad.text
        assert admin.get("/console/mechanic", params={"status": "bogus"}).status_code == 422
        assert admin.get("/console/mechanic", params={"status": ""}).status_code == 200
        assert admin.get("/console/mechanic/zz").status_code == 422
    assert alice.get("/console/conversations/not-a-uuid").status_code == 422
    assert alice.get("/console/conversations", params={"status": ""}).status_code == 200
    assert alice.get("/console/conversations", params={"status": "x"}).status_code == 422
    assert alice.get("/console/search", params={"q": "x", "k": "0"}).status_code == 422


def test_htmx_is_served_from_the_package_and_the_console_is_not_in_openapi(
    live: LiveServer,
) -> None:
    script = httpx.get(f"{live.url}/console/static/htmx.min.js")
    assert script.status_code == 200 and "htmx" in script.text[:200]
    paths = httpx.get(f"{live.url}/openapi.json").json()["paths"]
    assert not [p for p in paths if p.startswith("/console")]


def test_search_and_read_pages_scope_to_the_user(
    live: LiveServer, llm: ScriptedLLM, alice: httpx.Client, keys: dict[str, str]
) -> None:
    made = httpx.post(f"{live.url}/v1/conversations", json={}, headers=auth(keys["alice"]))
    llm.enqueue(Reply("Noted."))
    said = httpx.post(
        f"{live.url}/v1/conversations/{made.json()['id']}/messages",
        json={"content": "the zeppelin hangar opens at dawn"},
        headers=auth(keys["alice"]),
        timeout=30,
    )
    assert said.status_code == 200, said.text
    found = alice.get("/console/search", params={"q": "zeppelin", "mode": "keyword"})
    assert found.status_code == 200 and "zeppelin hangar" in found.text
    fragment = alice.get(
        "/console/search", params={"q": "zeppelin", "mode": "keyword"}, headers={"HX-Request": "1"}
    )
    assert "<html" not in fragment.text and "zeppelin hangar" in fragment.text
    with sign_in(live, keys["bob"]) as bob:
        assert (
            "zeppelin hangar"
            not in bob.get("/console/search", params={"q": "zeppelin", "mode": "keyword"}).text
        )
        agents = bob.get("/console/agents").text
        assert "assistant" in agents and "scripted" in agents  # the default model's row
        assert "No entity types yet" in bob.get("/console/entities").text


def test_admin_writes_on_the_registry_page(live: LiveServer, keys: dict[str, str]) -> None:
    with sign_in(live, keys["admin"]) as admin:
        page = admin.get("/console/agents").text
        assert 'id="sync-agents"' in page and 'class="tool-switch"' in page
        token = page_token(admin)
        synced = admin.post("/console/agents/sync", data={"csrf_token": token})
        assert synced.status_code == 303 and synced.headers["location"].startswith(
            "/console/agents?synced="
        )
        assert "changes</span>" in admin.get(synced.headers["location"]).text
        # The REST rule holds here too: a tool an agent uses cannot be switched off.
        refused = admin.post(
            "/console/tools/apply_change", data={"csrf_token": token, "is_active": "false"}
        )
        assert refused.status_code == 422 and "used by agents" in refused.text
    tool = httpx.get(f"{live.url}/v1/tools/apply_change", headers=auth(keys["admin"])).json()
    assert tool["is_active"] is True


@pytest.mark.slow  # planning dry-runs the change in a shadow database; apply takes a backup
def test_an_admin_plans_applies_and_rolls_back_from_the_mechanic_page(
    live: LiveServer, keys: dict[str, str]
) -> None:
    spec = {
        "action": "add_entity",
        "entity": "gadget",
        "fields": [{"name": "label", "type": "text"}],
    }
    with sign_in(live, keys["admin"]) as admin:
        token = page_token(admin)
        planned = admin.post("/console/mechanic", data={"csrf_token": token, "spec": "{nope"})
        assert planned.status_code == 422 and "spec" in planned.text
        planned = admin.post(
            "/console/mechanic", data={"csrf_token": token, "spec": json.dumps(spec)}
        )
        assert planned.status_code == 303, planned.text
        page = admin.get(planned.headers["location"])
        change_id = planned.headers["location"].rsplit("/", 1)[1]
        assert "CREATE TABLE gadget" in page.text and 'id="apply"' in page.text
        applied = admin.post(f"/console/mechanic/{change_id}/apply", data={"csrf_token": token})
        assert applied.status_code == 303
        page = admin.get(f"/console/mechanic/{change_id}")
        assert 'class="status-applied">applied' in page.text and 'id="rollback"' in page.text
        assert "gadget" in admin.get("/console/entities").text
        undone = admin.post(f"/console/mechanic/{change_id}/rollback", data={"csrf_token": token})
        assert undone.status_code == 303
        via_api = httpx.get(
            f"{live.url}/v1/mechanic/changes/{change_id}", headers=auth(keys["admin"])
        ).json()
        assert via_api["status"] == "rolled_back"
        audit = admin.get("/console/audit", params={"action": "rollback"}).text
        assert change_id in audit


def test_an_agent_change_is_planned_and_applied_from_the_mechanic_page(
    live: LiveServer, keys: dict[str, str]
) -> None:
    poet = {
        "action": "add_agent",
        "agent": "poet",
        "description": "Writes verse.",
        "system_prompt": "Write verse.",
        "tools": ["current_time"],
    }
    with sign_in(live, keys["admin"]) as admin:
        token = page_token(admin)
        planned = admin.post(
            "/console/mechanic", data={"csrf_token": token, "spec": json.dumps(poet)}
        )
        assert planned.status_code == 303, planned.text
        page = admin.get(planned.headers["location"]).text
        assert "agents/poet.yaml" in page and "No SQL" in page and 'id="apply"' in page
        applied = admin.post(planned.headers["location"] + "/apply", data={"csrf_token": token})
        assert applied.status_code == 303
        assert "Writes verse." in admin.get("/console/agents").text
