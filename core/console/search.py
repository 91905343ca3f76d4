"""Search (vector, keyword, hybrid, recall) with filters and snippets, as ``GET /v1/search``.

The REST route reads metadata filters from ``meta.<key>`` query parameters; the form has
one key/value pair, passed on to it as such.
"""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlencode

from fastapi import APIRouter, Query, Request, Response

from core.api.deps import SessionDep, SettingsDep
from core.api.routes import search as rest
from core.console.audit import parse_time
from core.console.web import PREFIX, ConsoleRoute, ConsoleUser, render
from core.memory.search import MAX_K

router = APIRouter(prefix=PREFIX, route_class=ConsoleRoute, include_in_schema=False)
MODES = ("hybrid", "vector", "keyword", "recall")


def _with_metadata(request: Request, key: str, value: str) -> Request:
    """The request as the REST route reads it: the filter as ``meta.<key>=<value>``."""
    query = urlencode({f"{rest.META_PREFIX}{key}": value}) if key else ""
    return Request({**request.scope, "query_string": query.encode()})


@router.get("/search")
def search(
    request: Request,
    user: ConsoleUser,
    session: SessionDep,
    settings: SettingsDep,
    q: str = Query(default="", max_length=2000),
    mode: Literal["hybrid", "vector", "keyword", "recall"] = "hybrid",
    k: int = Query(default=10, ge=1, le=MAX_K),
    entity_type: str = Query(default="", max_length=63),
    since: str = Query(default="", max_length=40),
    until: str = Query(default="", max_length=40),
    meta_key: str = Query(default="", max_length=100),
    meta_value: str = Query(default="", max_length=400),
) -> Response:
    results = None
    if q.strip():
        results = rest.search_route(
            _with_metadata(request, meta_key.strip(), meta_value),
            user,
            session,
            settings,
            q=q,
            mode=mode,
            k=k,
            entity_type=entity_type or None,
            since=parse_time("since", since),
            until=parse_time("until", until),
        )
    template = "search_hits.html" if request.headers.get("hx-request") else "search.html"
    form = {
        "q": q,
        "mode": mode,
        "k": k,
        "entity_type": entity_type,
        "since": since,
        "until": until,
        "meta_key": meta_key,
        "meta_value": meta_value,
    }
    return render(request, template, results=results, form=form, modes=MODES)
