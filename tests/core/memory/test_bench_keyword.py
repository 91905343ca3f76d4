"""``agentry bench search --scale N --text`` on tiny copies of the datasets."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import text

from config import Settings
from core.bench.keyword import TIMED_PASSES, _interleaved, run_text_scale, variations
from core.db import Database
from tests.core.cli.test_search_cli import TINY_CISI

TURNS = [
    "Would you like to book a table for two tonight ?",
    "The harbour smells of tar and salt .",
    "Can you tell me where the library is ?",
    "I lost my keys at the station yesterday .",
    "Let's meet at the library after lunch .",
    "How much does a ticket to the harbour cost ?",
]


def test_variations_repeat_with_changes() -> None:
    base = ["one two three four five six seven eight", "alpha beta gamma delta epsilon"]
    out = list(variations(base, 12))
    assert [src for src, _ in out] == [0, 1] * 6
    assert [t for _, t in out[:2]] == base  # the first pass is the text itself
    assert len({t for _, t in out}) > 2  # copies differ


def test_text_scale_report(test_settings: Settings, tmp_path: Path) -> None:
    (tmp_path / "cisi").mkdir()
    for name, body in TINY_CISI.items():
        (tmp_path / "cisi" / name).write_text(body)
    (tmp_path / "dailydialog").mkdir()
    dialogue = " __eou__ ".join(TURNS) + " __eou__\n"
    (tmp_path / "dailydialog" / "dialogues_test.txt").write_text(dialogue * 2)
    settings = test_settings.model_copy(update={"datasets_dir": tmp_path})
    report = run_text_scale(settings, n=3000, queries=4, seconds=0.2)
    assert report["rows"] == 3000 and report["load"]["postings"] > 3000
    # Tiny lists: the postings are read whole, so the top-10 is the exact one.
    assert report["keyword_recall_of_exact_top10"]["all"] == 1.0
    assert set(report["modes"]) == {
        "keyword", "vector", "hybrid", "hybrid_concurrent",
        "keyword_cold_block_cache", "hybrid_cold_block_cache",
    }  # fmt: skip
    for name, mode in report["modes"].items():
        assert mode["clients_1"]["queries"] == 4 * TIMED_PASSES and mode["clients_1"]["p95_ms"] > 0
        # The cold-cache passes are one client's: clearing the cache is not per query
        # with four.
        assert "cold" in name or mode["clients_4"]["qps"] > 0
    assert report["ratios"]["hybrid_cold_block_cache_vs_vector_p95"] > 0
    compared = report["keyword_plans_compared"]
    assert compared["exact_scan_baseline"]["p50_ms"] > 0
    # Both index plans measured on the same load: the postings before the segment, the
    # blocks after it (every posting moved into the segment).
    assert compared["postings_plan_recall_of_exact_top10"] == 1.0
    assert compared["blocks_plan_blocks_read_mean"] > 0
    assert report["load"]["keyword_segment"]["postings"] == report["load"]["postings"]
    assert report["keyword_plans"] == {"blocks": 4}
    # Hybrid's keyword half reads these lists whole within its budget too: same top-10.
    assert report["hybrid_top10_overlap_with_whole_lists"] == 1.0
    assert report["goals"]["filtered_always_k"] is True
    assert set(report["filtered"]) == {
        "user_10pct",
        "user_1pct",
        "entity_type_0.1pct",
        "metadata_0.1pct",
    }


def test_modes_take_turns_query_by_query(db: Database) -> None:
    seen: list[tuple[str, int]] = []

    def mode(name: str) -> Callable[[Any, int], None]:
        def call(conn: Any, i: int) -> None:
            conn.execute(text("SELECT 1"))
            seen.append((name, i))

        return call

    report = _interleaved({m: mode(m) for m in ("a", "b", "c")}, db.engine, 7, passes=2)
    warm, timed = seen[:21], seen[21:]
    assert warm == [(m, i) for m in "abc" for i in range(7)]  # one untimed pass each
    for m in "abc":  # every query index, once per pass
        assert sorted(i for name, i in timed if name == m) == sorted(2 * list(range(7)))
        assert report[m]["queries"] == 14 and report[m]["p95_ms"] > 0
    turns = [timed[3 * j : 3 * j + 3] for j in range(14)]
    # Who goes first turns, and goes on turning into the second pass.
    assert [t[0][0] for t in turns] == list("abcabcabcabcab")
    # Each mode on its own query: none runs what the one before it just read.
    assert all(len({q for _, q in t}) == 3 for t in turns)
