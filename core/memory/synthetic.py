"""Synthetic embeddings for scale tests and benchmarks (no model needed).

Real sentence embeddings are neither uniform on the sphere nor full-rank: they
cluster by topic and have a low intrinsic dimension (a few dozen for MiniLM-sized
models). Uniform random 384-d vectors are a pathological worst case for any ANN
index (all points almost equidistant), so we draw from a seeded model closer to
real data: a Gaussian mixture in a ``latent``-dimensional space, projected into
``dims`` dimensions by a fixed random matrix, plus a little full-rank noise, then
normalized. Benchmarks report these parameters next to their figures.
"""

from __future__ import annotations

import numpy as np

from core.memory.embeddings import Vectors

PROJECTION_SEED = 1234  # same space for documents and queries, whatever their seed


def clustered_vectors(
    n: int,
    dims: int = 384,
    *,
    seed: int = 0,
    latent: int = 32,
    clusters: int = 200,
    spread: float = 0.5,
    ambient_noise: float = 0.05,
) -> Vectors:
    """``n`` unit vectors (float32, shape (n, dims)) from the model described above."""
    space = np.random.default_rng(PROJECTION_SEED)
    projection = space.standard_normal((latent, dims)).astype(np.float32) / np.sqrt(latent)
    centres = space.standard_normal((clusters, latent)).astype(np.float32)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, clusters, n)
    points = centres[labels] + spread * rng.standard_normal((n, latent)).astype(np.float32)
    out = points @ projection
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    out += ambient_noise / np.sqrt(dims) * rng.standard_normal((n, dims)).astype(np.float32)
    out /= np.linalg.norm(out, axis=1, keepdims=True)
    return out.astype(np.float32)
