"""Plug-in point for tools that are not modules in ``tools/`` (e.g. the mechanic's
``create_<entity>``/``find_<entity>`` tools for entity types made at run time).

A provider is called with the :class:`~core.runtime.context.TurnContext` of the
turn (database, settings, principal, conversation) each time a model is called
and each time tools run, so what it returns may depend on the user and on the
current schema. Its tools are offered to every agent besides the agent's
registry tools.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from langchain_core.tools import BaseTool

from core.runtime.context import TurnContext

log = logging.getLogger(__name__)

ToolProvider = Callable[[TurnContext], list[BaseTool]]

_providers: list[ToolProvider] = []
_lock = threading.Lock()


def register_tool_provider(fn: ToolProvider) -> ToolProvider:
    """Register a provider (usable as a decorator); registering twice is a no-op."""
    with _lock:
        if fn not in _providers:
            _providers.append(fn)
    return fn


def unregister_tool_provider(fn: ToolProvider) -> None:
    with _lock:
        if fn in _providers:
            _providers.remove(fn)


def provided_tools(context: TurnContext) -> list[BaseTool]:
    """The tools of every provider for this turn; a failing provider is logged and skipped."""
    with _lock:
        providers = list(_providers)
    tools: dict[str, BaseTool] = {}
    for provider in providers:
        try:
            offered = provider(context)
        except Exception:  # one broken plug-in must not take every agent down
            log.exception("tool provider %r failed", provider)
            continue
        for tool in offered:
            # Models reject duplicate tool names; the first provider to offer one wins.
            tools.setdefault(tool.name, tool)
    return list(tools.values())
