"""Index build statements carry the configured resources and parameters."""

from __future__ import annotations

from config import load_settings
from core.memory.bulk import build_sql


def test_build_sql_sets_memory_workers_and_hnsw_parameters() -> None:
    settings = load_settings(
        AGENTRY_INDEX_BUILD_MEMORY="1GB",
        AGENTRY_INDEX_BUILD_WORKERS="3",
        AGENTRY_HNSW_M="24",
        AGENTRY_HNSW_EF_CONSTRUCTION="128",
    )
    stmts = build_sql(settings, column="embedding_next", name="ix_next", concurrently=True)
    assert stmts[0] == "SET maintenance_work_mem = '1GB'"
    assert stmts[1] == "SET max_parallel_maintenance_workers = 3"
    assert stmts[2] == (
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS ix_next ON search_index USING hnsw "
        "(embedding_next vector_cosine_ops) WITH (m = 24, ef_construction = 128)"
    )
    assert stmts[3:] == ["RESET maintenance_work_mem", "RESET max_parallel_maintenance_workers"]
