"""Webhooks: a finished run is POSTed to the URL its creator gave, never blocking it.

The run's end only inserts a row into the outbox ``webhook_deliveries`` (in the
transaction that records it: :func:`run_finished`); a sender in every server process
posts due rows, with a lease so two senders never post the same attempt, and retries
failures with exponential backoff up to ``AGENTRY_WEBHOOK_MAX_ATTEMPTS``. Deliveries
are at least once (a sender killed mid-POST leaves the row to be posted again):
receivers deduplicate on the ``X-Agentry-Delivery`` header.

Only hosts listed in ``AGENTRY_WEBHOOK_ALLOWED_HOSTS`` are posted to (none when it
is empty): a run or cron naming another host is refused with 422, and a delivery
whose host is no longer allowed fails without being sent. Redirects are not
followed, so an allowed host cannot forward a delivery elsewhere.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import httpx
from sqlalchemy import Connection, Engine, Row, text

from config import Settings
from core.errors import ValidationFailed
from core.runs.poller import Poller
from core.runs.store import run_json
from core.runs.worker import on_run_finished

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Agentry-Signature"
DELIVERY_HEADER = "X-Agentry-Delivery"
BATCH = 20
SENDER_THREADS = 4

INSERT_SQL = text(
    "INSERT INTO webhook_deliveries (user_id, run_id, url, body)"
    " VALUES (:uid, :run_id, :url, :body) RETURNING id"
)
# Due deliveries, leased: next_attempt_at moves past the POST's timeout while it runs.
CLAIM_SQL = text(
    "UPDATE webhook_deliveries SET attempts = attempts + 1,"
    " next_attempt_at = now() + make_interval(secs => :lease)"
    " WHERE id IN (SELECT id FROM webhook_deliveries"
    "  WHERE status = 'pending' AND next_attempt_at <= now()"
    "  ORDER BY next_attempt_at LIMIT :limit FOR UPDATE SKIP LOCKED)"
    " RETURNING id, url, body, attempts"
)
DELIVERED_SQL = text(
    "UPDATE webhook_deliveries SET status = 'delivered', delivered_at = now(),"
    " last_error = NULL WHERE id = :id"
)
RETRY_SQL = text(
    "UPDATE webhook_deliveries SET next_attempt_at = now() + make_interval(secs => :delay),"
    " last_error = :error WHERE id = :id"
)
FAILED_SQL = text(
    "UPDATE webhook_deliveries SET status = 'failed', last_error = :error WHERE id = :id"
)


def host_allowed(host: str, allowed: frozenset[str]) -> bool:
    """Whether ``host`` is listed (exactly, or under a ``*.domain`` entry)."""
    host = host.lower().rstrip(".")
    return any(
        host == entry or (entry.startswith("*.") and host.endswith(entry[1:])) for entry in allowed
    )


def check_webhook(url: str | None, settings: Settings, field: str = "webhook") -> str | None:
    """The webhook URL when it may be used.

    Raises:
        ValidationFailed: not an http(s) URL, or its host is not allowed (names ``field``).
    """
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:  # e.g. an unclosed IPv6 bracket
        host = None
    if host is None or parts.scheme not in ("http", "https"):
        raise ValidationFailed(f"{field}: must be an http:// or https:// URL")
    if not host_allowed(host, settings.webhook_hosts):
        raise ValidationFailed(
            f"{field}: host {host!r} is not allowed (list it in AGENTRY_WEBHOOK_ALLOWED_HOSTS)"
        )
    return url


def sign(body: bytes, secret: str) -> str:
    """The signature header's value: ``sha256=<hex HMAC-SHA256 of the raw body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def enqueue(
    conn: Connection,
    *,
    url: str,
    run_id: uuid.UUID,
    user_id: uuid.UUID | None,
    body: dict[str, Any],
) -> uuid.UUID:
    """Queue the POST of ``body`` to ``url`` (in the caller's transaction)."""
    raw = json.dumps(body, default=str, separators=(",", ":"))
    delivery: uuid.UUID = conn.execute(
        INSERT_SQL, {"uid": user_id, "run_id": run_id, "url": url, "body": raw}
    ).scalar_one()
    return delivery


def run_finished(conn: Connection, run: Row[Any]) -> None:
    """Finish hook of durable runs: queue the run's webhook in the transaction that
    records its end. The body is the run (as ``GET .../runs/{id}`` answers it) with
    its ``values`` or ``error``."""
    url = (run.kwargs or {}).get("webhook")
    if not url:
        return
    body = {**run_json(run), "values": run.output, "error": run.error}
    enqueue(conn, url=url, run_id=run.id, user_id=run.user_id, body=body)


def _post(client: httpx.Client, settings: Settings, delivery_id: Any, url: str, raw: str) -> None:
    """One attempt; raises on anything but a 2xx answer."""
    host = urlsplit(url).hostname or ""
    if not host_allowed(host, settings.webhook_hosts):
        raise PermissionError(f"host {host!r} is no longer in AGENTRY_WEBHOOK_ALLOWED_HOSTS")
    body = raw.encode()
    headers = {"Content-Type": "application/json", DELIVERY_HEADER: str(delivery_id)}
    if settings.webhook_secret:
        headers[SIGNATURE_HEADER] = sign(body, settings.webhook_secret)
    answer = client.post(url, content=body, headers=headers)
    if not answer.is_success:
        raise httpx.HTTPStatusError(
            f"answered {answer.status_code}", request=answer.request, response=answer
        )


def claim(engine: Engine, settings: Settings, limit: int = BATCH) -> list[Row[Any]]:
    """Lease up to ``limit`` due deliveries (their attempt is counted now)."""
    with engine.begin() as conn:
        return list(
            conn.execute(CLAIM_SQL, {"lease": settings.webhook_timeout + 30, "limit": limit})
        )


def _attempt(engine: Engine, settings: Settings, client: httpx.Client, row: Row[Any]) -> None:
    try:
        _post(client, settings, row.id, row.url, row.body)
    except PermissionError as exc:
        _record(engine, FAILED_SQL, {"id": row.id, "error": str(exc)})
    except httpx.HTTPError as exc:
        error = f"attempt {row.attempts}: {type(exc).__name__}: {exc}"
        if row.attempts >= settings.webhook_max_attempts:
            log.warning("webhook %s to %s failed for good: %s", row.id, row.url, error)
            _record(engine, FAILED_SQL, {"id": row.id, "error": error})
        else:
            delay = settings.webhook_backoff * 2 ** (row.attempts - 1)
            _record(engine, RETRY_SQL, {"id": row.id, "delay": delay, "error": error})
    else:
        _record(engine, DELIVERED_SQL, {"id": row.id})


def _record(engine: Engine, sql: Any, params: dict[str, Any]) -> None:
    with engine.begin() as conn:
        conn.execute(sql, params)


class WebhookSender:
    """The process's sender: a poller that leases as many due deliveries as it has
    free threads and posts them side by side, so a slow receiver holds one thread and
    never the other deliveries (``AGENTRY_WEBHOOK_INTERVAL``; 0 disables it)."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.settings = settings
        self.client = httpx.Client(timeout=settings.webhook_timeout, follow_redirects=False)
        self.pool = ThreadPoolExecutor(SENDER_THREADS, thread_name_prefix="agentry-webhook")
        self._free = SENDER_THREADS
        self._lock = threading.Lock()
        self.poller = Poller("agentry-webhooks", settings.webhook_interval, self._step)

    def _step(self) -> int:
        with self._lock:
            free = self._free
        if free == 0:
            return 0
        rows = claim(self.engine, self.settings, free)
        for row in rows:
            with self._lock:
                self._free -= 1
            self.pool.submit(self._send, row)
        return len(rows)

    def _send(self, row: Row[Any]) -> None:
        try:
            _attempt(self.engine, self.settings, self.client, row)
        except Exception:
            log.exception("webhook %s: recording the attempt failed", row.id)
        finally:
            with self._lock:
                self._free += 1
            self.poller.wake()

    def start(self) -> WebhookSender:
        self.poller.start()
        return self

    def stop(self) -> None:
        self.poller.stop()
        self.pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


class Webhooks:
    """A process's webhooks: the finish hook (registered once per process, however
    many apps it runs) and the sender (``AGENTRY_WEBHOOK_INTERVAL``; 0: none)."""

    _users = 0
    _unhook: Callable[[], None] | None = None
    _lock = threading.Lock()

    def __init__(self, engine: Engine, settings: Settings) -> None:
        with Webhooks._lock:
            if Webhooks._users == 0:
                Webhooks._unhook = on_run_finished(run_finished)
            Webhooks._users += 1
        self.sender = (
            WebhookSender(engine, settings).start() if settings.webhook_interval > 0 else None
        )

    def stop(self) -> None:
        if self.sender is not None:
            self.sender.stop()
        with Webhooks._lock:
            Webhooks._users -= 1
            if Webhooks._users == 0 and Webhooks._unhook is not None:
                Webhooks._unhook()
                Webhooks._unhook = None


def start_webhooks(engine: Engine, settings: Settings) -> Webhooks:
    return Webhooks(engine, settings)
