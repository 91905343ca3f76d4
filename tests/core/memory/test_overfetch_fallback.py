"""The over-fetch fallback for servers with pgvector < 0.8 (no iterative index scans).

Users who bring their own PostgreSQL may have an older pgvector. This module starts the
old embedded server (pgserver 0.1.4: PostgreSQL 16.2, pgvector 0.6.2, tests/old_pgserver.py)
in its temp folder and runs 1% and 0.1% filters through the plan production chooses there.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from sqlalchemy import text

from config import load_settings
from core.db import open_database, prepare_database
from core.db.embedded import ensure_database, server_url
from core.db.extensions import installed_version, supports_iterative_scan
from core.memory.filters import SearchFilter
from core.memory.strategy import PlanKind
from core.memory.synthetic import clustered_vectors
from core.memory.vector_query import run_vector_query
from tests.core.memory.test_filtered_scale import BUILD, K, exact_ids, ids, load_filtered
from tests.old_pgserver import OLD_PGVECTOR, start_old, stop_old

pytestmark = pytest.mark.slow

N = 20_000  # 200 rows under the 1% filter, 20 under the 0.1% one


@pytest.fixture(scope="module")
def old(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    server = start_old(tmp_path_factory.mktemp("old-pgserver") / "pgdata")
    try:
        ensure_database(server, "fallback")
        settings = load_settings(DATABASE_URL=server_url(server, "fallback"))
        db = open_database(settings)
        prepare_database(db, settings)
        yield load_filtered(db, BUILD, seed=21, n=N)
        db.dispose()
    finally:
        stop_old(server)


def test_the_old_server_really_has_pgvector_0_6(old: dict[str, Any]) -> None:
    with old["db"].engine.connect() as conn:
        version = installed_version(conn)
        assert version == OLD_PGVECTOR and not supports_iterative_scan(version)
        conn.execute(text("SELECT '[1]'::vector"))  # loads the library and its settings
        with pytest.raises(Exception, match="iterative_scan"):
            conn.execute(text("SET hnsw.iterative_scan = relaxed_order"))


@pytest.mark.parametrize("which", ["one_pct", "tenth_pct"])
def test_overfetch_through_the_hnsw_index_still_returns_k(old: dict[str, Any], which: str) -> None:
    """The large-set path on pgvector 0.6, forced to walk the HNSW graph."""
    db, vectors, mask = old["db"], old["vectors"], old[which]
    flt = (
        SearchFilter(user_id=old["owner"])
        if which == "one_pct"
        else SearchFilter(metadata={"tag": "rare"})
    )
    settings = load_settings(AGENTRY_SEARCH_EXACT_THRESHOLD="0")
    recalls, plain_counts = [], []
    with db.engine.begin() as conn:
        conn.execute(text("SET LOCAL enable_sort = off"))  # no btree + sort shortcut
        for q in clustered_vectors(20, seed=98):
            plain = run_vector_query(conn, q, flt, limit=K, settings=settings, force=PlanKind.hnsw)
            plain_counts.append(len(plain.rows))
            run = run_vector_query(conn, q, flt, limit=K, settings=settings)
            assert run.plans[0].kind is PlanKind.overfetch
            assert len(run.rows) == K
            distances = [float(r.distance) for r in run.rows]
            assert distances == sorted(distances)
            recalls.append(len(set(ids(run.rows)) & set(exact_ids(vectors, q, mask))) / K)
    assert min(plain_counts) < K  # what users would get without a plan
    assert float(np.mean(recalls)) >= 0.9
