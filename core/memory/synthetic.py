"""Synthetic embeddings for scale tests and benchmarks (no model needed).

Real sentence embeddings are clustered by topic, not uniform on the sphere;
uniform random 384-d vectors are a pathological worst case for any ANN index
(every point is almost equidistant). We draw from a seeded Gaussian mixture:
``clusters`` random centres, points at ``spread`` around them, normalized.
"""

from __future__ import annotations

import numpy as np

from core.memory.embeddings import Vectors


def clustered_vectors(
    n: int, dims: int = 384, *, seed: int = 0, clusters: int = 1000, spread: float = 0.6
) -> Vectors:
    """``n`` unit vectors from a seeded Gaussian mixture (float32, shape (n, dims))."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dims)).astype(np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    labels = rng.integers(0, clusters, n)
    noise = rng.standard_normal((n, dims)).astype(np.float32) * (spread / np.sqrt(dims))
    out = centres[labels] + noise
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)
