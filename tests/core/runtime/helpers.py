"""Shared set-up for runtime tests: a synced registry and a runtime on a ScriptedLLM."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from config import Settings, load_settings
from core.db import Database
from core.registry.sync import sync_registry
from core.runtime.router import register_default_model

ROOT = Path(__file__).resolve().parents[3]


def runtime_settings(base_url: str | None, **extra: Any) -> Settings:
    """Settings whose default model is the scripted server (or none)."""
    overrides: dict[str, Any] = {"AGENTRY_PROJECT_DIR": str(ROOT), "DB_MAX_CONNECTIONS": 4}
    if base_url:
        overrides |= {"AGENTRY_LLM_BASE_URL": base_url, "AGENTRY_LLM_MODEL": "scripted"}
    overrides |= extra
    return load_settings(**overrides)


def prepare_registry(db: Database, settings: Settings) -> None:
    with db.engine.begin() as conn:
        sync_registry(conn, settings.project_dir)
        register_default_model(conn, settings)
