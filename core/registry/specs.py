"""Agent definitions (``agents/*.yaml``) parsed and validated into :class:`AgentSpec`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import yaml

from core.errors import ValidationFailed

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
KNOWN_KEYS = {
    "name",
    "description",
    "system_prompt",
    "model",
    "tools",
    "handoffs",
    "admin_only",
    "approve_tools",
}
KNOWN_KEYS |= {"recall"}  # automatic recall (core/memory/prompting.py)


@dataclass(frozen=True)
class AgentSpec:
    """One agent: what the runtime compiles into graph nodes."""

    name: str
    description: str = ""
    system_prompt: str = ""
    model: str | None = None
    tools: tuple[str, ...] = ()
    handoffs: tuple[str, ...] = ()
    admin_only: bool = False
    # Automatic recall {k, scope, budget} (core/memory/prompting.py); None: off.
    recall: dict[str, Any] | None = None
    # Tools that wait for a person's approval (accept, edit or refuse) before they run.
    approve_tools: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The JSON stored in ``agents.spec`` (name and description have their own columns)."""
        data = asdict(self)
        data.pop("extra")
        if data["recall"] is None:
            data.pop("recall")
        data["tools"] = list(self.tools)
        data["handoffs"] = list(self.handoffs)
        if self.approve_tools:
            data["approve_tools"] = list(self.approve_tools)
        else:
            data.pop("approve_tools")  # absent from the stored JSON of agents without it
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> AgentSpec:
        return parse_agent(data, where=f"agent {data.get('name')!r}")


def _str_list(value: Any, key: str, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValidationFailed(f"{where}: '{key}' must be a list of names")
    for item in value:
        if not NAME_RE.match(item):
            raise ValidationFailed(f"{where}: {key} entry {item!r} is not a valid name")
    return tuple(value)


def parse_agent(data: Any, *, where: str) -> AgentSpec:
    """Validate an agent definition (already parsed from YAML or JSON).

    Args:
        data: the mapping.
        where: names the source in error messages (file path or request).

    Returns:
        The spec.

    Raises:
        ValidationFailed: a missing or malformed field, with what is wrong.
    """
    if not isinstance(data, dict):
        raise ValidationFailed(f"{where}: expected a mapping with name, system_prompt, tools")
    name = data.get("name")
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValidationFailed(f"{where}: 'name' must match {NAME_RE.pattern} (got {name!r})")
    prompt = data.get("system_prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValidationFailed(f"{where}: 'system_prompt' must be non-empty text")
    model = data.get("model")
    if model is not None and not isinstance(model, str):
        raise ValidationFailed(f"{where}: 'model' must be a model name or null")
    description = data.get("description") or ""
    if not isinstance(description, str):
        raise ValidationFailed(f"{where}: 'description' must be text")
    admin_only = data.get("admin_only", False)
    if not isinstance(admin_only, bool):
        raise ValidationFailed(f"{where}: 'admin_only' must be true or false")
    unknown = set(data) - KNOWN_KEYS
    if unknown:
        raise ValidationFailed(f"{where}: unknown keys {sorted(unknown)}")
    handoffs = _str_list(data.get("handoffs"), "handoffs", where)
    if name in handoffs:
        raise ValidationFailed(f"{where}: an agent cannot hand off to itself")
    tools = _str_list(data.get("tools"), "tools", where)
    approve = _str_list(data.get("approve_tools"), "approve_tools", where)
    stray = [t for t in approve if t not in tools]
    if stray:
        raise ValidationFailed(
            f"{where}: approve_tools entry {stray[0]!r} is not one of the agent's tools"
        )
    return AgentSpec(
        name=name,
        description=description.strip(),
        system_prompt=prompt.strip(),
        model=model,
        tools=tools,
        handoffs=handoffs,
        admin_only=admin_only,
        recall=_recall(data.get("recall"), where),
        approve_tools=approve,
    )


def _recall(value: Any, where: str) -> dict[str, Any] | None:
    from core.memory.prompting import parse_recall  # the memory layer owns the format

    try:
        return parse_recall(value, where)
    except ValueError as exc:
        raise ValidationFailed(str(exc)) from None


def load_agent_file(path: Path) -> AgentSpec:
    """Read and validate one ``agents/<name>.yaml``.

    Raises:
        ValidationFailed: unreadable or invalid YAML, or an invalid definition; the
            file name must match the agent name.
    """
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ValidationFailed(f"{path.name}: invalid YAML ({exc})".replace("\n", " ")) from None
    except OSError as exc:
        raise ValidationFailed(f"{path.name}: cannot read ({exc.strerror})") from None
    spec = parse_agent(data, where=path.name)
    if spec.name != path.stem:
        raise ValidationFailed(f"{path.name}: name {spec.name!r} must match the file name")
    return spec


def dump_agent(spec: AgentSpec) -> str:
    """The YAML text of a spec (what the API writes back to ``agents/``)."""
    return yaml.safe_dump(spec.to_json(), sort_keys=False, allow_unicode=True)
