"""``agentry bench memory`` on a tiny LoCoMo-format conversation (the real files are big)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from config import reset_settings
from core.cli.main import app

runner = CliRunner()


def _turn(dia: str, speaker: str, text: str) -> dict[str, str]:
    return {"speaker": speaker, "dia_id": dia, "text": text}


TINY = {
    "speaker_a": "Calvin",
    "speaker_b": "Dave",
    "session_1_date_time": "1:56 pm on 8 May, 2023",
    "session_1": [
        _turn("D1:1", "Calvin", "Hey Dave, long time!"),
        _turn("D1:2", "Dave", "Calvin! How was the trip?"),
        _turn("D1:3", "Calvin", "I flew to Tokyo for the first time last week."),
        _turn("D1:4", "Dave", "Amazing, did you eat ramen?"),
    ],
    "session_2_date_time": "10:02 am on 20 June, 2023",
    "session_2": [
        _turn("D2:1", "Dave", "I adopted a puppy named Biscuit."),
        _turn("D2:2", "Calvin", "So cute! What breed?"),
        {**_turn("D2:3", "Dave", "A beagle, look."), "blip_caption": "a photo of a small dog"},
    ],
    "qa": [
        {
            "question": "When did Calvin first go to Tokyo?",
            "answer": "May 2023",
            "evidence": ["D1:3"],
            "category": 2,
        },
        {
            "question": "What is the name of Dave's puppy?",
            "answer": "Biscuit",
            "evidence": ["D2:1"],
            "category": 4,
        },
        {"question": "Would Dave like cats?", "answer": "unknown", "evidence": [], "category": 5},
    ],
}


def test_bench_memory_reports_recall_per_category_against_baselines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_database: Any
) -> None:
    (tmp_path / "locomo").mkdir()
    (tmp_path / "locomo" / "99.json").write_text(json.dumps(TINY), encoding="utf-8")
    monkeypatch.setenv("AGENTRY_DATASETS_DIR", str(tmp_path))
    reset_settings()
    out = runner.invoke(app, ["bench", "memory", "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.output)
    assert report["conversations"] == ["99"] and report["questions"] == 2  # category 5 left out
    assert report["recall"]["all"]["recall@5"] == 1.0
    assert set(report["recall"]) == {"temporal", "single-hop", "all"}
    assert set(report["baselines"]) == {"dense_exact", "bm25", "fusion"}
    assert report["ingest"]["messages"] == 7 and report["ingest"]["index_rows"] == 16
    assert report["query"]["p50_ms"] > 0
    table = runner.invoke(app, ["bench", "memory"])
    assert table.exit_code == 0 and "single-hop" in table.output

    monkeypatch.setenv("AGENTRY_DATASETS_DIR", str(tmp_path / "none"))
    reset_settings()
    missing = runner.invoke(app, ["bench", "memory"])
    assert missing.exit_code != 0 and "no LoCoMo files" in missing.output
