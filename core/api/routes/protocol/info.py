"""``GET /info``: what Agent Protocol clients (Agent Chat UI, Studio) probe on connect."""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from fastapi import APIRouter

import core

router = APIRouter(tags=["agent protocol"])


@router.get("/info", summary="Server version and protocol features (no key needed)")
def info() -> dict[str, Any]:
    # Public like LangGraph servers' /info: it says which features exist, nothing about data.
    return {
        "version": core.__version__,
        "langgraph_py_version": version("langgraph"),
        "flags": {"assistants": True, "crons": True, "langsmith": False, "strict_resume": False},
        "metadata": {"server": "agentry"},
    }
