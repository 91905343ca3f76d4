"""GET /v1/search: modes, scoping, filters, ranks and 4xx problems naming the parameter."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient

from config import Settings
from core.api.app import create_app
from core.db import Database
from core.memory.embeddings import Embedder, get_embedder
from core.memory.indexer import index_document
from tests.conftest import auth, create_test_user

OLD = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture(scope="module")
def world(db: Database, test_settings: Settings) -> Iterator[dict[str, Any]]:
    embedder: Embedder = get_embedder(test_settings)
    alice, alice_key = create_test_user(db, "alice@search.org")
    bob, bob_key = create_test_user(db, "bob@search.org")
    _, admin_key = create_test_user(db, "root@search.org", admin=True)
    docs = {
        "violin": (alice.id, "message", "I practice the violin every evening", {"role": "user"}),
        "cello": (alice.id, "message", "The cello concert was moving", {"role": "assistant"}),
        "recipe": (alice.id, "recipe", "Slow-cooked tomato sauce with basil", {}),
        "bob": (bob.id, "message", "Bob plays the violin in an orchestra", {"role": "user"}),
    }
    ids = {name: uuid.uuid4() for name in docs}
    with db.engine.begin() as conn:
        for name, (owner, etype, body, meta) in docs.items():
            index_document(
                conn,
                entity_type=etype,
                entity_id=ids[name],
                text=body,
                user_id=owner,
                metadata=meta,
                embedder=embedder,
                created_at=OLD if name == "cello" else None,
            )
    app = create_app(db, test_settings)
    with TestClient(app) as client:
        yield {
            "client": client,
            "ids": ids,
            "alice": auth(alice_key),
            "bob": auth(bob_key),
            "admin": auth(admin_key),
        }


def hits(world: dict[str, Any], who: str, **params: Any) -> list[dict[str, Any]]:
    r = world["client"].get("/v1/search", params=params, headers=world[who])
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["mode"] == params.get("mode", "hybrid") and body["k"] == params.get("k", 10)
    return body["hits"]


def names(world: dict[str, Any], found: list[dict[str, Any]]) -> list[str]:
    by_id = {str(v): k for k, v in world["ids"].items()}
    return [by_id[h["entity_id"]] for h in found]


def test_hybrid_is_the_default_and_hits_carry_every_field(world: dict[str, Any]) -> None:
    found = hits(world, "alice", q="violin lessons")
    assert names(world, found)[0] == "violin"
    top = found[0]
    assert set(top) == {
        "entity_type",
        "entity_id",
        "snippet",
        "score",
        "rank",
        "metadata",
        "created_at",
    }
    assert top["entity_type"] == "message" and top["snippet"].startswith("I practice")
    assert top["rank"] == {"vector": 1, "keyword": 1} and top["score"] > 0


def test_each_mode_and_scoping_to_the_caller(world: dict[str, Any]) -> None:
    vec = hits(world, "alice", q="string instrument music", mode="vector", k=2)
    assert set(names(world, vec)) == {"violin", "cello"}
    assert all(set(h["rank"]) == {"vector"} for h in vec)
    kw = hits(world, "alice", q="tomato", mode="keyword")
    assert names(world, kw) == ["recipe"] and kw[0]["rank"] == {"keyword": 1}
    # Bob's violin is not Alice's, and Alice's are not Bob's; the admin sees both.
    assert "bob" not in names(world, hits(world, "alice", q="violin", k=10))
    assert names(world, hits(world, "bob", q="violin", mode="keyword")) == ["bob"]
    assert {"violin", "bob"} <= set(names(world, hits(world, "admin", q="violin", k=10)))
    assert world["client"].get("/v1/search", params={"q": "violin"}).status_code == 401


def test_filters_entity_type_time_and_metadata(world: dict[str, Any]) -> None:
    only = hits(world, "alice", q="food", entity_type="recipe")
    assert names(world, only) == ["recipe"]
    since = (datetime.now(UTC) - timedelta(days=1)).isoformat()
    recent = names(world, hits(world, "alice", q="music", mode="vector", since=since))
    assert "cello" not in recent and "violin" in recent
    old = names(world, hits(world, "alice", q="music", mode="vector", until="2025-01-01T00:00:00Z"))
    assert old == ["cello"]
    meta = hits(world, "alice", q="music", mode="vector", **{"meta.role": "assistant"})
    assert names(world, meta) == ["cello"]
    assert hits(world, "alice", q="music", **{"meta.role": "nobody"}) == []


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"q": "x", "k": 101}, "k"),
        ({"q": "x", "k": 0}, "k"),
        ({"q": "x", "mode": "fuzzy"}, "mode"),
        ({"q": ""}, "q"),
        ({}, "q"),
        ({"q": "x", "since": "yesterday"}, "since"),
        ({"q": "x", "since": "2025-02-01T00:00:00Z", "until": "2025-01-01T00:00:00Z"}, "since"),
        ({"q": "x", "meta.": "v"}, "meta."),
    ],
)
def test_bad_parameters_are_4xx_problems_naming_the_parameter(
    world: dict[str, Any], params: dict[str, Any], field: str
) -> None:
    r = world["client"].get("/v1/search", params=params, headers=world["alice"])
    assert r.status_code == 422
    assert r.headers["content-type"].startswith("application/problem+json")
    assert field in r.json()["detail"]


def test_server_embeds_new_messages_in_the_background(db: Database, world: dict[str, Any]) -> None:
    import time

    from sqlalchemy import select

    from core.models import User

    with db.engine.begin() as conn:
        alice_id = conn.execute(select(User.id).where(User.email == "alice@search.org")).scalar()
        fresh = uuid.uuid4()
        # What the chat path does: index without embedding, in its own transaction.
        index_document(
            conn,
            entity_type="message",
            entity_id=fresh,
            text="Remind me to renew the car insurance",
            user_id=alice_id,
        )
    deadline = time.monotonic() + 30
    found: list[str] = []
    while time.monotonic() < deadline:
        found = [
            h["entity_id"] for h in hits(world, "alice", q="vehicle policy", mode="vector", k=1)
        ]
        if found == [str(fresh)]:
            break
        time.sleep(0.2)
    assert found == [str(fresh)]
