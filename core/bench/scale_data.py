"""The data of the scale benchmark: clustered synthetic vectors with real texts mixed in.

Real sentence embeddings of CISI abstracts and DailyDialog utterances (read in place
from AGENTRY_DATASETS_DIR, embedded with the configured model) are mixed in at seeded
positions, and a quarter of the queries are real CISI queries. Synthetic vectors
(core/memory/synthetic.py) give any size; by default they are clustered around the real
embeddings and shaped by their covariance, so the whole index looks like one model's
vectors and the real queries' neighbours are both real and synthetic rows. Ground truth
is numpy exact kNN over all rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from config import Settings
from core.bench.datasets import load_cisi, load_dialogues
from core.errors import AgentryError, ValidationFailed
from core.memory.embeddings import Vectors, get_embedder
from core.memory.synthetic import clustered_vectors, fitted_vectors

Progress = Callable[[str, int, int], None]
REAL_SHARE = 20  # one row in this many is a real text, up to REAL_MAX
REAL_MAX = 8000
REAL_QUERY_SHARE = 4  # one query in this many is a real CISI query
LAYOUTS = ("fitted", "independent")
FIT_MIN = 100  # fewer real texts than this cannot shape a covariance: independent layout


@dataclass
class ScaleData:
    vectors: Vectors  # (n, dims) float32, unit length
    real_rows: dict[int, str]  # row -> its text, for the rows that are real embeddings
    queries: Vectors
    query_kinds: list[str]  # "synthetic" or "cisi", per query
    owner: Any  # bool mask: the 1% of rows one user owns
    tagged: Any  # bool mask: the 0.1% of rows with metadata tag "rare"
    sources: dict[str, int]  # how many real rows came from each dataset
    layout: str = "fitted"  # how the synthetic rows were drawn (see scale_data)

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
    settings: Settings,
    n: int,
    queries: int,
    *,
    layout: str = "fitted",
    progress: Progress | None = None,
) -> ScaleData:
    """``n`` rows and ``queries`` query vectors (see the module docstring).

    ``layout``: ``fitted`` (default) draws the synthetic rows and queries around the real
    embeddings (:func:`fitted_vectors`), so the mixture looks like one model's index;
    ``independent`` keeps the earlier layout, clusters in a random subspace nearly
    orthogonal to the real texts (a stress case: the real rows form an island).
    """
    if layout not in LAYOUTS:
        raise ValidationFailed(f"--synthetic: one of {', '.join(LAYOUTS)} (got {layout!r})")
    dims = settings.embedding_dims
    real_n = min(n // REAL_SHARE, REAL_MAX)
    texts, cisi_queries, sources = _real_texts(settings, real_n)
    real_q = min(queries // REAL_QUERY_SHARE, len(cisi_queries)) if texts else 0
    embedded = np.zeros((0, dims), dtype=np.float32)
    asked = np.zeros((0, dims), dtype=np.float32)
    if texts:
        embedder = get_embedder(settings)
        parts: list[Any] = []
        step = 256
        for i in range(0, len(texts), step):
            parts.extend(embedder.embed(texts[i : i + step]))
            if progress:
                progress("embed real texts", min(i + step, len(texts)), len(texts))
        embedded = np.asarray(parts, dtype=np.float32)
        if real_q:
            asked = np.asarray(embedder.embed(cisi_queries[:real_q]), dtype=np.float32)
    if layout == "fitted" and len(embedded) >= FIT_MIN:
        vectors = fitted_vectors(n, embedded, seed=42)
        qvecs = fitted_vectors(queries - real_q, embedded, seed=7)
        kind = "fitted"
    else:
        vectors = clustered_vectors(n, dims, seed=42)
        qvecs = clustered_vectors(queries - real_q, dims, seed=7)
        kind = "independent"
    real_rows: dict[int, str] = {}
    if texts:
        rows = np.random.default_rng(5).choice(n, size=len(texts), replace=False)
        vectors[rows] = embedded
        real_rows = {int(r): t for r, t in zip(rows, texts, strict=True)}
    kinds = ["synthetic"] * (queries - real_q) + ["cisi"] * real_q
    index = np.arange(n)
    return ScaleData(
        vectors=vectors,
        real_rows=real_rows,
        queries=np.concatenate([qvecs, asked]) if real_q else qvecs,
        query_kinds=kinds,
        owner=index % 100 == 0,
        tagged=index % 1000 == 1,
        sources=sources,
        layout=kind,
    )


def top_ids(sims: Any, mask: Any, k: int) -> list[int]:
    """The ``k`` rows of highest similarity ``sims``, best first, within ``mask``."""
    if mask is not None:
        sims = np.where(mask, sims, -np.inf)
        k = min(k, int(np.sum(mask)))
    top = np.argpartition(-sims, k)[:k]
    return [int(i) for i in top[np.argsort(-sims[top])]]
