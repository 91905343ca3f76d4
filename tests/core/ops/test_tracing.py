"""Traces of a turn reach an OTLP/HTTP collector: the HTTP request, the turn, the model call
and the SQL it ran, in one trace. Without an endpoint nothing of the SDK is imported."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span

from core.db import Database
from core.devtools.scripted_llm import ScriptedLLM
from tests.conftest import auth, create_test_user, fresh_database
from tests.core.protocols.test_runs_processes import Server
from tests.core.runtime.helpers import ROOT


class Collector:
    """A local OTLP/HTTP receiver: decodes every POST /v1/traces into its spans."""

    def __init__(self) -> None:
        self.spans: list[Span] = []
        self.paths: list[str] = []
        lock = threading.Lock()
        collector = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                request = ExportTraceServiceRequest()
                request.ParseFromString(body)
                with lock:
                    collector.paths.append(self.path)
                    for resource in request.resource_spans:
                        for scope in resource.scope_spans:
                            collector.spans.extend(scope.spans)
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> Collector:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def llm() -> Iterator[ScriptedLLM]:
    with ScriptedLLM() as server:
        yield server


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    with Collector() as running:
        yield running


@pytest.fixture(scope="module")
def traced_db(pg_server: Any, template_db: str, test_settings: Any) -> Iterator[Database]:
    database = fresh_database(pg_server, test_settings, "tracing")
    yield database
    database.dispose()


@pytest.fixture(scope="module")
def server(
    traced_db: Database,
    llm: ScriptedLLM,
    collector: Collector,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Server]:
    env = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DATABASE_URL": traced_db.url.render_as_string(hide_password=False),
        "AGENTRY_PROJECT_DIR": str(ROOT),
        "AGENTRY_LLM_BASE_URL": llm.base_url,
        "AGENTRY_LLM_MODEL": "scripted",
        "AGENTRY_EMBED_INTERVAL": "0",
        "AGENTRY_RUN_WORKERS": "0",
        "AGENTRY_CRON_INTERVAL": "0",
        "AGENTRY_WEBHOOK_INTERVAL": "0",
        "AGENTRY_OTLP_ENDPOINT": collector.url,
        "OTEL_BSP_SCHEDULE_DELAY": "100",  # milliseconds: export soon after each span
    }
    running = Server(env, tmp_path_factory.mktemp("traced") / "server.log")
    try:
        running.wait_ready()
        yield running
    finally:
        running.stop()


def wait_for(collector: Collector, done: Any, timeout: float = 30) -> list[Span]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        spans = list(collector.spans)
        if done(spans):
            return spans
        time.sleep(0.1)
    names = sorted({s.name for s in collector.spans})
    raise AssertionError(f"spans did not arrive; got {names}")


@pytest.mark.slow
def test_a_turn_is_one_trace_from_http_to_model_and_database(
    server: Server, collector: Collector, traced_db: Database
) -> None:
    _, key = create_test_user(traced_db, "dana@example.org")
    created = httpx.post(f"{server.url}/v1/conversations", json={}, headers=auth(key))
    assert created.status_code == 201, created.text
    cid = created.json()["id"]
    said = httpx.post(
        f"{server.url}/v1/conversations/{cid}/messages",
        json={"content": "hello there"},
        headers=auth(key),
        timeout=60,
    )
    assert said.status_code == 200, said.text

    def turn_is_complete(spans: list[Span]) -> bool:
        turns = [s for s in spans if s.name == "agentry.turn"]
        if not turns:
            return False
        trace = turns[0].trace_id
        names = {s.name for s in spans if s.trace_id == trace}
        return "agentry.model_call" in names and any(
            s.kind == Span.SPAN_KIND_SERVER for s in spans if s.trace_id == trace
        )

    spans = wait_for(collector, turn_is_complete)
    assert set(collector.paths) == {"/v1/traces"}
    turn = next(s for s in spans if s.name == "agentry.turn")
    trace = [s for s in spans if s.trace_id == turn.trace_id]
    by_id = {s.span_id: s for s in trace}
    http = [s for s in trace if s.kind == Span.SPAN_KIND_SERVER]
    assert len(http) == 1
    assert http[0].name == "POST /v1/conversations/{conversation_id}/messages"
    model = next(s for s in trace if s.name == "agentry.model_call")
    assert model.parent_span_id == turn.span_id
    assert {a.key: a.value.string_value for a in model.attributes}["model"] == "default"

    def ancestors(span: Span) -> list[str]:
        chain = []
        while span.parent_span_id in by_id:
            span = by_id[span.parent_span_id]
            chain.append(span.name)
        return chain

    assert http[0].name in ancestors(turn)  # HTTP -> turn
    sql = [s for s in trace if any(a.key in {"db.system", "db.system.name"} for a in s.attributes)]
    assert sql, "no database span in the turn's trace"
    assert any("agentry.turn" in ancestors(s) for s in sql)  # turn -> database


def test_without_an_endpoint_no_tracing_code_is_imported(llm: ScriptedLLM) -> None:
    probe = (
        "import sys\n"
        "from core.api.app import create_app\n"
        "from core.observability import tracing\n"
        "create_app()\n"
        # (langsmith imports opentelemetry.sdk when it is installed: not Agentry's doing)
        "loaded = [m for m in sys.modules if m.startswith(("
        "'opentelemetry.exporter', 'opentelemetry.instrumentation'))]\n"
        "print(tracing.enabled(), loaded)\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "AGENTRY_OTLP"))}
    env["PYTHONPATH"] = str(ROOT)
    result = subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False []"
