"""`agentry mechanic plan|apply|rollback|list`, `agentry audit`, `agentry bench mechanic`."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text
from typer.testing import CliRunner

from core.cli.main import app
from core.cli.mechanic import SPEC_EXAMPLE
from core.db import Database
from tests.core.mechanic.conftest import CHARACTER, ROOT, make_project

runner = CliRunner()


@pytest.fixture
def cli_env(
    db: Database, use_database: Any, monkeypatch: pytest.MonkeyPatch, tmp_path_factory: Any
) -> Iterator[Path]:
    project = cli_project(tmp_path_factory)
    monkeypatch.setenv("AGENTRY_PROJECT_DIR", str(project))
    monkeypatch.setenv("AGENTRY_BACKUP_DIR", str(project.parent / "backups"))
    use_database(db)
    yield project


_projects: dict[str, Path] = {}


def cli_project(factory: Any) -> Path:
    # One project per module: the database fixture is per module too.
    if "p" not in _projects:
        _projects["p"] = make_project(factory.mktemp("cli-mechanic"))
    return _projects["p"]


def invoke(*args: str) -> Any:
    return runner.invoke(app, list(args))


def test_plan_apply_list_audit_rollback(cli_env: Path, tmp_path: Path) -> None:
    spec_file = tmp_path / "character.yaml"
    spec_file.write_text(yaml.safe_dump(CHARACTER))
    planned = invoke("mechanic", "plan", str(spec_file), "--json")
    assert planned.exit_code == 0, planned.output
    change = json.loads(planned.output)
    assert change["status"] == "planned" and change["plan"]["lint"]["ok"]

    listed = invoke("mechanic", "list", "--json", "--status", "planned")
    assert change["id"] in [c["id"] for c in json.loads(listed.output)]
    shown = invoke("mechanic", "plan", str(spec_file))
    assert shown.exit_code == 0, shown.output
    assert "+def define(metadata: MetaData) -> Table:" in shown.output  # the diff
    assert "CREATE TABLE character" in shown.output and "lint: ok" in shown.output
    table = invoke("mechanic", "list")
    assert table.exit_code == 0 and "planned" in table.output

    applied = invoke("mechanic", "apply", change["id"])
    assert applied.exit_code == 0, applied.output
    assert "applied" in applied.output and "git commit" in applied.output
    assert (cli_env / "dynamic/schema/character.py").exists()

    audit = invoke("audit", "--action", "schema_change", "--since", "2000-01-01", "--json")
    rows = json.loads(audit.output)
    assert rows[0]["actor"] == "system" and rows[0]["details"]["change_id"] == change["id"]
    shown = invoke("audit", "--action", "schema_change")
    assert shown.exit_code == 0 and "system" in shown.output and "succe" in shown.output

    rolled = invoke("mechanic", "rollback", change["id"], "--json")
    assert rolled.exit_code == 0, rolled.output
    assert json.loads(rolled.output)["status"] == "rolled_back"
    assert not (cli_env / "dynamic/schema/character.py").exists()

    log = invoke("mechanic", "log", "--json")
    assert log.exit_code == 0, log.output
    (entry,) = [c for c in json.loads(log.output) if c["id"] == change["id"]]
    assert entry["status"] == "rolled_back" and entry["commit"] and entry["rollback_commit"]
    assert entry["rollback_commit"] != entry["commit"]
    table = invoke("mechanic", "log")
    assert table.exit_code == 0 and change["id"][:8] in table.output, table.output


def test_bad_input_is_one_error_line(cli_env: Path, tmp_path: Path) -> None:
    neither = invoke("mechanic", "plan")
    assert neither.exit_code == 1 and "error: give a spec file or --instruction" in neither.output
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(dict(CHARACTER, entity="select")))
    refused = invoke("mechanic", "plan", str(bad))
    assert refused.exit_code == 1 and "reserved SQL keyword" in refused.output
    assert "Traceback" not in refused.output
    missing = invoke("mechanic", "plan", str(tmp_path / "nope.yaml"))
    assert missing.exit_code == 1 and "cannot read" in missing.output
    no_llm = invoke("mechanic", "plan", "--instruction", "track characters")
    assert no_llm.exit_code == 1 and "AGENTRY_LLM_BASE_URL" in no_llm.output
    unknown = invoke("mechanic", "apply", "00000000-0000-0000-0000-000000000000")
    assert unknown.exit_code == 1 and "no schema change" in unknown.output
    since = invoke("audit", "--since", "yesterday")
    assert since.exit_code == 1 and "not an ISO date" in since.output


def test_bench_mechanic_smoke(cli_env: Path) -> None:
    result = invoke("bench", "mechanic", "--entities", "1", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["entities"] == 1
    assert report["lead_time_s"]["p50"] > report["baseline_ddl_s_p50"] > 0
    assert report["lead_time_vs_ddl_ratio"] > 1
    assert isinstance(report["meets_goal"], bool)
    lock = report["lock"]
    assert lock["writes_baseline"] > 0 and lock["writes_during_apply"] > 0
    assert lock["during_apply_write_max_ms"] > 0
    assert lock["lock_samples"] > 0 and lock["access_exclusive_longest_ms"] >= 0
    assert lock["within_lock_timeout"] is True
    chat = report["conversation_to_live"]
    steps = ("proposal_s", "approval_pause_s", "apply_s", "first_record_s")
    assert all(chat[k] > 0 for k in steps), chat
    assert chat["total_s"] >= sum(chat[k] for k in steps) - 0.01


def test_the_documented_spec_plans_and_applies_by_id_prefix(cli_env: Path, tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    assert f"```yaml\n{SPEC_EXAMPLE}```" in readme  # the README shows the help's example
    assert "entity: book" in invoke("mechanic", "plan", "--help").output
    spec_file = tmp_path / "book.yaml"
    spec_file.write_text(SPEC_EXAMPLE)

    planned = invoke("mechanic", "plan", str(spec_file))
    assert planned.exit_code == 0, planned.output
    last = planned.output.strip().splitlines()[-1]
    match = re.fullmatch(r"next: agentry mechanic apply ([0-9a-f-]{36})", last)
    assert match, last  # the exact next command, last
    change_id = match.group(1)

    # Whole ids in the list, even on a narrow terminal.
    narrow = CliRunner().invoke(app, ["mechanic", "list"], env={"COLUMNS": "60"})
    assert narrow.exit_code == 0 and change_id in narrow.output, narrow.output

    applied = invoke("mechanic", "apply", change_id[:8])
    assert applied.exit_code == 0, applied.output
    assert (
        applied.output.strip()
        .splitlines()[-1]
        .startswith(f"next: agentry mechanic rollback {change_id}")
    )
    shown = invoke("mechanic", "list", "--json", "--status", "applied")
    assert change_id in [c["id"] for c in json.loads(shown.output)]

    rolled = invoke("mechanic", "rollback", change_id[:6])
    assert rolled.exit_code == 0, rolled.output
    change = json.loads(invoke("mechanic", "list", "--json", "--status", "rolled_back").output)
    ours = next(c for c in change if c["id"] == change_id)
    assert ours["rollback_commit"] and ours["error"] is None
    assert f"reverted by commit {ours['rollback_commit']}" in rolled.output
    assert "error" not in rolled.output


def test_ambiguous_and_malformed_prefixes_are_one_line(cli_env: Path, db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO mechanic_changes (id, action, entity, spec, created_by) VALUES"
                " ('abcabc00-0000-4000-8000-000000000001', 'add_entity', 'x', '{}', 'test'),"
                " ('abcabc00-0000-4000-8000-000000000002', 'add_entity', 'y', '{}', 'test')"
            )
        )
    ambiguous = invoke("mechanic", "apply", "abcabc")
    assert ambiguous.exit_code == 1
    assert "change id prefix 'abcabc' is ambiguous" in ambiguous.output
    assert "give more characters" in ambiguous.output.replace("\n", " ")
    bad = invoke("mechanic", "rollback", "not-hex!")
    assert bad.exit_code == 1 and "expected a change id or a unique prefix" in bad.output
    unique = invoke("mechanic", "rollback", "abcabc00-0000-4000-8000-000000000002")
    assert unique.exit_code == 1 and "is planned, not applied" in unique.output
