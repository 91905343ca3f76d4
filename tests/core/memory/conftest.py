"""Memory fixtures: the local model, loaded once per test session."""

from __future__ import annotations

import pytest

from config import Settings
from core.memory.embeddings import Embedder, get_embedder


@pytest.fixture(scope="session")
def embedder(test_settings: Settings) -> Embedder:
    return get_embedder(test_settings)
