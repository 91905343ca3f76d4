"""keyword index: BM25 vocabulary, impact-ordered postings, incremental document frequencies

Revision ID: 0018
Revises: 0014

- search_terms (lexeme -> id, folded df), search_term_deltas (df changes not folded yet;
  term 0 counts chunks, -1 their lengths), search_postings (term, BM25 weight without
  IDF, chunk; the primary key is the impact-ordered btree), search_keyword_stats (the
  avgdl the weights use, folded totals, backfill cursor).
- statement triggers on search_index keep postings and deltas in step with inserts and
  deletes (COPY included).
- rows that exist now are backfilled by `agentry index` (search_keyword_index); until
  then keyword search answers with the exact scan.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# BM25's document side, k1 = 1.2, b = 0.75; float8 arithmetic, stored as real. Queries
# rescore with the same function, so stored and recomputed weights are bit-identical.
IMPACT_FUNCTION = """
CREATE FUNCTION search_bm25_impact(tf integer, dl integer, avgdl float8) RETURNS real
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
    SELECT CAST(tf * 2.2::float8
                / (tf + 1.2::float8 * (0.25::float8 + 0.75::float8 * dl / avgdl)) AS real)
$$
"""
# Indexes the given rows (ids and tsvectors, so a trigger need not read them back): new
# terms, postings, df deltas and chunk totals, in three statements (a chat turn's write
# pays for them).
INDEX_FUNCTION = """
CREATE FUNCTION search_keyword_index(ids bigint[], tsvs tsvector[]) RETURNS integer
LANGUAGE plpgsql AS $$
DECLARE
    ref float8;
BEGIN
    SELECT avgdl INTO ref FROM search_keyword_stats WHERE id = 1;
    -- Only unknown lexemes reach ON CONFLICT, so known ones burn no sequence values.
    INSERT INTO search_terms (term)
    SELECT DISTINCT u.lexeme FROM unnest(tsvs) AS r(tsv), unnest(r.tsv) u
    WHERE NOT EXISTS (SELECT 1 FROM search_terms t WHERE t.term = u.lexeme)
    ON CONFLICT (term) DO NOTHING;
    WITH rows AS (SELECT * FROM unnest(ids, tsvs) AS r(id, tsv)),
    added AS (
        INSERT INTO search_postings (term_id, impact, row_id)
        SELECT t.id,
               search_bm25_impact(COALESCE(array_length(u.positions, 1), 1),
                                  length(r.tsv), ref),
               r.id
        FROM rows r, unnest(r.tsv) u JOIN search_terms t ON t.term = u.lexeme
        RETURNING term_id
    )
    INSERT INTO search_term_deltas (term_id, delta)
    SELECT term_id, count(*) FROM added GROUP BY term_id
    UNION ALL SELECT 0, count(*) FROM rows HAVING count(*) > 0
    UNION ALL SELECT -1, sum(length(tsv)) FROM rows HAVING count(*) > 0;
    RETURN COALESCE(cardinality(ids), 0);
END;
$$
"""
INSERT_FUNCTION = """
CREATE FUNCTION search_keyword_inserted() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- One aggregation: the two arrays are in the same row order.
    PERFORM search_keyword_index(array_agg(id), array_agg(tsv)) FROM new_rows;
    RETURN NULL;
END;
$$
"""
# Postings are found by their key: the impact is recomputed with the avgdl they were
# written with (a change of avgdl rewrites all of them, core/memory/bm25_maintenance.py).
DELETE_FUNCTION = """
CREATE FUNCTION search_keyword_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ref float8;
    upto bigint;
    done bigint;
BEGIN
    SELECT avgdl, backfill_upto, backfilled INTO ref, upto, done
    FROM search_keyword_stats WHERE id = 1;
    WITH gone AS (
        DELETE FROM search_postings p
        USING old_rows o, unnest(o.tsv) u, search_terms t
        WHERE t.term = u.lexeme AND p.term_id = t.id AND p.row_id = o.id
          AND p.impact = search_bm25_impact(COALESCE(array_length(u.positions, 1), 1),
                                            length(o.tsv), ref)
        RETURNING p.term_id
    )
    INSERT INTO search_term_deltas (term_id, delta)
    SELECT term_id, -count(*) FROM gone GROUP BY term_id;
    -- Rows the backfill has not reached were never counted.
    INSERT INTO search_term_deltas (term_id, delta)
    SELECT v.term_id, v.delta
    FROM (SELECT count(*) AS n, COALESCE(sum(length(o.tsv)), 0) AS len
          FROM old_rows o WHERE o.id > upto OR o.id <= done) c,
         LATERAL (VALUES (0, -c.n), (-1, -c.len)) AS v(term_id, delta)
    WHERE c.n > 0;
    RETURN NULL;
END;
$$
"""
INSERT_TRIGGER = """
CREATE TRIGGER search_keyword_inserted AFTER INSERT ON search_index
REFERENCING NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION search_keyword_inserted()
"""
DELETE_TRIGGER = """
CREATE TRIGGER search_keyword_deleted AFTER DELETE ON search_index
REFERENCING OLD TABLE AS old_rows FOR EACH STATEMENT EXECUTE FUNCTION search_keyword_deleted()
"""
# Existing rows are left to the backfill; avgdl is theirs (8, a chat turn's, when empty).
INIT_STATS = """
INSERT INTO search_keyword_stats (id, avgdl, backfill_upto, backfilled)
SELECT 1, COALESCE(NULLIF(avg(length(tsv)), 0), 8), COALESCE(max(id), 0), 0 FROM search_index
"""


def upgrade() -> None:
    op.create_table(
        "search_terms",
        sa.Column("id", sa.Integer(), sa.Identity(always=True), nullable=False),
        sa.Column("term", sa.Text(), nullable=False),
        sa.Column("df", sa.BigInteger(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_terms")),
        sa.UniqueConstraint("term", name=op.f("uq_search_terms_term")),
    )
    op.create_table(
        "search_term_deltas",
        sa.Column("id", sa.BigInteger(), sa.Identity(always=True), nullable=False),
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("delta", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_term_deltas")),
    )
    op.create_index("ix_search_term_deltas_term_id", "search_term_deltas", ["term_id"])
    op.create_table(
        "search_postings",
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("impact", postgresql.REAL(), nullable=False),
        sa.Column("row_id", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("term_id", "impact", "row_id", name=op.f("pk_search_postings")),
    )
    op.create_table(
        "search_keyword_stats",
        sa.Column("id", sa.SmallInteger(), server_default="1", nullable=False),
        sa.Column("avgdl", sa.Float(), server_default="8", nullable=False),
        sa.Column("chunks", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("total_length", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("backfill_upto", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("backfilled", sa.BigInteger(), server_default="0", nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_search_keyword_stats_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_search_keyword_stats")),
    )
    op.execute(INIT_STATS)
    op.execute(IMPACT_FUNCTION)
    op.execute(INDEX_FUNCTION)
    op.execute(INSERT_FUNCTION)
    op.execute(DELETE_FUNCTION)
    op.execute(INSERT_TRIGGER)
    op.execute(DELETE_TRIGGER)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS search_keyword_deleted ON search_index")
    op.execute("DROP TRIGGER IF EXISTS search_keyword_inserted ON search_index")
    op.execute("DROP FUNCTION IF EXISTS search_keyword_deleted()")
    op.execute("DROP FUNCTION IF EXISTS search_keyword_inserted()")
    op.execute("DROP FUNCTION IF EXISTS search_keyword_index(bigint[], tsvector[])")
    op.execute("DROP FUNCTION IF EXISTS search_bm25_impact(integer, integer, float8)")
    op.drop_table("search_keyword_stats")
    op.drop_table("search_postings")
    op.drop_index("ix_search_term_deltas_term_id", table_name="search_term_deltas")
    op.drop_table("search_term_deltas")
    op.drop_table("search_terms")
