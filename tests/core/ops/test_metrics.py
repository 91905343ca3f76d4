"""GET /metrics: who may read it, and what it counts (route templates, turns, models,
tokens, backlog, runs, pools, refusals)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import text

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import Reply, ScriptedLLM
from core.memory.worker import EmbeddingWorker
from tests.conftest import auth, create_test_user
from tests.core.ops.helpers import series, value
from tests.core.runtime.helpers import runtime_settings


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def client(db: Database, llm: ScriptedLLM) -> Iterator[TestClient]:
    # No embedding worker and no run workers: the backlog and the queue stay as made.
    settings = runtime_settings(llm.base_url, AGENTRY_EMBED_INTERVAL=0, AGENTRY_RUN_WORKERS=0)
    with TestClient(create_app(db, settings)) as c:
        yield c


@pytest.fixture(scope="module")
def keys(db: Database) -> dict[str, str]:
    _, alice = create_test_user(db, "alice@example.org")
    _, admin = create_test_user(db, "root@example.org", admin=True)
    return {"alice": alice, "admin": admin}


def scrape(client: TestClient, keys: dict[str, str]) -> str:
    response = client.get("/metrics", headers=auth(keys["admin"]))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def test_only_admins_read_metrics_unless_public(
    client: TestClient, keys: dict[str, str], db: Database, llm: ScriptedLLM
) -> None:
    assert client.get("/metrics").status_code == 401
    assert client.get("/metrics", headers=auth(keys["alice"])).status_code == 403
    assert client.get("/metrics", headers=auth(keys["admin"])).status_code == 200
    public = runtime_settings(llm.base_url, AGENTRY_METRICS_PUBLIC=True, AGENTRY_EMBED_INTERVAL=0)
    with TestClient(create_app(db, public)) as anyone:
        response = anyone.get("/metrics")
        assert response.status_code == 200
        assert "agentry_http_requests_total" in response.text


def test_requests_are_counted_by_route_template_not_path(
    client: TestClient, keys: dict[str, str]
) -> None:
    before = scrape(client, keys)
    template = "/v1/conversations/{conversation_id}"
    ids = [str(uuid.uuid4()) for _ in range(3)]
    for cid in ids:
        assert client.get(f"/v1/conversations/{cid}", headers=auth(keys["alice"])).status_code
    client.get("/no/such/route/" + ids[0])
    after = scrape(client, keys)
    counted = value(
        after, "agentry_http_requests_total", method="GET", route=template, status="404"
    )
    assert (
        counted
        - value(before, "agentry_http_requests_total", method="GET", route=template, status="404")
        == 3
    )
    routes = {s["route"] for s in series(after, "agentry_http_requests_total")}
    assert not any(cid in route for route in routes for cid in ids)  # no raw paths
    assert "unmatched" in routes
    assert (
        value(after, "agentry_http_request_duration_seconds_count", method="GET", route=template)
        >= 3
    )


def test_turns_model_calls_and_tokens(
    client: TestClient, keys: dict[str, str], llm: ScriptedLLM
) -> None:
    before = scrape(client, keys)
    created = client.post("/v1/conversations", json={}, headers=auth(keys["alice"]))
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    llm.enqueue(Reply(content="four words of answer"))
    sent = client.post(
        f"/v1/conversations/{cid}/messages",
        json={"content": "two words"},
        headers=auth(keys["alice"]),
    )
    assert sent.status_code == 200, sent.text
    llm.enqueue(Reply(status=500), Reply(status=500))
    failed = client.post(
        f"/v1/conversations/{cid}/messages", json={"content": "again"}, headers=auth(keys["alice"])
    )
    assert failed.status_code == 503, failed.text
    after = scrape(client, keys)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("agentry_turns_total", outcome="completed") == 1
    assert delta("agentry_turns_total", outcome="failed") == 1
    assert delta("agentry_turn_duration_seconds_count", outcome="completed") == 1
    assert delta("agentry_model_calls_total", model="default", outcome="ok") == 1
    assert delta("agentry_model_calls_total", model="default", outcome="error") >= 1
    assert delta("agentry_model_call_duration_seconds_count", model="default") >= 2
    # The scripted server reports words as tokens: 4 for the answer, the prompt's own.
    assert delta("agentry_model_tokens_total", model="default", kind="completion") == 4
    assert delta("agentry_model_tokens_total", model="default", kind="prompt") > 0
    llm.clear()


def test_backlog_runs_and_pools_are_read_at_scrape_time(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    with db.engine.begin() as conn:
        pending = conn.execute(
            text("SELECT count(*) FROM search_index WHERE embedding IS NULL")
        ).scalar_one()
        conn.execute(
            text(
                "INSERT INTO search_index (entity_type, entity_id, chunk, content, metadata)"
                " SELECT 'note', gen_random_uuid(), 0, 'text ' || i, '{}'"
                " FROM generate_series(1, 5) i"
            )
        )
    assert value(scrape(client, keys), "agentry_embedding_backlog") == pending + 5
    thread = client.post("/threads", json={}, headers=auth(keys["alice"]))
    assert thread.status_code == 200, thread.text
    run = client.post(
        f"/threads/{thread.json()['thread_id']}/runs",
        json={
            "assistant_id": "assistant",
            "input": {"messages": [{"role": "user", "content": "hi"}]},
        },
        headers=auth(keys["alice"]),
    )
    assert run.status_code == 200, run.text
    after = scrape(client, keys)
    assert value(after, "agentry_runs", status="pending") >= 1
    assert value(after, "agentry_runs", status="running") == 0
    assert value(after, "agentry_db_pool_size", pool="engine") > 0
    assert {"pool": "engine"} in series(after, "agentry_db_pool_in_use")
    assert value(after, "agentry_db_pool_size", pool="checkpoints") > 0


def test_the_embedding_worker_counts_what_it_embeds(
    client: TestClient, keys: dict[str, str], db: Database
) -> None:
    before = scrape(client, keys)
    backlog = value(before, "agentry_embedding_backlog")
    assert backlog >= 5  # left by the test above: this module's worker is off
    worker = EmbeddingWorker(db.engine, client.app.state.settings)  # type: ignore[attr-defined]
    embedded = 0
    while n := worker.run_once():
        embedded += n
    after = scrape(client, keys)
    assert embedded == backlog
    assert value(after, "agentry_embeddings_total") - value(before, "agentry_embeddings_total") == (
        embedded
    )
    assert value(after, "agentry_embedding_backlog") == 0
