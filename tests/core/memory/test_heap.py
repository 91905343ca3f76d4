"""Freed memory stays in the heap (core/memory/heap.py): a query's arrays, allocated and
freed query after query, fault no fresh pages in once the thresholds are fixed, and do
without. Each case runs in a process of its own: the first call in a process decides."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

QUERIES = """
import resource, sys
import numpy as np
from core.memory.heap import keep_freed_memory
kept = keep_freed_memory(int(sys.argv[1]))
def query():  # arrays the size of a hybrid keyword half's, at a million chunks
    arrays = [np.ones(n) for n in (45_000, 45_000, 90_000, 45_000, 22_000, 45_000)]
    return sum(len(a) for a in arrays)
query()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(50):
    query()
print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50)
"""


def _faults_per_query(keep_mb: int) -> tuple[bool, float]:
    out = subprocess.run(
        [sys.executable, "-c", QUERIES, str(keep_mb)], capture_output=True, text=True, check=True
    ).stdout.split()
    return out[0] == "True", float(out[1])


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc's mallopt"
)
def test_arrays_freed_query_after_query_reuse_their_pages() -> None:
    kept, faults = _faults_per_query(64)
    assert kept and faults < 5
    left, default = _faults_per_query(0)  # 0 leaves malloc alone
    assert not left and default > 100  # ~1.1 MB of arrays: ~280 pages a query


def test_keep_freed_memory_is_decided_once_per_process() -> None:
    script = "from core.memory.heap import keep_freed_memory as k; print(k(0), k(64))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
