"""OpenTelemetry traces of a turn: HTTP -> runtime -> model call -> database.

Off unless an OTLP/HTTP endpoint is configured (``AGENTRY_OTLP_ENDPOINT``, or the standard
``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``). Off, nothing of
the SDK or the exporter is imported and :func:`span` is a ``nullcontext``. On, the
instrumentations from PyPI make the HTTP server spans (FastAPI), the SQL spans (SQLAlchemy
engine) and outgoing httpx spans (webhooks, catalogue sync); Agentry adds the
``agentry.turn`` and ``agentry.model_call`` spans between them. The OpenAI client under
the model call speaks httpx2, which no maintained instrumentation covers yet: the
``agentry.model_call`` span (model name, duration, error) stands for it. One provider per
process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

from fastapi import FastAPI
from sqlalchemy import Engine

import core
from config import Settings

T = TypeVar("T")
OTEL_ENDPOINT_VARIABLES = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
_state: dict[str, Any] = {}  # "provider", "tracer" once tracing started in this process


def endpoint(settings: Settings) -> str | None:
    """Where spans go; "" when the exporter reads the standard variables; None: off."""
    if settings.otlp_endpoint:
        return settings.otlp_endpoint + "/v1/traces"
    if any(os.environ.get(name, "").strip() for name in OTEL_ENDPOINT_VARIABLES):
        return ""
    return None


def enabled() -> bool:
    return "tracer" in _state


class Tracing:
    """This process's tracer provider and what it instruments."""

    def __init__(self, url: str) -> None:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        if "provider" not in _state:
            resource = Resource.create(
                {
                    "service.name": os.environ.get("OTEL_SERVICE_NAME") or "agentry",
                    "service.version": core.__version__,
                }
            )
            provider = TracerProvider(resource=resource)
            exporter = OTLPSpanExporter(endpoint=url) if url else OTLPSpanExporter()
            provider.add_span_processor(BatchSpanProcessor(exporter))
            trace.set_tracer_provider(provider)
            HTTPXClientInstrumentor().instrument(tracer_provider=provider)
            _state["provider"] = provider
            _state["tracer"] = provider.get_tracer("agentry", core.__version__)
        self.provider = _state["provider"]

    def instrument_app(self, app: FastAPI) -> None:
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

        # No spans for each ASGI send/receive message: one server span per request.
        FastAPIInstrumentor.instrument_app(
            app, tracer_provider=self.provider, exclude_spans=["receive", "send"]
        )

    def instrument_engine(self, engine: Engine) -> None:
        # The instrumentation's own EngineTracer on this engine's events. Not through
        # SQLAlchemyInstrumentor().instrument(): that declares "sqlalchemy < 2.1" (and does
        # nothing on 2.1) and also wraps the asyncio engine, which needs greenlet. The
        # engine events it listens to are the same in 2.1 (tests/core/ops/test_tracing.py).
        from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
        from opentelemetry.instrumentation.sqlalchemy.version import __version__
        from opentelemetry.metrics import NoOpMeter

        if id(engine) in _state.setdefault("engines", set()):
            return
        _state["engines"].add(id(engine))
        tracer = self.provider.get_tracer("opentelemetry.instrumentation.sqlalchemy", __version__)
        usage = NoOpMeter("agentry").create_up_down_counter("db.client.connections.usage")
        EngineTracer(tracer, engine, usage)

    def flush(self) -> None:
        self.provider.force_flush()


def start_tracing(settings: Settings) -> Tracing | None:
    """Tracing for this process when an endpoint is configured; None otherwise."""
    url = endpoint(settings)
    return None if url is None else Tracing(url)


def span(name: str, **attributes: Any) -> AbstractContextManager[Any]:
    """A span, current while the block runs (a no-op when tracing is off)."""
    tracer = _state.get("tracer")
    if tracer is None:
        return nullcontext()
    return tracer.start_as_current_span(name, attributes=attributes or None)


def traced(name: str, events: Iterator[T], **attributes: Any) -> Iterator[T]:
    """``events`` under one span; the span is current only while each item is made.

    A generator that is consumed from several threads (SSE streams) must not keep a
    context attached across its ``yield``: it is attached and detached around each step.
    """
    tracer = _state.get("tracer")
    if tracer is None:
        yield from events
        return
    from opentelemetry import context, trace

    current = tracer.start_span(name, attributes=attributes or None)
    try:
        while True:
            token = context.attach(trace.set_span_in_context(current))
            try:
                item = next(events)
            except StopIteration:
                return
            except Exception as exc:
                current.record_exception(exc)
                current.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
                raise
            finally:
                context.detach(token)
            yield item
    finally:
        close = getattr(events, "close", None)
        if close is not None:
            close()  # a client that left stops the turn (as without tracing)
        current.end()
