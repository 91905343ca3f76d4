"""The data of the scale benchmark: clustered synthetic vectors with real texts mixed in.

Synthetic vectors (core/memory/synthetic.py) give any size; real sentence embeddings of
CISI abstracts and DailyDialog utterances (read in place from AGENTRY_DATASETS_DIR,
embedded with the configured model) are mixed in at seeded positions, and a quarter
of the queries are real CISI queries, so the index is also measured on the
distribution it serves. Ground truth is numpy exact kNN over all rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from config import Settings
from core.bench.datasets import load_cisi, load_dialogues
from core.errors import AgentryError
from core.memory.embeddings import Vectors, get_embedder
from core.memory.synthetic import clustered_vectors

Progress = Callable[[str, int, int], None]
REAL_SHARE = 20  # one row in this many is a real text, up to REAL_MAX
REAL_MAX = 8000
REAL_QUERY_SHARE = 4  # one query in this many is a real CISI query


@dataclass
class ScaleData:
    vectors: Vectors  # (n, dims) float32, unit length
    real_rows: dict[int, str]  # row -> its text, for the rows that are real embeddings
    queries: Vectors
    query_kinds: list[str]  # "synthetic" or "cisi", per query
    owner: Any  # bool mask: the 1% of rows one user owns
    tagged: Any  # bool mask: the 0.1% of rows with metadata tag "rare"
    sources: dict[str, int]  # how many real rows came from each dataset

    def content(self, i: int) -> str:
        """Row ``i``'s content; the second word is its number (how results are matched)."""
        real = self.real_rows.get(i)
        return f"doc {i} {real}" if real is not None else f"doc {i}"


def _real_texts(settings: Settings, n: int) -> tuple[list[str], list[str], dict[str, int]]:
    """Up to ``n`` real texts (CISI first, then DailyDialog turns) and the CISI queries."""
    try:
        cisi = load_cisi(settings.datasets_dir / "cisi")
        docs, queries = list(cisi.docs.values()), list(cisi.queries.values())
    except AgentryError:
        docs, queries = [], []
    docs = docs[: n // 2]
    turns: list[str] = []
    try:
        for dialogue in load_dialogues(settings.datasets_dir, 100_000):
            turns += dialogue
            if len(docs) + len(turns) >= n:
                break
    except AgentryError:
        # No DailyDialog here: the rows stay synthetic and the report's counts say so.
        turns = []
    turns = turns[: n - len(docs)]
    return docs + turns, queries, {"cisi": len(docs), "dailydialog": len(turns)}


def scale_data(
    settings: Settings, n: int, queries: int, *, progress: Progress | None = None
) -> ScaleData:
    """``n`` rows and ``queries`` query vectors (see the module docstring)."""
    dims = settings.embedding_dims
    vectors = clustered_vectors(n, dims, seed=42)
    real_n = min(n // REAL_SHARE, REAL_MAX)
    texts, cisi_queries, sources = _real_texts(settings, real_n)
    real_q = min(queries // REAL_QUERY_SHARE, len(cisi_queries)) if texts else 0
    real_rows: dict[int, str] = {}
    qvecs = clustered_vectors(queries - real_q, dims, seed=7)
    kinds = ["synthetic"] * (queries - real_q)
    if texts:
        embedder = get_embedder(settings)
        embedded: list[Any] = []
        step = 256
        for i in range(0, len(texts), step):
            embedded.extend(embedder.embed(texts[i : i + step]))
            if progress:
                progress("embed real texts", min(i + step, len(texts)), len(texts))
        rows = np.random.default_rng(5).choice(n, size=len(texts), replace=False)
        vectors[rows] = np.asarray(embedded, dtype=np.float32)
        real_rows = {int(r): t for r, t in zip(rows, texts, strict=True)}
        if real_q:
            asked = np.asarray(embedder.embed(cisi_queries[:real_q]), dtype=np.float32)
            qvecs = np.concatenate([qvecs, asked])
            kinds += ["cisi"] * real_q
    index = np.arange(n)
    return ScaleData(
        vectors=vectors,
        real_rows=real_rows,
        queries=qvecs,
        query_kinds=kinds,
        owner=index % 100 == 0,
        tagged=index % 1000 == 1,
        sources=sources,
    )


def exact_ids(vectors: Vectors, query: Any, mask: Any, k: int) -> list[int]:
    """The true ``k`` nearest rows to ``query`` (cosine; unit vectors), within ``mask``."""
    sims = vectors @ query
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
        k = min(k, int(np.sum(mask)))
    top = np.argpartition(-sims, k)[:k]
    return [int(i) for i in top[np.argsort(-sims[top])]]
