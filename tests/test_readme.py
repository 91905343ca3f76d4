"""The README's set-up commands are the ones CI runs and the CLI really has."""

from __future__ import annotations

import re
from pathlib import Path

from typer.testing import CliRunner

from config.settings import Settings
from core.cli.main import app

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def bash_blocks() -> list[str]:
    return re.findall(r"```bash\n(.*?)\n```", README, flags=re.S)


def test_exactly_two_setup_commands_main_job_then_tests() -> None:
    blocks = bash_blocks()
    assert len(blocks) == 2
    assert blocks[0].endswith("agentry up")
    assert "pytest" in blocks[1]


def test_ci_runs_the_readme_test_command() -> None:
    ci = (ROOT / ".ci" / "run").read_text()
    assert bash_blocks()[1] in ci


def test_every_setting_is_in_the_configuration_table() -> None:
    for field in Settings.model_fields.values():
        assert f"`{field.alias}`" in README, f"{field.alias} is not documented"


def test_every_command_in_the_readme_exists() -> None:
    documented = set(re.findall(r"^\| `agentry ([a-z]+)", README, flags=re.M))
    assert documented >= {"up", "db", "doctor", "seed"}
    for name in documented:
        result = CliRunner().invoke(app, [name, "--help"])
        assert result.exit_code == 0, f"agentry {name}: {result.output}"
