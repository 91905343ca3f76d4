"""Decoded segment blocks kept in the process, by segment generation.

A segment's blocks (core/memory/keyword_segment.py) never change: a rebuild writes new
ones under a new ``segment_generation``, which is unique across databases and rebuilds
(NEXT_GENERATION), so a block read once under a generation is the same block for every
later query that sees that generation. Queries read each list strongest first, so the
blocks every query over a common term reads are its first ones, and those stay here.
At a million chunks a hybrid query reads about 50 blocks (530 KB); sending them from
PostgreSQL took about 1 ms of its 1.4 ms round statement. The round statement still
runs for the tail and the generation, so a cached block is used only under the
generation its statement's snapshot sees.

Bounded by AGENTRY_KEYWORD_BLOCK_CACHE_MB (least recently used out first); 0 turns it
off. One cache per process (each worker keeps its own).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np
import psycopg

from config import Settings

# Python object and dict overhead of one entry, on top of its arrays.
ENTRY_OVERHEAD = 400


@dataclass(frozen=True)
class Block:
    """One block of a term's list: row ids, impacts, its smallest impact, and how many
    blocks the list has."""

    row_ids: np.ndarray
    impacts: np.ndarray
    min_impact: float
    blocks: int


# (server, database, generation, term id, block number)
Key = tuple[str, int, str, int, int, int]


class BlockCache:
    """A thread-safe LRU of :class:`Block` bounded by bytes."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._blocks: OrderedDict[Key, Block] = OrderedDict()
        self._bytes = 0
        # Lookups since clear() that found their block / did not (the round statement
        # then reads that term from there on).
        self.hits = self.misses = 0

    def get(self, key: Key) -> Block | None:
        with self._lock:
            block = self._blocks.get(key)
            if block is None:
                self.misses += 1
            else:
                self.hits += 1
                self._blocks.move_to_end(key)
            return block

    def put(self, key: Key, block: Block) -> None:
        if self.max_bytes <= 0:
            return
        size = _size(block)
        with self._lock:
            old = self._blocks.pop(key, None)
            if old is not None:
                self._bytes -= _size(old)
            self._blocks[key] = block
            self._bytes += size
            while self._bytes > self.max_bytes and self._blocks:
                _, dropped = self._blocks.popitem(last=False)
                self._bytes -= _size(dropped)

    def clear(self) -> None:
        with self._lock:
            self._blocks.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    @property
    def size_bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._blocks)


def _size(block: Block) -> int:
    return block.row_ids.nbytes + block.impacts.nbytes + ENTRY_OVERHEAD


def server_of(pg: psycopg.Connection) -> tuple[str, int, str]:
    """What, with the generation, names a segment: the server and database of ``pg``."""
    info = pg.info
    return (info.host, info.port, info.dbname)


_CACHE = BlockCache(0)
_CACHE_LOCK = threading.Lock()


def block_cache(settings: Settings) -> BlockCache | None:
    """The process's cache, sized by ``settings`` (None when it is off)."""
    wanted = settings.keyword_block_cache_mb * 1024 * 1024
    if wanted <= 0:
        return None
    if _CACHE.max_bytes != wanted:
        with _CACHE_LOCK:
            _CACHE.max_bytes = wanted
    return _CACHE
