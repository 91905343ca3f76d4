"""The model catalogue of an OpenAI-compatible endpoint (``GET /models``), read through
a memory cache, then the database, then the endpoint."""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import httpx
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

from core.errors import AgentryError, ValidationFailed
from core.models import AiModel

# How long a fetched catalogue is trusted before the endpoint is asked again.
CATALOGUE_TTL_SECONDS = 3600.0


class EndpointError(AgentryError):
    status = 502
    title = "Model endpoint failed"


@dataclass(frozen=True)
class CatalogueModel:
    model_id: str
    is_free: bool
    context_length: int | None
    description: str | None


@dataclass
class CatalogueResult:
    source: str  # memory | database | endpoint
    models: list[CatalogueModel]
    written: int = 0


_memory: dict[str, tuple[float, list[CatalogueModel]]] = {}
_lock = threading.Lock()


def clear_memory_cache() -> None:
    with _lock:
        _memory.clear()


def _is_free(pricing: Any) -> bool:
    if not isinstance(pricing, dict) or not pricing:
        return False
    try:
        return all(float(v) == 0 for v in pricing.values() if v is not None)
    except (TypeError, ValueError):
        return False


def parse_models(payload: Any) -> list[CatalogueModel]:
    """The models of a ``/models`` answer (OpenAI or OpenRouter shape)."""
    data = payload.get("data") if isinstance(payload, dict) else None
    if not isinstance(data, list):
        raise EndpointError("the endpoint's /models answer has no 'data' list")
    found = []
    for item in data:
        if not isinstance(item, dict) or not isinstance(item.get("id"), str):
            continue
        context = item.get("context_length")
        found.append(
            CatalogueModel(
                model_id=item["id"],
                is_free=_is_free(item.get("pricing")),
                context_length=context if isinstance(context, int) else None,
                description=item.get("description") or item.get("name"),
            )
        )
    return found


def provider_of(endpoint: str) -> str:
    """A short provider name from the endpoint's host (``openrouter``, ``groq``, ``local``)."""
    host = urlparse(endpoint).hostname or "custom"
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return "local"
    parts = [p for p in host.split(".") if p not in {"api", "www", "com", "ai", "org", "io"}]
    return parts[0] if parts else host


def fetch_models(endpoint: str, api_key: str | None, timeout: float = 15.0) -> list[CatalogueModel]:
    """GET ``<endpoint>/models``."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        response = httpx.get(f"{endpoint.rstrip('/')}/models", headers=headers, timeout=timeout)
    except httpx.HTTPError as exc:
        raise EndpointError(f"cannot reach {endpoint}/models ({type(exc).__name__})") from None
    if response.status_code >= 400:
        raise EndpointError(f"{endpoint}/models answered {response.status_code}")
    try:
        return parse_models(response.json())
    except ValueError:
        raise EndpointError(f"{endpoint}/models did not answer JSON") from None


def _from_database(conn: Connection, endpoint: str) -> list[CatalogueModel] | None:
    rows = conn.execute(
        select(AiModel.__table__).where(
            AiModel.api_endpoint == endpoint,
            AiModel.updated_at
            > func.now() - func.make_interval(0, 0, 0, 0, 0, 0, CATALOGUE_TTL_SECONDS),
        )
    ).all()
    if not rows:
        return None
    return [CatalogueModel(r.model_id, r.is_free, r.context_length, r.description) for r in rows]


def _write(
    conn: Connection, endpoint: str, models: list[CatalogueModel], api_key_env: str | None
) -> int:
    provider = provider_of(endpoint)
    for m in models:
        values: dict[str, Any] = {
            "provider": provider,
            "api_endpoint": endpoint,
            "model_id": m.model_id,
            "api_key_env": api_key_env,
            "is_free": m.is_free,
            "context_length": m.context_length,
            "description": m.description,
            "updated_at": func.now(),
        }
        # Statistics and the operator's priority/activation survive a re-sync.
        conn.execute(
            insert(AiModel)
            .values(name=f"{provider}/{m.model_id}", **values)
            .on_conflict_do_update(index_elements=["name"], set_=values)
        )
    return len(models)


def sync_catalogue(
    conn: Connection,
    endpoint: str,
    *,
    free_only: bool = False,
    api_key_env: str | None = None,
    refresh: bool = False,
) -> CatalogueResult:
    """Read an endpoint's catalogue (memory → database → endpoint) and register its models.

    Args:
        conn: a connection in the caller's transaction.
        endpoint: the OpenAI-compatible base URL (``https://openrouter.ai/api/v1``).
        free_only: keep only zero-priced models.
        api_key_env: the variable holding the endpoint's key (stored on the rows).
        refresh: skip the caches and ask the endpoint.

    Returns:
        Where the catalogue came from, the models kept, and how many rows were written.
    """
    if not endpoint.startswith(("http://", "https://")):
        raise ValidationFailed(f"--endpoint must be an http(s) URL (got {endpoint!r})")
    endpoint = endpoint.rstrip("/")
    key = os.environ.get(api_key_env) if api_key_env else None
    if api_key_env and not key:
        raise ValidationFailed(f"{api_key_env} is not set in the environment")
    now = time.monotonic()
    source, models = "endpoint", None
    if not refresh:
        with _lock:
            cached = _memory.get(endpoint)
        if cached and now - cached[0] < CATALOGUE_TTL_SECONDS:
            source, models = "memory", cached[1]
        elif (stored := _from_database(conn, endpoint)) is not None:
            source, models = "database", stored
    written = 0
    if models is None:
        models = fetch_models(endpoint, key)
        written = _write(
            conn, endpoint, [m for m in models if m.is_free or not free_only], api_key_env
        )
    with _lock:
        _memory[endpoint] = (now if source != "memory" else _memory[endpoint][0], models)
    kept = [m for m in models if m.is_free or not free_only]
    return CatalogueResult(source, kept, written)
