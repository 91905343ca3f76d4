"""``/v1/models``: the model catalogue and which models the router can use."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from sqlalchemy import select

from core.api.deps import CurrentUser, SessionDep, SettingsDep
from core.api.routes.openai_compat import is_openai_client, models_json
from core.models import AiModel
from core.runtime.router import usable_models

router = APIRouter(prefix="/v1/models", tags=["models"])


@router.get(
    "",
    summary="Models, best first, with reliability and whether usable"
    " (OpenAI SDK callers get the agents as an OpenAI model list)",
)
def list_models(
    user: CurrentUser, session: SessionDep, settings: SettingsDep, request: Request
) -> Any:
    # The OpenAI-compatible surface shares this path: an OpenAI SDK (base_url .../v1)
    # gets what it can parse; /openai/v1/models always answers that shape.
    if is_openai_client(request):
        return models_json(session, user)
    conn = session.connection()
    usable = [c.name for c in usable_models(conn, settings)]
    rows = conn.execute(
        select(AiModel.__table__).order_by(
            AiModel.priority.desc(), AiModel.reliability_score.desc(), AiModel.name
        )
    )
    return [
        {
            "name": r.name,
            "provider": r.provider,
            "model_id": r.model_id,
            "api_endpoint": r.api_endpoint,
            "api_key_env": r.api_key_env,
            "credential": r.credential,
            "is_active": r.is_active,
            "is_free": r.is_free,
            "priority": r.priority,
            "usable": r.name in usable,
            "rank": usable.index(r.name) + 1 if r.name in usable else None,
            "request_count": r.request_count,
            "success_count": r.success_count,
            "failure_count": r.failure_count,
            "reliability_score": r.reliability_score,
        }
        for r in rows
    ]
