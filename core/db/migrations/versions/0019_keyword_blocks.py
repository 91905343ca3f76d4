"""keyword segment: packed, impact-ordered posting blocks; deletes count df from the tsvector

Revision ID: 0019
Revises: 0018

- search_posting_blocks: a snapshot of the postings, per term in impact-descending order,
  cut into blocks whose row ids and impacts are packed little-endian int64 / float32
  arrays (read and scored in numpy, core/memory/bm25_blocks.py). Built by moving
  search_postings into it (core/memory/keyword_segment.py): what is left in
  search_postings is the tail written since.
- search_keyword_stats gains the segment's generation (bumped by every rebuild, so a
  query that reads blocks in several statements sees one segment) and size.
- the delete trigger counts document-frequency changes from the deleted rows' tsvectors:
  a row moved into the segment has no postings left to count.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Rows the backfill has not reached (backfilled < id <= backfill_upto) were never counted.
DELETE_FUNCTION = """
CREATE OR REPLACE FUNCTION search_keyword_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    ref float8;
    upto bigint;
    done bigint;
BEGIN
    SELECT avgdl, backfill_upto, backfilled INTO ref, upto, done
    FROM search_keyword_stats WHERE id = 1;
    -- Tail postings are found by their key (the impact recomputed); segment entries of
    -- deleted rows stay until the next rebuild and are dropped when rescored.
    DELETE FROM search_postings p
    USING old_rows o, unnest(o.tsv) u, search_terms t
    WHERE t.term = u.lexeme AND p.term_id = t.id AND p.row_id = o.id
      AND p.impact = search_bm25_impact(COALESCE(array_length(u.positions, 1), 1),
                                        length(o.tsv), ref);
    WITH counted AS MATERIALIZED (
        SELECT o.tsv FROM old_rows o WHERE o.id > upto OR o.id <= done
    )
    INSERT INTO search_term_deltas (term_id, delta)
    SELECT t.id, -count(*) FROM counted c, unnest(c.tsv) u
    JOIN search_terms t ON t.term = u.lexeme GROUP BY t.id
    UNION ALL SELECT 0, -count(*) FROM counted HAVING count(*) > 0
    UNION ALL SELECT -1, -sum(length(tsv)) FROM counted HAVING count(*) > 0;
    RETURN NULL;
END;
$$
"""
OLD_DELETE_FUNCTION = """
CREATE OR REPLACE FUNCTION search_keyword_deleted() RETURNS trigger LANGUAGE plpgsql AS $$
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


def upgrade() -> None:
    op.create_table(
        "search_posting_blocks",
        sa.Column("term_id", sa.Integer(), nullable=False),
        sa.Column("block", sa.Integer(), nullable=False),
        sa.Column("blocks", sa.Integer(), nullable=False),
        sa.Column("max_impact", sa.REAL(), nullable=False),
        sa.Column("min_impact", sa.REAL(), nullable=False),
        sa.Column("row_ids", sa.LargeBinary(), nullable=False),
        sa.Column("impacts", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("term_id", "block", name=op.f("pk_search_posting_blocks")),
    )
    # Packed numbers do not compress: pglz would only spend time trying.
    op.execute("ALTER TABLE search_posting_blocks ALTER COLUMN row_ids SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE search_posting_blocks ALTER COLUMN impacts SET STORAGE EXTERNAL")
    op.add_column(
        "search_keyword_stats",
        sa.Column("segment_generation", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.add_column(
        "search_keyword_stats",
        sa.Column("segment_postings", sa.BigInteger(), server_default="0", nullable=False),
    )
    op.execute(DELETE_FUNCTION)


def downgrade() -> None:
    # 0018 expects every posting in search_postings: start its backfill over (search
    # answers with the exact scan until `agentry index` has rewritten them).
    op.execute("TRUNCATE search_postings, search_term_deltas")
    op.execute("UPDATE search_terms SET df = 0 WHERE df <> 0")
    op.execute(
        "UPDATE search_keyword_stats SET chunks = 0, total_length = 0, backfilled = 0, "
        "backfill_upto = (SELECT COALESCE(max(id), 0) FROM search_index) WHERE id = 1"
    )
    op.execute(OLD_DELETE_FUNCTION)
    op.drop_column("search_keyword_stats", "segment_postings")
    op.drop_column("search_keyword_stats", "segment_generation")
    op.drop_table("search_posting_blocks")
