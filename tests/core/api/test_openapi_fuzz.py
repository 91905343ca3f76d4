"""Property-based: schemathesis drives every route of ``/openapi.json`` against the live
server (uvicorn, real PostgreSQL) and fails on any 5xx or any answer the document does
not declare (status, content type, body schema).

Fixed seed (derandomized) and a bounded number of examples per operation keep it
reproducible and its runtime bounded.

Excluded: the mechanic's plan, apply and rollback (``POST /v1/mechanic/changes...``):
a spec runs a dry run on a scratch database and an instruction asks a model, so one
example costs seconds; their validation is covered by tests/core/mechanic/test_api.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    negative_data_rejection,
    response_schema_conformance,
    status_code_conformance,
)

from core.api.app import create_app
from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import auth, create_test_user
from tests.core.protocols.conftest import LiveServer
from tests.core.runtime.helpers import prepare_registry, runtime_settings

pytestmark = pytest.mark.slow

MAX_EXAMPLES = 6
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module")
def live(db: Database) -> Iterator[tuple[LiveServer, str]]:
    with ScriptedLLM() as llm:
        test_settings = runtime_settings(llm.base_url)
        prepare_registry(db, test_settings)
        _, key = create_test_user(db, "fuzz-admin@example.org", admin=True)
        with LiveServer(create_app(db, test_settings)) as server:
            yield server, key


def run_operation(operation: Any, key: str, mode: GenerationMode) -> str | None:
    """Drive one operation; the failure's report, or None."""

    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate],  # no shrinking: the report is enough
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def check(case: Any) -> None:
        checks = CHECKS if mode is GenerationMode.POSITIVE else [*CHECKS, negative_data_rejection]
        case.call_and_validate(headers=auth(key), checks=checks, timeout=20)

    try:
        check()
    except Unsatisfiable:  # nothing to make invalid (no parameters): nothing to test
        return None
    except (Exception, BaseExceptionGroup) as exc:  # a failed check is raised
        parts = [exc, *getattr(exc, "exceptions", ())]
        return f"{mode.value} {operation.label}: " + " | ".join(str(p)[:1500] for p in parts)
    return None


def test_every_route_answers_what_the_document_says(live: tuple[LiveServer, str]) -> None:
    server, key = live
    schema = schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(
        path_regex=r"^/v1/mechanic/changes", method="POST"
    )
    # The first search loads the embedding model: not while an example waits on it.
    httpx.get(f"{server.url}/v1/search", params={"q": "warm up"}, headers=auth(key), timeout=120)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40
    failures = [
        report
        for operation in operations
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
        if (report := run_operation(operation, key, mode)) is not None
    ]
    assert not failures, "\n\n".join(failures)
