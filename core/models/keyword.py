"""Keyword (BM25) index tables beside ``search_index`` (revision 0018).

``search_terms`` is the vocabulary (lexeme → id, document frequency), ``search_postings``
holds one row per (term, chunk) with the chunk's BM25 term weight *without* IDF, ordered
by that weight so top-k can stop early (core/memory/bm25.py). Triggers on
``search_index`` keep both in step, and write document-frequency changes to
``search_term_deltas`` (insert-only, so concurrent writers never wait on a hot
vocabulary row) which are folded into ``search_terms.df`` now and then.
``search_posting_blocks`` (revision 0019) is the compacted segment: the postings moved
out of ``search_postings`` into packed, impact-ordered blocks (core/memory/keyword_segment.py);
``search_postings`` keeps the tail written since.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    Float,
    Identity,
    Index,
    Integer,
    LargeBinary,
    SmallInteger,
    Text,
)
from sqlalchemy.dialects.postgresql import REAL
from sqlalchemy.orm import Mapped, mapped_column

from core.models.base import Base


class SearchTerm(Base):
    __tablename__ = "search_terms"

    id: Mapped[int] = mapped_column(Integer, Identity(always=True), primary_key=True)
    term: Mapped[str] = mapped_column(Text, nullable=False, unique=True)
    # Folded document frequency; add the term's rows in search_term_deltas for the live one.
    df: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")


class SearchTermDelta(Base):
    """Document-frequency changes not folded yet; term 0 counts chunks, -1 their lengths."""

    __tablename__ = "search_term_deltas"

    id: Mapped[int] = mapped_column(BigInteger, Identity(always=True), primary_key=True)
    term_id: Mapped[int] = mapped_column(Integer, nullable=False)
    delta: Mapped[int] = mapped_column(BigInteger, nullable=False)

    __table_args__ = (Index("ix_search_term_deltas_term_id", "term_id"),)


class SearchPosting(Base):
    __tablename__ = "search_postings"

    # The primary key is the only index: read backwards (impact DESC, row_id DESC) it gives
    # a term's strongest postings first; a delete recomputes the impact to find its rows.
    term_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    # Saturated, length-normalised term frequency: tf(k1+1) / (tf + k1(1 - b + b dl/avgdl)).
    impact: Mapped[float] = mapped_column(REAL, primary_key=True)
    row_id: Mapped[int] = mapped_column(BigInteger, primary_key=True)


class SearchKeywordStats(Base):
    """One row: the avgdl the postings were computed with, folded totals, backfill state."""

    __tablename__ = "search_keyword_stats"

    id: Mapped[int] = mapped_column(SmallInteger, primary_key=True, server_default="1")
    avgdl: Mapped[float] = mapped_column(Float, nullable=False, server_default="8")
    chunks: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    total_length: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Rows with id <= backfill_upto predate the postings; backfilled is the cursor.
    backfill_upto: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    backfilled: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    # Bumped by every segment rebuild; postings in search_posting_blocks.
    segment_generation: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")
    segment_postings: Mapped[int] = mapped_column(BigInteger, nullable=False, server_default="0")

    __table_args__ = (CheckConstraint("id = 1", name="single_row"),)


class SearchPostingBlock(Base):
    """Up to BLOCK postings of one term, strongest first; ``blocks`` is the term's count."""

    __tablename__ = "search_posting_blocks"

    term_id: Mapped[int] = mapped_column(Integer, primary_key=True)
    block: Mapped[int] = mapped_column(Integer, primary_key=True)
    blocks: Mapped[int] = mapped_column(Integer, nullable=False)
    max_impact: Mapped[float] = mapped_column(REAL, nullable=False)
    min_impact: Mapped[float] = mapped_column(REAL, nullable=False)
    # Little-endian int64 row ids and float32 impacts, the same order (STORAGE EXTERNAL).
    row_ids: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
    impacts: Mapped[bytes] = mapped_column(LargeBinary, nullable=False)
