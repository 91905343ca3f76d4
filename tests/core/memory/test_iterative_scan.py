"""Filtered completeness on pgvector 0.8 (iterative index scans), 100k rows.

The embedded server has pgvector 0.6; this module builds pgvector 0.8.0 from Debian's
source package against a copy of the same PostgreSQL (tests/pgvector_next.py) and
runs the 1% and 0.1% filters through the plan production chooses there.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from config import load_settings
from core.db import open_database, prepare_database
from core.db.embedded import ensure_database, server_url
from core.memory.filters import SearchFilter
from core.memory.search import run_vector_query
from core.memory.strategy import PlanKind
from core.memory.synthetic import clustered_vectors
from tests.core.memory.test_filtered_scale import K, exact_ids, ids, load_filtered
from tests.pgvector_next import PGVECTOR_VERSION, Unavailable, build, start

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def next_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    root: Path = tmp_path_factory.mktemp("pgvector-next")
    try:
        bin_dir = build(root)
    except Unavailable as exc:
        if os.environ.get("CI"):
            raise  # CI must exercise this path, never skip it
        pytest.skip(f"pgvector {PGVECTOR_VERSION} cannot be built here: {exc}")
    server = start(bin_dir, root / "pgdata")
    yield server
    server.cleanup()


@pytest.fixture(scope="module")
def big(next_server: Any) -> Iterator[dict[str, Any]]:
    ensure_database(next_server, "iterative")
    settings = load_settings(DATABASE_URL=server_url(next_server, "iterative"))
    db = open_database(settings)
    prepare_database(db, settings)
    # Production build parameters (m 16, ef_construction 64): with m 8 /
    # ef_construction 32, iterative scans measured recall as low as 0.7 on some builds.
    yield load_filtered(db, load_settings(), seed=31)
    db.dispose()


def test_the_second_server_really_has_pgvector_0_8(big: dict[str, Any]) -> None:
    with big["db"].engine.connect() as conn:
        version = conn.execute(
            text("SELECT extversion FROM pg_extension WHERE extname = 'vector'")
        ).scalar_one()
        assert version == PGVECTOR_VERSION
        # pgvector registers its settings when a backend first loads the library: a fresh
        # pooled connection has not, and would not know the parameter yet.
        conn.execute(text("SELECT '[1]'::vector"))
        assert conn.execute(text("SHOW hnsw.iterative_scan")).scalar_one() == "off"


FILTERS = {
    "one_pct": lambda big: SearchFilter(user_id=big["owner"]),
    "tenth_pct": lambda big: SearchFilter(metadata={"tag": "rare"}),
    "fifth": lambda big: SearchFilter(metadata={"bucket": 0}),
}


def check(
    big: dict[str, Any], which: str, settings: Any, plan: PlanKind, min_recall: float
) -> None:
    """Every query returns exactly K rows, by ``plan`` alone, re-sorted; mean recall."""
    db, vectors, mask = big["db"], big["vectors"], big[which]
    flt = FILTERS[which](big)
    recalls = []
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_sort = off"))  # no btree + sort shortcut
        conn.execute(text("SET LOCAL enable_seqscan = off"))
        for q in clustered_vectors(20, seed=97):
            run = run_vector_query(conn, q, flt, limit=K, settings=settings)
            assert [p.kind for p in run.plans] == [plan]  # complete on the first try
            assert len(run.rows) == K
            distances = [float(r.distance) for r in run.rows]
            assert distances == sorted(distances)  # relaxed order is re-sorted
            recalls.append(len(set(ids(run.rows)) & set(exact_ids(vectors, q, mask))) / K)
    assert float(np.mean(recalls)) >= min_recall


@pytest.mark.parametrize("which", ["one_pct", "tenth_pct"])
def test_small_filtered_sets_are_answered_exactly(big: dict[str, Any], which: str) -> None:
    check(big, which, load_settings(), PlanKind.exact, 1.0)


def test_a_large_filtered_set_uses_an_iterative_scan(big: dict[str, Any]) -> None:
    # 20% of the rows match: above AGENTRY_SEARCH_EXACT_THRESHOLD, through the index.
    check(big, "fifth", load_settings(), PlanKind.iterative, 0.95)


@pytest.mark.parametrize("which", ["one_pct", "tenth_pct"])
def test_iterative_scans_return_exactly_k_even_for_1_and_0_1_percent(
    big: dict[str, Any], which: str
) -> None:
    """Threshold 0 forces the index path on the hardest, most selective filters."""
    settings = load_settings(AGENTRY_SEARCH_EXACT_THRESHOLD="0")
    with big["db"].engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_sort = off"))
        plain = [
            len(
                run_vector_query(
                    conn, q, FILTERS[which](big), limit=K, settings=settings, force=PlanKind.hnsw
                ).rows
            )
            for q in clustered_vectors(20, seed=97)
        ]
    assert min(plain) < K  # what a plain HNSW query gives under this filter
    # Recall is lower here (0.90-0.92 measured): the reason small sets are answered
    # exactly by default.
    check(big, which, settings, PlanKind.iterative, 0.8)
