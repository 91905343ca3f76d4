"""What every keyword plan shares: the row columns, the one scoring expression, results."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import numpy as np
import psycopg

ROW_COLUMNS = (
    "s.id, s.entity_type, s.entity_id, s.chunk, s.content, s.metadata, s.created_at, "
    "s.embedding IS NULL AS pending"
)
# One expression scores every plan, so exact and index answers are bit-identical (the sum
# in lexeme order, whichever way a plan joins the few rows). Only the query's lexemes are
# unnested: marked with weight A (every stored lexeme has the default D: search_index.tsv
# is plain to_tsvector) and kept by ts_filter, instead of one positions array per lexeme
# of the chunk (-14% on the 90 best candidates of long queries at 1M).
SCORE_EXPR = (
    "(SELECT COALESCE(sum(q.w * search_bm25_impact(COALESCE(array_length(u.positions, 1), 1), "
    "length(s.tsv), CAST(:avgdl AS float8)) ORDER BY u.lexeme), 0) "
    "FROM unnest(ts_filter(setweight(s.tsv, 'A', "
    "(SELECT array_agg(q.term) FROM q)), ARRAY['a']::\"char\"[])) u JOIN q ON q.term = u.lexeme)"
)
WEIGHTS_CTE = (
    "q AS (SELECT * FROM unnest(CAST(:terms AS text[]), CAST(:weights AS float8[])) AS q(term, w))"
)
# Bounds and scores add the same float4 weights in different orders: a tie may differ in
# the last bits, and copies of one text tie exactly.
TIE = 1e-9
# Work a caller runs on the keyword query's connection while the query adds up what it
# read (hybrid's vector half, sent pipelined: core/memory/hybrid.py). Entered after a
# round's statement returned; it must not leave a statement running when it exits.
Beside = Callable[[psycopg.Connection], AbstractContextManager[None]]


class KeywordPlan(StrEnum):
    postings = "postings"
    blocks = "blocks"
    exact = "exact"
    scope = "scope"


@dataclass
class KeywordRun:
    """What a keyword query did (tests, benchmarks, diagnostics)."""

    plan: KeywordPlan
    rows: list[Any]
    rounds: int = 0
    postings_read: int = 0
    blocks_read: int = 0
    rescored: int = 0
    # False only when the index plan stopped at the budget before proving its top-k.
    proven: bool = True
    fallbacks: list[KeywordPlan] = field(default_factory=list)


@dataclass(frozen=True)
class Stats:
    avgdl: float
    ready: bool
    chunks: int
    # 0 until the first segment rebuild (core/memory/keyword_segment.py).
    segment_generation: int = 0
    segment_postings: int = 0
    max_row_id: int = 0  # sizes the blocks plan's per-row sums (core/memory/bm25_sums.py)


@dataclass(frozen=True)
class Terms:
    ids: list[int]
    terms: list[str]
    weights: list[float]
    dfs: list[int]
    # The terms' first tail read, when it came with them (core/memory/bm25_reads.py).
    tails: FirstTails | None = None


@dataclass(frozen=True)
class FirstTails:
    """Each query term's strongest ``lim`` tail postings (``search_postings``), read in
    the statement that found the terms, under segment ``generation``: with the blocks
    in the process's cache, the first round then needs no statement of its own."""

    lim: int
    generation: int
    by_term: dict[int, tuple[np.ndarray, np.ndarray]]  # term id: row ids, impacts
