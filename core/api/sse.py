"""Server-sent events: the one streaming helper of every surface.

The REST turn stream, the Agent Protocol run streams and the OpenAI chunk stream
all go through :func:`sse_response`. It formats events (``event:``, ``data:``,
``id:``), writes a comment line when the source has been quiet for a while (so
proxies and clients do not take an idle stream for a dead one), and notices a
client that left: the source is closed, and ``on_disconnect`` runs.

A blocking source (an iterator such as :func:`core.runtime.turns.run_turn`) is
drained by a thread of its own, so a turn that takes minutes holds no thread of
the server's pool; an async source is read in the event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi.responses import StreamingResponse

from core.errors import AgentryError

log = logging.getLogger(__name__)

KEEPALIVE = ": keep-alive\n\n"
HEARTBEAT = "\n"  # JSON parsers skip leading whitespace: what keeps a long wait open


@dataclass(frozen=True)
class Event:
    """One SSE event; ``data`` is sent as JSON unless it is already a string."""

    data: Any
    event: str | None = None
    id: str | int | None = None

    def encode(self) -> str:
        body = self.data if isinstance(self.data, str) else json.dumps(self.data, default=str)
        lines = [f"event: {self.event}"] if self.event is not None else []
        lines += [f"data: {line}" for line in body.split("\n")]
        if self.id is not None:
            lines.append(f"id: {self.id}")
        return "\n".join(lines) + "\n\n"


class _End:
    """Marks the end of a source (or, with ``error``, its failure)."""

    def __init__(self, error: BaseException | None = None) -> None:
        self.error = error


Source = Iterable[Event] | AsyncIterator[Event]


def _pump(
    source: Iterable[Event],
    loop: asyncio.AbstractEventLoop,
    queue: asyncio.Queue[Event | _End],
    stop: threading.Event,
) -> None:
    """Drain a blocking source into the queue (own thread); stops after the next event
    once the client has left, and closes the source in the thread that ran it."""

    def put(item: Event | _End) -> None:
        if not loop.is_closed():  # a server shutting down may have closed it
            loop.call_soon_threadsafe(queue.put_nowait, item)

    iterator = iter(source)
    end = _End()
    try:
        for item in iterator:
            if stop.is_set():
                break
            put(item)
    except BaseException as exc:  # handed to the response; it decides what the client sees
        end = _End(exc)
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            try:
                close()
            except Exception:
                log.exception("closing a stream's source failed")
        put(end)


async def _drain(source: AsyncIterator[Event], queue: asyncio.Queue[Event | _End]) -> None:
    try:
        async for item in source:
            await queue.put(item)
    except Exception as exc:
        await queue.put(_End(exc))
    else:
        await queue.put(_End())


async def _call(on_disconnect: Callable[[], None]) -> None:
    """Run a disconnect callback (it may touch the database) in a worker thread, shielded
    from the cancellation that announced the disconnect."""
    with anyio.CancelScope(shield=True):
        try:
            await anyio.to_thread.run_sync(on_disconnect)
        except Exception:
            log.exception("on_disconnect of a stream failed")


async def events(
    source: Source,
    *,
    keepalive: float,
    on_disconnect: Callable[[], None] | None = None,
) -> AsyncIterator[str]:
    """The encoded stream of ``source``, with a keep-alive comment after every
    ``keepalive`` seconds without an event.

    Raises:
        Whatever the source raised (after the events it produced).
    """
    queue: asyncio.Queue[Event | _End] = asyncio.Queue()
    stop = threading.Event()
    task: asyncio.Task[None] | None = None
    if isinstance(source, AsyncIterator):
        task = asyncio.ensure_future(_drain(source, queue))
    else:
        loop = asyncio.get_running_loop()
        threading.Thread(
            target=_pump, args=(source, loop, queue, stop), name="agentry-sse", daemon=True
        ).start()
    ended = False
    try:
        while True:
            try:
                item = await asyncio.wait_for(queue.get(), timeout=keepalive)
            except TimeoutError:
                yield KEEPALIVE
                continue
            if isinstance(item, _End):
                ended = True
                if item.error is not None:
                    raise item.error
                return
            yield item.encode()
    finally:
        if not ended:
            # The client left (the server cancelled the stream or closed it).
            stop.set()
            if task is not None:
                task.cancel()  # raised inside the source, which ends it
                with anyio.CancelScope(shield=True):
                    await asyncio.wait({task})
            if on_disconnect is not None:
                await _call(on_disconnect)


class _ClosingStreamingResponse(StreamingResponse):
    """Closes the body iterator however the response ends (a send to a closed socket
    included), so the stream's clean-up runs now, not when it is garbage collected."""

    async def stream_response(self, send: Any) -> None:
        try:
            await super().stream_response(send)
        finally:
            aclose = getattr(self.body_iterator, "aclose", None)
            if aclose is not None:
                with anyio.CancelScope(shield=True):
                    await aclose()


def sse_response(
    source: Source,
    *,
    keepalive: float,
    headers: Mapping[str, str] | None = None,
    on_disconnect: Callable[[], None] | None = None,
) -> StreamingResponse:
    """A ``text/event-stream`` response of ``source`` (see :func:`events`)."""
    return _ClosingStreamingResponse(
        events(source, keepalive=keepalive, on_disconnect=on_disconnect),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", **(headers or {})},
    )


def _result(future: asyncio.Future[Any]) -> Any:
    """The answer, or (the status line is long sent) the failure as a run error body."""
    try:
        return future.result()
    except AgentryError as exc:
        return {"__error__": {"error": exc.title, "message": exc.message}}
    except Exception:
        log.exception("a long answer failed")
        return {"__error__": {"error": "Internal error", "message": "see the server log"}}


async def _heartbeat(
    produce: Callable[[], Any],
    encode: Callable[[Any], str],
    interval: float,
    on_disconnect: Callable[[], None] | None,
) -> AsyncIterator[str]:
    future = asyncio.ensure_future(anyio.to_thread.run_sync(produce))
    ended = False
    try:
        while True:
            done, _ = await asyncio.wait({future}, timeout=interval)
            if done:
                ended = True
                yield encode(_result(future))
                return
            yield HEARTBEAT
    finally:
        if not ended and on_disconnect is not None:
            await _call(on_disconnect)


def json_with_heartbeat(
    produce: Callable[[], Any],
    *,
    interval: float,
    headers: Mapping[str, str] | None = None,
    on_disconnect: Callable[[], None] | None = None,
) -> StreamingResponse:
    """A JSON answer that takes long (``produce`` blocks until it is ready): a newline
    every ``interval`` seconds meanwhile keeps the connection alive."""
    return _ClosingStreamingResponse(
        _heartbeat(produce, lambda v: json.dumps(v, default=str), interval, on_disconnect),
        media_type="application/json",
        headers=dict(headers or {}),
    )
