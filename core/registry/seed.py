"""Idempotent seeding of the model catalogue and the built-in agents."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from sqlalchemy import Connection, func, select
from sqlalchemy.dialects.postgresql import insert

import config
from config import Settings
from core.errors import ConfigError
from core.models import Agent, AiModel

MODEL_FIELDS = (
    "name",
    "provider",
    "api_endpoint",
    "model_id",
    "api_key_env",
    "credential",
    "context_length",
    "is_free",
    "description",
)
DEFAULT_MODELS_FILE = Path(config.__file__).resolve().parent / "defaults" / "models.yaml"
SEEDED_AGENTS = ("assistant", "mechanic")


@dataclass
class SeedReport:
    models_added: int
    agents_added: int

    @property
    def changed(self) -> bool:
        return bool(self.models_added or self.agents_added)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read seed file ({exc})") from None


def load_seed_models(path: Path = DEFAULT_MODELS_FILE) -> list[dict[str, Any]]:
    """The models of the seed file, restricted to known columns."""
    data = _read_yaml(path)
    models = data.get("models") if isinstance(data, dict) else None
    if not isinstance(models, list):
        raise ConfigError(f"{path}: expected a top-level 'models' list")
    return [{k: m.get(k) for k in MODEL_FIELDS} for m in models]


def load_seed_agents(settings: Settings) -> list[dict[str, Any]]:
    """The built-in agent definitions from ``agents/*.yaml``, as registry rows."""
    rows = []
    for name in SEEDED_AGENTS:
        path = Path(settings.project_dir) / "agents" / f"{name}.yaml"
        spec = _read_yaml(path)
        if not isinstance(spec, dict) or spec.get("name") != name:
            raise ConfigError(f"{path}: expected a mapping with name: {name}")
        rows.append(
            {
                "name": name,
                "description": spec.get("description"),
                "config_path": f"agents/{name}.yaml",
                "created_by": "system",
            }
        )
    return rows


def seed(conn: Connection, settings: Settings) -> SeedReport:
    """Insert the seed models and agents that are not there yet.

    Existing rows (matched by name) are left untouched, so operators' edits and
    the models' statistics survive a re-seed.

    Args:
        conn: a connection in the caller's transaction.
        settings: where the project's ``agents/`` folder is.

    Returns:
        How many rows were added.
    """
    models = (
        insert(AiModel)
        .values(load_seed_models())
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(AiModel.id)
    )
    agents = (
        insert(Agent)
        .values(load_seed_agents(settings))
        .on_conflict_do_nothing(index_elements=["name"])
        .returning(Agent.id)
    )
    return SeedReport(
        models_added=len(conn.execute(models).all()),
        agents_added=len(conn.execute(agents).all()),
    )


def registry_is_empty(conn: Connection) -> bool:
    """True when neither models nor agents have been registered yet."""
    models = conn.execute(select(func.count()).select_from(AiModel)).scalar_one()
    agents = conn.execute(select(func.count()).select_from(Agent)).scalar_one()
    return models == 0 and agents == 0
