"""``GET /health``: is this process able to serve?"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from core.api.deps import DbDep, SettingsDep
from core.health import database_checks

router = APIRouter(tags=["health"])

REPORTED = ("database", "pgvector", "migrations", "pool")


# Not a problem document: the same report as 200, naming what fails.
NOT_READY: dict[int | str, dict[str, Any]] = {
    503: {"description": "Not ready: `failing` names the parts that fail"}
}


@router.get("/health", summary="Liveness and readiness of this server process", responses=NOT_READY)
async def health(db: DbDep, settings: SettingsDep) -> JSONResponse:
    """200 with each part's state when healthy; 503 naming the failing parts when not."""
    checks = {c.name: c for c in await run_in_threadpool(database_checks, db, settings)}
    failing = [name for name in REPORTED if not checks[name].ok]
    body: dict[str, object] = {
        "status": "ok" if not failing else "unavailable",
        "database": {"ok": checks["database"].ok, "detail": checks["database"].detail},
        "pgvector": {
            "ok": checks["pgvector"].ok,
            **checks["pgvector"].data,
            "detail": checks["pgvector"].detail,
        },
        "migrations": {
            "ok": checks["migrations"].ok,
            **checks["migrations"].data,
            "detail": checks["migrations"].detail,
        },
        "pool": checks["pool"].data,
    }
    if failing:
        body["failing"] = failing
        body["detail"] = "; ".join(f"{n}: {checks[n].detail}" for n in failing)
    return JSONResponse(body, status_code=503 if failing else 200)
