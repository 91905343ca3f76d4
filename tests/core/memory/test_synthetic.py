"""The scale benchmark's synthetic vectors: fitted around real embeddings, or independent."""

from __future__ import annotations

import numpy as np

from core.memory.synthetic import clustered_vectors, fitted_vectors


def _anchors(n: int = 400, dims: int = 64, seed: int = 3) -> np.ndarray:
    """Stand-ins for one model's embeddings: a narrow cone around a shared direction."""
    base = np.random.default_rng(0).standard_normal(dims)
    rng = np.random.default_rng(seed)
    out = base / np.linalg.norm(base) + 0.6 * rng.standard_normal((n, dims)) / np.sqrt(dims)
    return (out / np.linalg.norm(out, axis=1, keepdims=True)).astype(np.float32)


def test_fitted_vectors_sit_among_the_anchors_and_share_their_centres() -> None:
    anchors = _anchors()
    docs = fitted_vectors(5000, anchors, seed=1, clusters=50)
    queries = fitted_vectors(200, anchors, seed=2, clusters=50)
    assert docs.shape == (5000, 64) and docs.dtype == np.float32
    assert np.allclose(np.linalg.norm(docs, axis=1), 1.0, atol=1e-5)
    # Each row is near one of 50 centres chosen among the anchors ...
    nearest = (docs @ anchors.T).argmax(axis=1)
    centres = set(np.unique(nearest).tolist())
    assert len(centres) <= 60
    # ... the same centres whatever the seed, so queries and documents share clusters.
    assert set(np.unique((queries @ anchors.T).argmax(axis=1)).tolist()) <= centres
    # Deterministic per seed, different across seeds.
    assert np.array_equal(docs, fitted_vectors(5000, anchors, seed=1, clusters=50))
    assert not np.array_equal(docs[:10], fitted_vectors(10, anchors, seed=9, clusters=50))


def test_fitted_rows_are_as_close_to_real_queries_as_the_real_rows_are() -> None:
    anchors = _anchors()
    asked = _anchors(20, seed=8)  # other texts of the same model
    fitted = fitted_vectors(4000, anchors, seed=4)
    unrelated = clustered_vectors(4000, 64, seed=4)
    real_top = (asked @ anchors.T).max(axis=1).mean()
    # The old layout is nearly orthogonal to the model's vectors; the fitted one is not.
    assert (asked @ unrelated.T).max(axis=1).mean() < 0.5 * real_top
    assert (asked @ fitted.T).max(axis=1).mean() > 0.8 * real_top
