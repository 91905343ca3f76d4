"""``agentry search``, ``agentry index`` and ``agentry bench search`` (smoke, tiny sizes)."""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import text
from typer.testing import CliRunner

from core.cli.main import app
from core.db import Database
from tests.conftest import create_test_user

runner = CliRunner()


def test_index_backlog_then_search_from_the_terminal(db: Database, use_database: Any) -> None:
    user, _ = create_test_user(db, "cli@search.org")
    with db.engine.begin() as conn:
        conv = conn.execute(
            text("INSERT INTO conversations (session_id, user_id) VALUES ('cli', :u) RETURNING id"),
            {"u": user.id},
        ).scalar_one()
        for body in ("the harbour smells of tar and salt", "quarterly revenue grew"):
            conn.execute(
                text(
                    "INSERT INTO messages (conversation_id, user_id, role, content) "
                    "VALUES (:c, :u, 'user', :t)"
                ),
                {"c": conv, "u": user.id, "t": body},
            )
    use_database(db)
    indexed = runner.invoke(app, ["index"])
    assert indexed.exit_code == 0, indexed.output
    assert "indexed: message 2" in indexed.output and "embedded 2" in indexed.output
    again = runner.invoke(app, ["index"])
    assert "indexed: message 0" in again.output and "embedded 0" in again.output

    found = runner.invoke(app, ["search", "boats at the seaside", "--mode", "vector", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.output)
    assert hits[0]["snippet"].startswith("the harbour") and hits[0]["rank"] == {"vector": 1}
    scoped = runner.invoke(
        app, ["search", "revenue", "--user", "cli@search.org", "--meta", "role=user", "--json"]
    )
    assert json.loads(scoped.output)[0]["snippet"] == "quarterly revenue grew"
    table = runner.invoke(app, ["search", "harbour"])
    assert table.exit_code == 0 and "message" in table.output

    bad = runner.invoke(app, ["search", "x", "-k", "500"])
    assert bad.exit_code != 0 and "k: must be between 1 and 100" in bad.output
    nobody = runner.invoke(app, ["search", "x", "--user", f"{uuid.uuid4()}@nowhere"])
    assert nobody.exit_code != 0 and "--user: no user" in nobody.output


TINY_CISI = {
    "CISI.ALL": """.I 1
.T
Library catalogues
.A
Someone, A.
.W
Card catalogues and subject headings in public libraries.
.X
1 5 1
.I 2
.T
Citation indexing
.W
Citation indexes link scientific papers
through their references.
.I 3
.T
Cooking pasta
.W
Boil the water, add salt, then the pasta.
""",
    "CISI.QRY": """.I 1
.W
How do subject headings help library catalogues?
.I 2
.T
Title only
.W
Which papers cite each other?
.I 3
.W
An unjudged query.
""",
    "CISI.REL": "     1     1\t0\t0.000000\n     2     2\t0\t0.000000\n",
}


def tiny_cisi(folder: Any, monkeypatch: Any) -> None:
    """TINY_CISI under ``folder/cisi``, and AGENTRY_DATASETS_DIR pointing at ``folder``."""
    (folder / "cisi").mkdir()
    for name, body in TINY_CISI.items():
        (folder / "cisi" / name).write_text(body)
    monkeypatch.setenv("AGENTRY_DATASETS_DIR", str(folder))


def test_bench_search_cisi_smoke(
    db: Database, use_database: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    tiny_cisi(tmp_path, monkeypatch)
    use_database(db)
    result = runner.invoke(app, ["bench", "search", "--dataset", "cisi", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["documents"] == 3 and report["queries"] == 2
    # Two tiny judged queries whose answers are obvious: every mode finds them first.
    assert report["modes"]["exact"]["ndcg@10"] == 1.0
    assert report["modes"]["hybrid"]["ndcg@10"] == 1.0
    assert set(report["modes"]) == {"vector", "keyword", "hybrid", "exact"}
    for mode in report["modes"].values():
        assert 0 <= mode["ndcg@10"] <= 1 and mode["p95_ms"] >= mode["p50_ms"] > 0
    assert "hnsw_vs_exact_ndcg" in report["ratios"] and report["rrf"]["sweep"]


def test_bench_search_scale_smoke(
    db: Database, use_database: Any, monkeypatch: Any, tmp_path: Any
) -> None:
    tiny_cisi(tmp_path, monkeypatch)
    (tmp_path / "dailydialog").mkdir()
    lines = [f"Hello number {i} . __eou__ How are you {i} ? __eou__ Fine {i} . __eou__\n"
             for i in range(40)]  # fmt: skip
    (tmp_path / "dailydialog" / "dialogues_test.txt").write_text("".join(lines))
    use_database(db)
    result = runner.invoke(
        app,
        ["bench", "search", "--scale", "2000", "--queries", "5", "--ingest-sample", "20", "--json"],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["rows"] == 2000 and report["load"]["index_bytes"] > 0
    assert report["search"]["filter_1pct_user"]["always_k"] is True
    assert report["search"]["filter_0.1pct_metadata"]["matching_rows"] == 2
    assert report["search"]["filter_0.1pct_metadata"]["min_returned"] == 2
    assert report["clients"]["1"]["qps"] > 0 and report["clients"]["4"]["p95_ms"] > 0
    assert report["ingest"]["texts"] == 20
    # One row in 20 is a real embedding: the 3 CISI documents, then DailyDialog turns.
    assert report["real_rows"] == {"cisi": 3, "dailydialog": 97}
    assert report["real_queries"] == 1
    # 100 real texts are enough to fit the synthetic rows around them.
    assert report["settings"]["layout"] == "fitted"
    for forced in ("filter_1pct_user_iterative", "filter_0.1pct_metadata_iterative"):
        assert report["search"][forced]["always_k"] is True
        assert report["search"][forced]["plans"][0] == "iterative"
    # Both storage types in one run, each in its own throwaway database.
    both = runner.invoke(
        app,
        ["bench", "search", "--scale", "1000", "--queries", "4", "--ingest-sample", "0",
         "--vector-type", "both", "--json"],
    )  # fmt: skip
    assert both.exit_code == 0, both.output
    compared = json.loads(both.output)
    assert set(compared["by_type"]) == {"vector", "halfvec"}
    assert compared["by_type"]["halfvec"]["vector_type"] == "halfvec"
    assert 0 < compared["comparison"]["index_size_ratio"] < 1
    # The benchmark ran in a throwaway database and dropped it.
    with db.engine.connect() as conn:
        left = conn.execute(
            text("SELECT datname FROM pg_database WHERE datname LIKE 'agentry_bench%'")
        )
        assert list(left) == []


def test_bench_search_needs_one_of_dataset_or_scale(
    use_database: Any, db: Database, monkeypatch: Any, tmp_path: Any
) -> None:
    use_database(db)
    monkeypatch.setenv("AGENTRY_DATASETS_DIR", str(tmp_path))
    missing = runner.invoke(app, ["bench", "search", "--dataset", "cisi"])
    assert missing.exit_code != 0 and "CISI not found" in missing.output
    assert "exactly one of" in runner.invoke(app, ["bench", "search"]).output
    assert "only cisi" in runner.invoke(app, ["bench", "search", "--dataset", "msmarco"]).output
    layout = runner.invoke(app, ["bench", "search", "--scale", "1000", "--synthetic", "uniform"])
    assert layout.exit_code != 0 and "--synthetic" in layout.output and "uniform" in layout.output


def test_up_refuses_a_mismatched_embedding_model(
    db: Database, use_database: Any, monkeypatch: Any
) -> None:
    from config import get_settings
    from core.memory.service import check_memory

    use_database(db)
    check_memory(db.engine, get_settings())  # the index is in the MiniLM space
    monkeypatch.setenv("AGENTRY_EMBEDDING_PROVIDER", "openai")
    monkeypatch.setenv("AGENTRY_EMBEDDING_MODEL", "text-embedding-3-large")
    monkeypatch.setenv("AGENTRY_EMBEDDING_DIMS", "3072")
    from config import reset_settings

    reset_settings()
    result = runner.invoke(app, ["up", "--port", "1"])
    assert result.exit_code == 2
    assert "holds all-MiniLM-L6-v2 vectors (384 dims)" in result.output
    assert "agentry index --reembed" in result.output
