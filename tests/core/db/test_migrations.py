from __future__ import annotations

from typing import Any

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import Connection, text

from config import Settings, load_settings
from core.db import Database, migrate, prepare_database
from core.db.checkpoints import CHECKPOINT_TABLES
from core.db.metadata import compare_type, include_object, target_metadata

CORE_TABLES = {
    "users",
    "agents",
    "tools",
    "conversations",
    "messages",
    "agent_switches",
    "audit_log",
    "search_index",
    "ai_models",
    "prompt_history",
    "entity_types",
}


def tables(conn: Connection) -> set[str]:
    rows = conn.execute(text("SELECT tablename FROM pg_tables WHERE schemaname = 'public'"))
    return set(rows.scalars())


def enum_types(conn: Connection) -> set[str]:
    return set(conn.execute(text("SELECT typname FROM pg_type WHERE typtype = 'e'")).scalars())


def autogenerate_diff(conn: Connection) -> list[Any]:
    ctx = MigrationContext.configure(
        conn, opts={"include_object": include_object, "compare_type": compare_type}
    )
    return compare_metadata(ctx, target_metadata())


def test_upgrade_downgrade_upgrade_round_trip(empty_db: Database, test_settings: Settings) -> None:
    prepare_database(empty_db, test_settings)
    with empty_db.engine.connect() as conn:
        assert CORE_TABLES | set(CHECKPOINT_TABLES) <= tables(conn)
        assert {"user_role", "conversation_status"} <= enum_types(conn)
        assert migrate.current_revision(conn) == migrate.head_revision(test_settings)

    migrate.downgrade(empty_db.engine, "base", settings=test_settings)
    with empty_db.engine.connect() as conn:
        left = tables(conn)
        assert not (CORE_TABLES & left)
        assert {"user_role", "conversation_status"}.isdisjoint(enum_types(conn))
        # LangGraph's tables are not Alembic's to drop.
        assert set(CHECKPOINT_TABLES) <= left
        assert migrate.current_revision(conn) is None

    migrate.upgrade(empty_db.engine, settings=test_settings)
    with empty_db.engine.connect() as conn:
        assert tables(conn) >= CORE_TABLES
        assert migrate.current_revision(conn) == migrate.head_revision(test_settings)


def test_models_and_migrations_agree(db: Database) -> None:
    with db.engine.connect() as conn:
        assert autogenerate_diff(conn) == []


def test_autogenerate_never_drops_tables_it_does_not_own(db: Database) -> None:
    with db.engine.begin() as conn:
        conn.execute(text("CREATE TABLE someone_elses (id int primary key)"))
        assert set(CHECKPOINT_TABLES) <= tables(conn)
        diff = autogenerate_diff(conn)
        conn.execute(text("DROP TABLE someone_elses"))
    assert diff == []


def test_hnsw_and_vector_dimensions_follow_settings(empty_db: Database) -> None:
    settings = load_settings(
        AGENTRY_HNSW_M=8, AGENTRY_HNSW_EF_CONSTRUCTION=32, AGENTRY_EMBEDDING_DIMS=128
    )
    prepare_database(empty_db, settings)
    with empty_db.engine.connect() as conn:
        indexdef = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_search_index_embedding_hnsw'"
            )
        ).scalar_one()
        column_type = conn.execute(
            text(
                "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                "WHERE attrelid = 'search_index'::regclass AND attname = 'embedding'"
            )
        ).scalar_one()
        gin = conn.execute(
            text("SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_search_index_tsv'")
        ).scalar_one()
        messages_ix = conn.execute(
            text(
                "SELECT indexdef FROM pg_indexes "
                "WHERE indexname = 'ix_messages_conversation_id_created_at'"
            )
        ).scalar_one()
    assert "USING hnsw (embedding vector_cosine_ops)" in indexdef
    assert "m='8'" in indexdef and "ef_construction='32'" in indexdef
    assert column_type == "vector(128)"
    assert "USING gin (tsv)" in gin
    assert "(conversation_id, created_at)" in messages_ix


def test_concurrent_upgrades_apply_once(empty_db: Database, test_settings: Settings) -> None:
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(3) as pool:
        list(pool.map(lambda _: prepare_database(empty_db, test_settings), range(3)))
    with empty_db.engine.connect() as conn:
        versions = conn.execute(text("SELECT version_num FROM alembic_version")).scalars().all()
    assert versions == [migrate.head_revision(test_settings)]
