"""`agentry --help` and commands that do not touch the model import none of the heavy stacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.db import Database

ROOT = Path(__file__).resolve().parents[3]
HEAVY = (
    "langchain_core", "langgraph", "langchain_openai", "openai", "fastapi", "uvicorn",
    "numpy", "onnxruntime", "torch", "sentence_transformers", "tokenizers", "transformers",
)  # fmt: skip
PROBE = """
import json, sys
from typer.testing import CliRunner
from core.cli.main import app
result = CliRunner().invoke(app, sys.argv[1:])
loaded = sorted({m.split(".")[0] for m in sys.modules} & set(json.loads(sys.stdin.read())))
print(json.dumps({"exit": result.exit_code, "output": result.output, "heavy": loaded}))
"""


def child_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT), **extra)
    return env


def probe(*args: str, env: dict[str, str]) -> dict[str, object]:
    proc = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        input=json.dumps(HEAVY),
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=True,
    )
    result: dict[str, object] = json.loads(proc.stdout)
    return result


def test_help_imports_no_heavy_module() -> None:
    # What makes `--help` slow is importing the model and server stacks; that is checked here.
    # Its time is a benchmark's concern, not a timed test's: shared machines are noisy.
    result = probe("--help", env=child_env())
    assert result["exit"] == 0, result["output"]
    assert "Usage" in str(result["output"])
    assert result["heavy"] == []


@pytest.mark.parametrize(
    "command",
    [
        ["users", "list"],
        ["audit"],
        ["mechanic", "list"],
        ["models", "list"],
        ["agents", "list"],
        ["tools", "list"],
        ["prune", "--dry-run"],
        ["db", "current"],
        ["doctor", "--skip-embedding"],
    ],
)
def test_commands_that_do_not_touch_the_model_import_none_of_it(
    db: Database, command: list[str]
) -> None:
    env = child_env(DATABASE_URL=db.url.render_as_string(hide_password=False))
    result = probe(*command, env=env)
    assert result["exit"] == 0, result["output"]
    assert result["heavy"] == [], f"agentry {' '.join(command)} imported {result['heavy']}"
