"""The blocks plan's per-query sums: added to as postings arrive, pooled between queries.

A query over long lists reads a few hundred thousand postings in three or four rounds.
Summing everything read so far again in each round (``np.bincount`` over the row-id
span, then a scan for the nonzero entries) cost more than reading the blocks: about
8 ms a round at a million chunks, 60% of the keyword time of 100 queries. Here each
round adds only what it read; rows are found through a row-id index (4 bytes a row id,
kept in a pool between queries because a fresh one costs a page fault per 4 KB touched)
and only the touched entries are zeroed afterwards. Candidates whose bound falls under
an exact k-th score are dropped for good (:meth:`Sums.rule_out`).

Per row read: ``known`` (the sum of ``idf · impact`` over the terms read for it) and
``mask`` (one bit per query term read for it; :data:`SEEN` for terms past the bits,
which then count as unread in the bound — looser, never wrong; :data:`RESCORED` once
the row has been scored exactly). The bound of a segment row is ``known + F - seen``,
F the sum of the segment frontiers and ``seen`` those of the terms in its mask, summed
through eight 256-entry tables, one per byte of the mask.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

TERM_BITS = 62  # bits 0..61: query terms
SEEN = np.uint64(1 << 62)
RESCORED = np.uint64(1 << 63)
# Row ids below this go through the dense row-id index (4 bytes a row id, 128 MB at the
# limit); past it, sums are sparse (sorting every round, the old way).
DENSE_MAX = 1 << 25
POOL_MAX = 4  # arrays kept for concurrent queries; more queries allocate their own
_BYTE_BITS = (np.arange(256)[:, None] >> np.arange(8)) & 1


class Sums:
    """Sums of one query; see the module docstring.

    Rows are numbered in the order they are first read (``pos[row id]`` is that number
    plus one, 0 for a row not read), and the sums live in arrays by that number: a round
    then reads them in one sequential pass instead of gathering from arrays the size of
    the collection.
    """

    def __init__(self, size: int) -> None:
        self.pos = np.zeros(size, dtype=np.int32)
        self.rows = np.zeros(1024, dtype=np.int64)
        self.known = np.zeros(1024, dtype=np.float64)
        self.mask = np.zeros(1024, dtype="<u8")  # bytes read in order by bounds()
        self.n = 0
        self._known = self._fronts = np.empty(0)
        self._m = np.empty(0, dtype=np.uint64)
        self._live = np.empty(0, dtype=np.intp)  # slots still candidates
        self._counted = 0  # slots below this are in _live or were ruled out

    def ensure(self, top: int) -> None:
        """Room for row ids up to ``top``."""
        if top < len(self.pos):
            return
        pos = np.zeros(max(top + 1, 2 * len(self.pos)), dtype=np.int32)
        pos[: len(self.pos)] = self.pos
        self.pos = pos

    def _slots(self, ids: np.ndarray) -> np.ndarray:
        """The numbers of ``ids`` (each once), numbering the rows not seen before."""
        self.ensure(int(ids.max()))
        p = self.pos[ids]
        new = np.flatnonzero(p == 0)
        if len(new):
            end = self.n + len(new)
            if end > len(self.rows):
                size = max(end, 2 * len(self.rows))
                for name in ("rows", "known", "mask"):
                    old = getattr(self, name)
                    grown = np.zeros(size, dtype=old.dtype)
                    grown[: self.n] = old[: self.n]
                    setattr(self, name, grown)
            numbers = np.arange(self.n + 1, end + 1, dtype=np.int32)
            self.pos[ids[new]] = numbers
            self.rows[self.n : end] = ids[new]
            p[new] = numbers
            self.n = end
        return p - 1

    def add_segment(self, ids: np.ndarray, vals: np.ndarray, term: int) -> None:
        """Postings of one term (each row id once) read from the segment."""
        slot = self._slots(ids)
        self.known[slot] += vals
        self.mask[slot] |= np.uint64(1 << term) if term < TERM_BITS else SEEN

    def mark_rescored(self, ids: np.ndarray) -> None:
        # Tail rows get a number too (with nothing summed): a row is in the segment or
        # the tail, never both.
        self.mask[self._slots(ids)] |= RESCORED

    def fresh(self, ids: np.ndarray) -> np.ndarray:
        """Which of ``ids`` have not been rescored."""
        if not len(ids):
            return np.ones(0, dtype=bool)
        self.ensure(int(ids.max()))
        p = self.pos[ids].astype(np.intp)
        seen = p > 0
        out = np.ones(len(ids), dtype=bool)
        out[seen] = (self.mask[p[seen] - 1] & RESCORED) == 0
        return out

    def fresh_rows(self, fronts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Segment rows not rescored yet and their known parts; :meth:`bounds` follows.

        ``fronts``: ``idf · frontier`` of the segment per query term.
        """
        live = np.concatenate([self._live, np.arange(self._counted, self.n, dtype=np.intp)])
        self._counted = self.n
        # Rows numbered only by mark_rescored (tail rows) carry RESCORED: all left out.
        mask = self.mask[live]
        keep = (mask & RESCORED) == 0
        self._live = live = live[keep]
        self._m, self._known, self._fronts = mask[keep], self.known[live], fronts
        return self.rows[live], self._known

    def rule_out(self, keep: np.ndarray) -> None:
        """Keep only these of the rows :meth:`fresh_rows` returned as candidates: the
        others' bounds are below an exact k-th score, and bounds only fall."""
        self._live = self._live[keep]

    def bounds(self, floor: float) -> np.ndarray:
        """Bounds of the rows :meth:`fresh_rows` returned: exact where ``known + F``
        reaches ``floor``, ``known + F`` (looser, and below ``floor``) elsewhere."""
        total = float(self._fronts.sum())
        ub = self._known + total
        near = np.flatnonzero(ub >= floor)
        if len(near):
            m = self._m[near].view(np.uint8).reshape(-1, 8)  # little-endian: byte 0 first
            seen = np.zeros(len(near))
            for byte, table in enumerate(_tables(self._fronts)):
                if table is not None:
                    seen += table[m[:, byte]]
            ub[near] = self._known[near] + (total - seen)
        return ub

    def clear(self) -> None:
        self.pos[self.rows[: self.n]] = 0
        self.known[: self.n] = 0.0
        self.mask[: self.n] = 0
        self.n = self._counted = 0
        self._live = np.empty(0, dtype=np.intp)


def _tables(fronts: np.ndarray) -> list[np.ndarray | None]:
    """Per byte of the mask, the sum of the fronts of the terms whose bits are set."""
    per_bit = np.zeros(64)
    n = min(len(fronts), TERM_BITS)
    per_bit[:n] = fronts[:n]
    out: list[np.ndarray | None] = []
    for byte in range(8):
        part = per_bit[8 * byte : 8 * byte + 8]
        out.append(_BYTE_BITS @ part if part.any() else None)
    return out


def sparse_bounds(
    ids: list[np.ndarray], vals: list[np.ndarray], term: list[int], fronts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per row read: id, known part and bound, by sorting (the tail, which is re-read
    whole each round and small, and rows past :data:`DENSE_MAX`)."""
    if not ids:
        return np.empty(0, dtype=np.int64), np.empty(0), np.empty(0)
    all_ids = np.concatenate(ids)
    known_v = np.concatenate(vals)
    seen_v = np.repeat(fronts[term], [len(a) for a in ids])
    rows, inv = np.unique(all_ids, return_inverse=True)
    known = np.bincount(inv, known_v, minlength=len(rows))
    seen = np.bincount(inv, seen_v, minlength=len(rows))
    return rows, known, known + (float(fronts.sum()) - seen)


class SparseSums:
    """The same sums by sorting, for collections whose row ids pass :data:`DENSE_MAX`."""

    def __init__(self) -> None:
        self._ids: list[np.ndarray] = []
        self._vals: list[np.ndarray] = []
        self._term: list[int] = []
        self._rescored = np.empty(0, dtype=np.int64)
        self._ub = np.empty(0)

    def add_segment(self, ids: np.ndarray, vals: np.ndarray, term: int) -> None:
        self._ids.append(ids)
        self._vals.append(vals)
        self._term.append(term)

    def mark_rescored(self, ids: np.ndarray) -> None:
        self._rescored = np.concatenate([self._rescored, ids])

    def fresh(self, ids: np.ndarray) -> np.ndarray:
        return ~np.isin(ids, self._rescored)

    def fresh_rows(self, fronts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows, known, ub = sparse_bounds(self._ids, self._vals, self._term, fronts)
        keep = self.fresh(rows)
        self._ub = ub[keep]
        return rows[keep], known[keep]

    def bounds(self, floor: float) -> np.ndarray:
        return self._ub

    def rule_out(self, keep: np.ndarray) -> None:
        pass  # recomputed from every posting read each round


_POOL: list[Sums] = []
_LOCK = threading.Lock()


@contextmanager
def query_sums(max_row_id: int) -> Iterator[Sums | SparseSums]:
    """Sums for one query: pooled dense arrays (cleared and returned to the pool after),
    or sparse ones when row ids reach :data:`DENSE_MAX`."""
    if max_row_id >= DENSE_MAX:
        yield SparseSums()
        return
    with _LOCK:
        sums = _POOL.pop() if _POOL else None
    if sums is None:
        sums = Sums(max_row_id + 1)
    sums.ensure(max_row_id)
    try:
        yield sums
    finally:
        sums.clear()
        with _LOCK:
            if len(_POOL) < POOL_MAX:
                _POOL.append(sums)


def read_once(ids: np.ndarray, vals: np.ndarray, max_row_id: int) -> tuple[np.ndarray, np.ndarray]:
    """Each row of ``ids`` once with the sum of its ``vals``: the postings of a query
    read once (core/memory/bm25_ranks.py), which needs no bounds, so no masks and no
    numbering term by term. One scatter into the pooled row-id index numbers every
    posting by the last of its row, one gather reads the numbers back and one bincount
    sums by them: 1.0 ms for 50,000 postings over a million rows, against 2.0-2.9 ms
    added term by term into :class:`Sums`."""
    if not len(ids):
        return np.empty(0, dtype=np.int64), np.empty(0)
    top = max(max_row_id, int(ids.max()))  # a deleted last row leaves ids past max(id)
    if top >= DENSE_MAX:
        rows, inv = np.unique(ids, return_inverse=True)
        return rows, np.bincount(inv, vals, minlength=len(rows))
    n = len(ids)
    with query_sums(top) as sums:  # borrowed for its zeroed index, left zeroed
        assert isinstance(sums, Sums)  # dense below DENSE_MAX
        pos = sums.pos
        pos[ids] = np.arange(1, n + 1, dtype=np.int32)
        slot = pos[ids] - 1
        pos[ids] = 0
    known = np.bincount(slot, weights=vals, minlength=n)
    first = np.flatnonzero(slot == np.arange(n))
    return ids[first], known[first]
