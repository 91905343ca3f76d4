"""Agents, tools and models: anyone signed in reads them; admins sync agents from the
project's files and switch tools on and off (the REST routes' admin writes)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request, Response

from core.api.deps import SessionDep, SettingsDep, get_admin_user
from core.api.routes import agents as agent_routes
from core.api.routes import models as model_routes
from core.api.routes import tools as tool_routes
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, check_csrf, redirect, render
from core.registry.access import may_use

router = APIRouter(
    prefix=PREFIX,
    route_class=ConsoleRoute,
    include_in_schema=False,
    dependencies=[Depends(check_csrf)],
)


@router.get("/agents")
def agents(
    request: Request, user: ConsoleUser, session: SessionDep, settings: SettingsDep
) -> Response:
    listed = agent_routes.list_agents(user, session)
    for agent in listed:
        agent["usable"] = may_use(user, agent["spec"] or {})
    return render(
        request,
        "agents.html",
        agents=listed,
        tools=tool_routes.list_tools(user, session),
        # A browser sends no X-Stainless-* headers: the catalogue shape, as REST clients get.
        models=model_routes.list_models(user, session, settings, request),
        synced=request.query_params.get("synced"),
    )


@router.post("/agents/sync")
def sync(
    request: Request, user: ConsoleUser, session: SessionDep, settings: SettingsDep
) -> Response:
    report = agent_routes.sync(get_admin_user(user), session, settings)
    return redirect(f"{PREFIX}/agents?synced={len(report['changes'])}", request)


@router.post("/tools/{name}")
def switch_tool(
    name: str,
    request: Request,
    user: ConsoleUser,
    session: SessionDep,
    is_active: bool = Form(),
) -> Response:
    patch = tool_routes.ToolPatch(is_active=is_active)
    tool_routes.patch_tool(name, patch, get_admin_user(user), session)
    return redirect(f"{PREFIX}/agents#tools", request)
