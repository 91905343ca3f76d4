"""Keeping freed memory in the process's heap, so that each search does not fault it in again.

A keyword or hybrid query allocates a few numpy arrays of a few hundred kilobytes (the
postings it read, their sums) and frees them when it returns. glibc's malloc gives
memory back to the kernel early: a block past M_MMAP_THRESHOLD gets pages mapped for
it alone, unmapped when it is freed, and the top of the heap is trimmed once more than
M_TRIM_THRESHOLD of it is free. Both start at 128 KiB; freeing a mapped block raises them
to its size and twice that, which a query's arrays together still pass. Either way the
next query's arrays land on fresh pages and pay one page fault per 4 KiB touched.
Measured on a million-chunk load: the keyword half's sum of ~45,000 postings took
1.7-1.9 ms inside hybrid queries and 0.9 ms with the thresholds fixed (README, *Freed
memory stays in the heap*).

:func:`keep_freed_memory` fixes both thresholds (``mallopt``), once per process: at most
``trim_mb`` of free memory then stays mapped. On a C library without ``mallopt`` (musl,
macOS) it does nothing. Setting either threshold turns off glibc's adjustment of both,
which is why both are set.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import threading

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_MAX = 32 << 20  # glibc's upper bound for M_MMAP_THRESHOLD on 64-bit
_done: dict[str, bool] = {}
_lock = threading.Lock()


def keep_freed_memory(trim_mb: int) -> bool:
    """Keep up to ``trim_mb`` MiB of freed memory in the heap (0: leave malloc alone).

    Returns whether the thresholds are set (False on other C libraries, or with 0).
    Idempotent: the first call in a process decides.
    """
    with _lock:
        if "set" not in _done:
            _done["set"] = trim_mb > 0 and _mallopt(trim_mb << 20)
        return _done["set"]


def _mallopt(trim: int) -> bool:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    # Blocks up to the mmap threshold come from the heap, so it must not pass the trim.
    mmap = min(MMAP_MAX, trim)
    return bool(mallopt(M_MMAP_THRESHOLD, mmap)) and bool(mallopt(M_TRIM_THRESHOLD, trim))
