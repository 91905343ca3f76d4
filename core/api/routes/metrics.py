"""``GET /metrics``: this process's Prometheus metrics (README, *Operations*)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from core.api.deps import DbDep, api_key_header, bearer, get_admin_user, get_current_user
from core.db.engine import Database
from core.observability.metrics import exposition, refresh_database_gauges, set_pool

router = APIRouter(tags=["operations"])


def _scrape(request: Request, db: Database) -> bytes:
    with db.engine.connect() as conn:
        refresh_database_gauges(conn)
    stats = db.pool_stats()
    set_pool("engine", stats["in_use"], stats["max"] + stats["overflow"])
    runtime = getattr(request.app.state, "runtime", None)
    if runtime is not None:
        pool = runtime.pool.get_stats()
        size = pool.get("pool_size", 0)
        set_pool("checkpoints", size - pool.get("pool_available", 0), pool.get("pool_max", size))
    return exposition()


@router.get(
    "/metrics",
    summary="Prometheus metrics of this process (admin, or anyone with AGENTRY_METRICS_PUBLIC)",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}}},
)
async def metrics(
    request: Request,
    db: DbDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    api_key: Annotated[str | None, Depends(api_key_header)] = None,
) -> Response:
    if not request.app.state.settings.metrics_public:
        user = await run_in_threadpool(get_current_user, request, db, credentials, api_key)
        get_admin_user(user)
    body = await run_in_threadpool(_scrape, request, db)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
