"""Tool modules (``tools/<name>.py``): loading them and deriving their input JSON schema.

Tools are modules written by people: the built-in ones ship in the ``tools`` package; a
deployment adds its own in ``tools/`` of its repository (AGENTRY_PROJECT_DIR), where a
module of the same name replaces the built-in one.

A tool module exposes one typed callable: the function named like the module, or
else its only public function. Its docstring (Google style, ``Args:``) describes
it and its parameters; the JSON schema comes from the signature.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from langchain_core.tools import StructuredTool

import tools as builtin_tools
from core.errors import ValidationFailed

NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
TOOLS_DIR = "tools"
BUILTIN_TOOLS = Path(builtin_tools.__file__).resolve().parent


@dataclass(frozen=True)
class ToolDefinition:
    name: str
    description: str
    module_path: str  # relative to the project dir: tools/<name>.py
    schema: dict[str, Any]


def resolve_module_path(project_dir: Path, module_path: str) -> Path:
    """The file of a tool module, which must be a ``.py`` file directly in ``tools/``.

    Args:
        project_dir: the deployment repository (its ``tools/`` wins over the built-in ones).
        module_path: ``tools/name.py`` or the dotted ``tools.name``.

    Raises:
        ValidationFailed: the path leaves ``tools/``, is not a module, or is missing.
    """
    raw = module_path.strip()
    if raw.startswith(f"{TOOLS_DIR}.") and not raw.endswith(".py"):
        raw = raw.replace(".", "/") + ".py"
    tools_dir = (project_dir / TOOLS_DIR).resolve()
    path = (project_dir / raw).resolve()
    if path.parent != tools_dir or path.suffix != ".py" or path.name == "__init__.py":
        raise ValidationFailed(
            f"module path {module_path!r} is outside tools/: a tool must be tools/<name>.py"
        )
    if path.is_file():
        return path
    if (BUILTIN_TOOLS / path.name).is_file():
        return BUILTIN_TOOLS / path.name
    raise ValidationFailed(f"module path {module_path!r}: no such file")


def _import(path: Path) -> ModuleType:
    # A fresh module object each time, so an edited file is picked up without a restart.
    name = f"agentry_tools.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ValidationFailed(f"{path.name}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # the module's own code failed: report it, do not crash
        raise ValidationFailed(
            f"{path.name}: import failed ({type(exc).__name__}: {exc})"
        ) from None
    sys.modules.pop(name, None)
    return module


def tool_callable(module: ModuleType, name: str) -> Callable[..., Any]:
    """The module's tool function: named like the module, else its only public function."""
    fn = getattr(module, name, None)
    if inspect.isfunction(fn):
        return fn
    public = [
        f
        for n, f in vars(module).items()
        if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == module.__name__
    ]
    if len(public) != 1:
        raise ValidationFailed(
            f"tools/{name}.py: expected one public function (or one named {name}),"
            f" found {len(public)}"
        )
    return public[0]


def build_tool(path: Path) -> StructuredTool:
    """Import a tool module and wrap its callable as a LangChain tool.

    Raises:
        ValidationFailed: a missing docstring, an untyped parameter, or an import error.
    """
    name = path.stem
    if not NAME_RE.match(name):
        raise ValidationFailed(f"{path.name}: tool names must match {NAME_RE.pattern}")
    fn = tool_callable(_import(path), name)
    if not (fn.__doc__ or "").strip():
        raise ValidationFailed(f"{path.name}: the tool function needs a docstring")
    for param in inspect.signature(fn).parameters.values():
        if param.annotation is inspect.Parameter.empty:
            raise ValidationFailed(f"{path.name}: parameter {param.name!r} has no type hint")
    try:
        return StructuredTool.from_function(
            fn, name=name, parse_docstring=True, error_on_invalid_docstring=False
        )
    except Exception as exc:
        raise ValidationFailed(f"{path.name}: cannot derive a schema ({exc})") from None


def describe_tool(project_dir: Path, module_path: str) -> ToolDefinition:
    """Load a tool module and return its registry definition (name, description, schema)."""
    path = resolve_module_path(project_dir, module_path)
    tool = build_tool(path)
    schema = tool.tool_call_schema.model_json_schema()  # type: ignore[union-attr]
    schema.pop("title", None)
    return ToolDefinition(
        name=tool.name,
        description=tool.description,
        module_path=f"{TOOLS_DIR}/{path.name}",
        schema=schema,
    )


def discover_tools(project_dir: Path) -> list[ToolDefinition]:
    """Every tool module, built-in and the deployment's ``tools/``, sorted by name."""
    names = {
        p.name
        for folder in (BUILTIN_TOOLS, project_dir / TOOLS_DIR)
        for p in folder.glob("*.py")
        if not p.name.startswith("_")
    }
    return [describe_tool(project_dir, f"{TOOLS_DIR}/{name}") for name in sorted(names)]
