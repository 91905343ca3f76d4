"""BM25 keyword ranking: top-k from impact-ordered blocks or postings, or an exact scan.

Score of a chunk for a query = Σ over the query's distinct lexemes t in the chunk of
``idf(t) · impact(tf, dl)``, with ``idf = ln(1 + (N - df + 0.5) / (df + 0.5))`` and
``impact = tf (k1 + 1) / (tf + k1 (1 - b + b · dl / avgdl))`` (k1 1.2, b 0.75; dl =
distinct lexemes of the chunk, avgdl = the one the postings were written with,
``search_keyword_stats.avgdl``). Only the impact is stored per (term, chunk)
(``search_postings``, revision 0018): N and df change with every write and live in
``search_terms`` plus unfolded ``search_term_deltas``, so a write never rewrites
other rows.

Plans (:class:`KeywordPlan`):

* ``blocks`` — the common case once the index has a segment (every bulk load,
  ``agentry index`` and the embedding worker build one, core/memory/keyword_segment.py):
  the same bounds as ``postings`` over packed blocks plus the tail of postings written
  since, summed in numpy (core/memory/bm25_blocks.py); AGENTRY_KEYWORD_BUDGET caps the
  postings it reads.
* ``postings`` — an index without a segment (small, or never compacted). Each query
  term's postings are read strongest first (a backward scan of the primary key),
  ``lim`` per term. A chunk not read for any term scores at most
  ``ub0 = Σ idf · frontier`` (the last impact read, 0 once a term is exhausted); a
  chunk read for some terms at most its known part plus the frontiers of the others.
  The best candidates by that bound are rescored exactly from their ``tsvector`` under
  the filter; when the k-th exact score reaches both bounds the top-k is exact,
  otherwise the term lists are read deeper. Cost follows the postings read, not the
  rows that match; at most min(AGENTRY_KEYWORD_BUDGET, POSTINGS_BUDGET) per query: past
  it the best rescored candidates are returned (measured agreement with the exact
  top-10 in ``agentry bench search --scale N --text``).
* ``exact`` — every matching row scored with the collection statistics (web-search
  syntax, AGENTRY_KEYWORD_INDEX=false, or an index path that came back short).
* ``scope`` — filters matching at most AGENTRY_SEARCH_EXACT_THRESHOLD rows: those rows
  only, with N, df and avgdl counted inside the filter (a user's own statistics, as
  before the postings existed), and while the postings are still being backfilled
  (``agentry index``).
"""

from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import Connection, text

from config import Settings
from core.db.driver import driver_of, driver_statement
from core.memory.block_cache import block_cache
from core.memory.bm25_blocks import block_plan
from core.memory.bm25_ranks import ranked_plan
from core.memory.bm25_reads import FIRST_TAILS_COLUMNS, FIRST_TAILS_SELECT, first_tail, first_tails
from core.memory.bm25_types import (
    ROW_COLUMNS,
    SCORE_EXPR,
    TIE,
    WEIGHTS_CTE,
    Beside,
    KeywordPlan,
    KeywordRun,
    Stats,
    Terms,
)
from core.memory.filters import SearchFilter
from core.models.search import TEXT_SEARCH_CONFIG

__all__ = ["KeywordPlan", "KeywordRun", "Stats", "Terms", "keyword_rows", "query_terms"]

STATS_COLUMNS = (
    "s.avgdl, s.backfilled >= s.backfill_upto AS ready, s.chunks + COALESCE("
    "(SELECT sum(delta) FROM search_term_deltas WHERE term_id = 0), 0) AS chunks, "
    "s.segment_generation, s.segment_postings, "
    "COALESCE((SELECT max(id) FROM search_index), 0) AS max_row_id"
)
STATS_SQL = text(f"SELECT {STATS_COLUMNS} FROM search_keyword_stats s WHERE s.id = 1")
TERMS_SELECT = (
    "SELECT t.id, t.term, t.df + COALESCE((SELECT sum(d.delta) FROM search_term_deltas d "
    "WHERE d.term_id = t.id), 0) AS df FROM search_terms t WHERE t.term IN "
    f"(SELECT lexeme FROM unnest(to_tsvector('{TEXT_SEARCH_CONFIG}', :q)))"
)
TERMS_SQL = text(f"{TERMS_SELECT} ORDER BY t.id")
# Statistics, the query's terms and their first tail read in one statement: a statement
# costs a query about as much as a thousand postings summed, every keyword query needs
# the first two, and with the blocks cached the index plans' first round needs only the
# third (core/memory/bm25_reads.py). Sent on the driver connection: SQLAlchemy's execute
# and row cost more than the statement here.
QUERY_SQL = (
    f"WITH qt AS MATERIALIZED ({TERMS_SELECT}) "
    f"SELECT {STATS_COLUMNS}, q.ids, q.terms, q.dfs, {FIRST_TAILS_COLUMNS} "
    "FROM search_keyword_stats s "
    "CROSS JOIN (SELECT array_agg(t.id ORDER BY t.id) AS ids, "
    "array_agg(t.term ORDER BY t.id) AS terms, array_agg(t.df ORDER BY t.id) AS dfs "
    f"FROM qt t) q CROSS JOIN ({FIRST_TAILS_SELECT}) tl WHERE s.id = 1"
)
TSQUERY = (
    f"(CASE WHEN :websearch THEN websearch_to_tsquery('{TEXT_SEARCH_CONFIG}', :q) "
    f"ELSE replace(plainto_tsquery('{TEXT_SEARCH_CONFIG}', :q)::text, ' & ', ' | ')::tsquery END)"
)
EXACT_SQL = (
    f"WITH {WEIGHTS_CTE} SELECT {ROW_COLUMNS}, {SCORE_EXPR} AS score FROM search_index s "
    f"WHERE s.tsv @@ {TSQUERY} AND {{where}} ORDER BY score DESC, s.id LIMIT :limit"
)
# Statistics inside the filter, as keyword search computed them before the postings:
# N = rows under the filter, df and avgdl over the rows matching any term under it.
SCOPE_SQL = f"""
WITH cand AS MATERIALIZED (
    SELECT {ROW_COLUMNS}, s.tsv FROM search_index s WHERE s.tsv @@ {TSQUERY} AND {{where}}
),
st AS (SELECT GREATEST(avg(length(tsv)), 1) AS avgdl FROM cand),
q AS (
    SELECT u.lexeme AS term,
           ln(1 + (GREATEST(CAST(:n AS float8), (SELECT count(*) FROM cand)) - count(*) + 0.5)
                  / (count(*) + 0.5)) AS w
    FROM cand c, unnest(c.tsv) u
    WHERE u.lexeme IN (SELECT lexeme FROM unnest(to_tsvector('{TEXT_SEARCH_CONFIG}', :q)))
    GROUP BY u.lexeme
)
SELECT s.id, s.entity_type, s.entity_id, s.chunk, s.content, s.metadata, s.created_at,
       s.pending, {SCORE_EXPR.replace("CAST(:avgdl AS float8)", "(SELECT avgdl FROM st)")} AS score
FROM cand s ORDER BY score DESC, s.id LIMIT :limit
"""
# One round of the index plan. `info` is one row whatever passes the filter: the
# bound on unread chunks, the best bound left unrescored, postings read per term.
INDEX_SQL = f"""
WITH {WEIGHTS_CTE},
t AS (
    SELECT * FROM unnest(CAST(:tids AS int[]), CAST(:weights AS float8[]),
                         CAST(:lims AS int[])) WITH ORDINALITY AS t(term_id, w, lim, pos)
),
hits AS MATERIALIZED (
    SELECT t.term_id, t.w, p.impact, p.row_id
    FROM t CROSS JOIN LATERAL (
        SELECT p.impact, p.row_id FROM search_postings p WHERE p.term_id = t.term_id
        ORDER BY p.impact DESC, p.row_id DESC LIMIT t.lim
    ) p
),
fr AS MATERIALIZED (
    SELECT t.term_id, t.pos, count(h.row_id) AS got,
           CASE WHEN count(h.row_id) < t.lim THEN 0 ELSE min(h.impact) END AS frontier
    FROM t LEFT JOIN hits h USING (term_id) GROUP BY t.term_id, t.pos, t.lim
),
bound AS (SELECT COALESCE(sum(t.w * fr.frontier), 0) AS ub0 FROM t JOIN fr USING (term_id)),
cand AS MATERIALIZED (
    SELECT h.row_id, sum(h.w * h.impact) + (SELECT ub0 FROM bound) - sum(h.w * fr.frontier) AS ub
    FROM hits h JOIN fr USING (term_id) GROUP BY h.row_id
),
pick AS MATERIALIZED (
    SELECT row_id, ub FROM cand ORDER BY ub DESC, row_id LIMIT :rescore
),
info AS (
    SELECT (SELECT ub0 FROM bound) AS ub0,
           (SELECT max(c.ub) FROM cand c
            WHERE NOT EXISTS (SELECT 1 FROM pick p WHERE p.row_id = c.row_id)) AS next_ub,
           (SELECT array_agg(got ORDER BY pos) FROM fr) AS got,
           (SELECT array_agg(frontier ORDER BY pos) FROM fr) AS fronts
),
scored AS (
    SELECT {ROW_COLUMNS}, {SCORE_EXPR} AS score
    FROM pick c JOIN search_index s ON s.id = c.row_id WHERE {{where}}
)
SELECT info.ub0, info.next_ub, info.got, info.fronts, r.*
FROM info LEFT JOIN LATERAL (
    SELECT * FROM scored ORDER BY score DESC, id LIMIT :limit
) r ON TRUE
"""
# First read per term; the rarest terms are read whole in the first round up to EXHAUST
# postings in all; each further round reads GROWTH times deeper (fewer rounds of more
# postings measured faster than doubling on 100k chunks: 1.2-1.3 rounds on average).
LIM0 = 256
EXHAUST = 16_384
GROWTH = 4
# SQL pays ~3 µs a posting (numpy ~0.01): the postings plan, which only serves an index
# without a segment yet, keeps the budget it was measured with.
POSTINGS_BUDGET = 40_000
NEGATION = re.compile(r"(?:^|\s)-\w")
COUNT_SQL = "SELECT count(*) FROM (SELECT 1 FROM search_index WHERE {where} LIMIT :cap) s"


def idf(df: int, n: int) -> float:
    return math.log(1 + (n - df + 0.5) / (df + 0.5))


def is_websearch(query: str) -> bool:
    """Quotes, OR or -word (a dash right before a word: "a - b" is punctuation)."""
    return '"' in query or " OR " in query or NEGATION.search(query) is not None


def read_stats(conn: Connection) -> Stats:
    return _stats(conn.execute(STATS_SQL).one())


def query_terms(conn: Connection, query: str, chunks: int) -> Terms:
    """The query's lexemes that occur in the index, with their collection IDF."""
    rows = [(int(r.id), str(r.term), int(r.df)) for r in conn.execute(TERMS_SQL, {"q": query})]
    return _terms(rows, chunks)


def read_query(conn: Connection, query: str, limit: int) -> tuple[Stats, Terms]:
    """:func:`read_stats` and :func:`query_terms` in one statement, with the terms' first
    tail read for a query of ``limit`` rows (``Terms.tails``)."""
    lim = first_tail(limit)
    with driver_of(conn).cursor(row_factory=namedtuple_row) as cur:
        cur.execute(*driver_statement(conn, QUERY_SQL, {"q": query, "tlim": lim}))
        row: Any = cur.fetchone()
    assert row is not None  # search_keyword_stats has its one row from the migrations on
    stats = _stats(row)
    found = zip(row.ids or [], row.terms or [], row.dfs or [], strict=True)
    terms = _terms([(int(i), str(t), int(d)) for i, t, d in found], stats.chunks)
    return stats, replace(terms, tails=first_tails(row, lim, stats.segment_generation))


def _stats(row: Any) -> Stats:
    return Stats(
        float(row.avgdl),
        bool(row.ready),
        int(row.chunks),
        int(row.segment_generation),
        int(row.segment_postings),
        int(row.max_row_id),
    )


def _terms(rows: list[tuple[int, str, int]], chunks: int) -> Terms:
    rows = [r for r in rows if r[2] > 0]
    n = max([chunks, *(df for _, _, df in rows)])
    return Terms(
        [i for i, _, _ in rows],
        [t for _, t, _ in rows],
        [idf(df, n) for _, _, df in rows],
        [df for _, _, df in rows],
    )


def keyword_rows(
    conn: Connection,
    query: str,
    flt: SearchFilter,
    *,
    limit: int,
    settings: Settings,
    force: KeywordPlan | None = None,
    budget: int | None = None,
    ranks: bool = False,
    beside: Beside | None = None,
    shown: int | None = None,
) -> KeywordRun:
    """The ``limit`` best chunks for ``query`` under ``flt`` by BM25, best first.

    Never short: ``limit`` rows whenever that many chunks match a term under the filter.

    Args:
        conn: any connection.
        query: plain words (OR-ed), or web-search syntax (quotes, OR, -word).
        flt: the filter.
        limit: rows wanted.
        settings: AGENTRY_KEYWORD_INDEX, _BUDGET and the exact-scan threshold.
        force: run this plan (tests, benchmarks).
        budget: postings the index plans may read; default AGENTRY_KEYWORD_BUDGET.
        ranks: an order is enough (hybrid's half): the blocks plan reads once within
            ``budget`` and ranks by the part of each score read, with keys and no
            content (core/memory/bm25_ranks.py); the other plans are unchanged.
        beside: entered by the ranked plan while it adds up what it read (hybrid's
            vector half runs then); not entered by the other plans.
        shown: with ``ranks``, the ranked plan returns snippet, metadata and date for
            this many leading rows (default all) and the pending ones only.

    Returns:
        The plan used and the rows (with ``score``).
    """
    budget = settings.keyword_budget if budget is None else budget
    where, params = flt.where()
    stats, terms = read_query(conn, query, limit)
    websearch = is_websearch(query)
    plan = force
    scope_n: int | None = None
    if plan is None:
        if not stats.ready:
            plan = KeywordPlan.scope
        elif not flt.is_empty:
            cap = max(settings.search_exact_threshold, limit) + 1
            count = text(COUNT_SQL.format(where=where))
            scope_n = int(conn.execute(count, {**params, "cap": cap}).scalar_one())
            if scope_n < cap:
                plan = KeywordPlan.scope
        if plan is None:
            exact = websearch or not settings.keyword_index
            indexed = KeywordPlan.blocks if stats.segment_postings else KeywordPlan.postings
            plan = KeywordPlan.exact if exact else indexed
    if plan is KeywordPlan.postings and stats.segment_postings:
        plan = KeywordPlan.blocks  # search_postings is only the tail once a segment exists
    base = {**params, "q": query, "websearch": websearch, "limit": limit, "avgdl": stats.avgdl}
    if plan is KeywordPlan.scope:
        if scope_n is None:
            scope_n = _scope_size(conn, flt, stats)
        rows = list(conn.execute(text(SCOPE_SQL.format(where=where)), {**base, "n": scope_n}))
        return KeywordRun(plan, rows)
    if not terms.ids:
        return KeywordRun(plan, [])
    weighted = {**base, "terms": terms.terms, "weights": terms.weights}
    cache = block_cache(settings)
    if plan in (KeywordPlan.postings, KeywordPlan.blocks) and not websearch:
        if plan is KeywordPlan.blocks and ranks:
            run = ranked_plan(
                conn, terms, where, weighted, limit=limit, budget=budget,
                generation=stats.segment_generation, max_row_id=stats.max_row_id,
                cache=cache, beside=beside, shown=shown,
            )  # fmt: skip
            if len(run.rows) >= limit or run.proven:
                return run
        if plan is KeywordPlan.blocks:
            run = block_plan(
                conn,
                terms,
                where,
                weighted,
                limit=limit,
                budget=budget,
                generation=stats.segment_generation,
                filtered=not flt.is_empty,
                max_row_id=stats.max_row_id,
                cache=cache,
            )
        else:
            run = _index_plan(
                conn, terms, where, weighted, limit=limit, budget=min(budget, POSTINGS_BUDGET)
            )
        if len(run.rows) >= limit or run.proven:
            return run
        fallbacks: list[KeywordPlan] = [plan]
    else:
        fallbacks = []
    rows = list(conn.execute(text(EXACT_SQL.format(where=where)), weighted))
    return KeywordRun(KeywordPlan.exact, rows, fallbacks=fallbacks)


def _scope_size(conn: Connection, flt: SearchFilter, stats: Stats) -> int:
    if flt.is_empty and stats.ready:
        return stats.chunks
    where, params = flt.where()
    count = text(f"SELECT count(*) FROM search_index WHERE {where}")
    return int(conn.execute(count, params).scalar_one())


def first_reads(dfs: list[int], limit: int, budget: int) -> list[int]:
    """Postings read per term in the first round, within ``budget``: the rarest terms
    whole (up to EXHAUST postings in all), the others their strongest
    ``max(4 * limit, LIM0)``."""
    base = max(4 * limit, LIM0)
    if base * len(dfs) > budget:
        base = max(limit, budget // max(len(dfs), 1))
    lims = [base] * len(dfs)
    room = min(EXHAUST, budget)
    for i in sorted(range(len(dfs)), key=lambda i: dfs[i]):
        if dfs[i] > room:
            break
        lims[i] = max(lims[i], dfs[i] + 1)  # one more than exist: seen to be exhausted
        room -= dfs[i]
    return lims


def _index_plan(
    conn: Connection,
    terms: Terms,
    where: str,
    params: dict[str, Any],
    *,
    limit: int,
    budget: int,
) -> KeywordRun:
    """Threshold-style top-k over the postings; see the module docstring."""
    sql = text(INDEX_SQL.format(where=where))
    lims = first_reads(terms.dfs, limit, budget)
    rescore = max(4 * limit, 64)
    rounds = 0
    while True:
        rounds += 1
        result = list(
            conn.execute(
                sql,
                {**params, "tids": terms.ids, "lims": lims, "rescore": rescore},
            )
        )
        info = result[0]
        got = [int(g) for g in info.got]
        fronts = [float(f) for f in info.fronts]
        rows = [r for r in result if r.id is not None]
        read = sum(got)
        exhausted = [g < lim for g, lim in zip(got, lims, strict=True)]
        # Bounds and scores add the same float4 weights in different orders: a tie may
        # differ in the last bits, and copies of one text tie exactly.
        theta = float(rows[limit - 1].score) + TIE if len(rows) >= limit else -math.inf
        ub0 = float(info.ub0)
        next_ub = float(info.next_ub) if info.next_ub is not None else -math.inf
        if theta >= ub0 and theta >= next_ub:
            return KeywordRun(KeywordPlan.postings, rows, rounds, read)
        if all(exhausted) and next_ub == -math.inf:
            # Every posting of every term was read and rescored: complete.
            return KeywordRun(KeywordPlan.postings, rows, rounds, read)
        if read >= budget:
            return KeywordRun(KeywordPlan.postings, rows, rounds, read, proven=False)
        before = (list(lims), rescore)
        room = budget - read
        if max(ub0, next_ub) > theta and room > 0 and not all(exhausted):
            # Rare terms were read whole in the first round: what is left are the long
            # lists of common words, whose frontiers fall slowly. The largest
            # contributions to the bound are read deeper first, within the budget.
            # Reading a posting costs about a microsecond, rescoring a row ten or more:
            # deeper lists also tighten the candidates' bounds, so they come first.
            order = sorted(range(len(lims)), key=lambda i: -terms.weights[i] * fronts[i])
            for i in order:
                if exhausted[i] or room <= 0:
                    continue
                grow = min(lims[i] * (GROWTH - 1), room)
                lims[i] += grow
                room -= grow
            if next_ub > theta:
                rescore *= 2
        elif next_ub > theta:
            rescore *= GROWTH
        if (lims, rescore) == before:  # nothing left to read within the budget
            return KeywordRun(KeywordPlan.postings, rows, rounds, read, proven=False)
