"""Embedding providers: the local model and an OpenAI-compatible endpoint over real HTTP."""

from __future__ import annotations

import numpy as np
import pytest

from config import Settings, load_settings
from core.devtools.scripted_llm import ScriptedLLM
from core.errors import ConfigError
from core.memory.embeddings import Embedder, LocalEmbedder, OpenAIEmbedder, get_embedder
from core.memory.local_model import load_local_model


def test_local_model_is_384_dims_normalized_semantic_and_loaded_once(
    embedder: Embedder, test_settings: Settings
) -> None:
    assert isinstance(embedder, LocalEmbedder)
    assert (embedder.model, embedder.dims) == ("all-MiniLM-L6-v2", 384)
    vecs = embedder.embed(
        ["A cat sits on the mat.", "A kitten rests on a rug.", "Stock prices fell."]
    )
    assert vecs.shape == (3, 384) and vecs.dtype == np.float32
    assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
    assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2] + 0.2
    assert embedder.embed([]).shape == (0, 384)
    # One model per process: the same object for the same configuration.
    assert get_embedder(test_settings) is embedder
    before = load_local_model.cache_info().hits
    load_local_model()
    assert load_local_model.cache_info().hits == before + 1
    assert load_local_model.cache_info().currsize == 1


def test_openai_compatible_embeddings_over_http_in_batches() -> None:
    with ScriptedLLM(api_key="emb-key") as llm:
        settings = load_settings(
            AGENTRY_EMBEDDING_PROVIDER="openai",
            AGENTRY_EMBEDDING_BASE_URL=llm.base_url,
            AGENTRY_EMBEDDING_API_KEY="emb-key",
            AGENTRY_EMBEDDING_MODEL="text-embedding-3-small",
            AGENTRY_EMBEDDING_DIMS="1536",
            AGENTRY_EMBEDDING_BATCH_SIZE="2",
        )
        embedder = get_embedder(settings)
        assert isinstance(embedder, OpenAIEmbedder)
        vecs = embedder.embed(["red apples", "green apples", "a blue car"])
        assert vecs.shape == (3, 1536)
        assert np.allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)
        assert vecs[0] @ vecs[1] > vecs[0] @ vecs[2]
        calls = [r for r in llm.requests if r["_path"] == "/v1/embeddings"]
        # Batches of two, raw text (not token ids), the configured model and dimensions.
        assert [len(c["input"]) for c in calls] == [2, 1]
        assert calls[0]["input"] == ["red apples", "green apples"]
        assert {c["model"] for c in calls} == {"text-embedding-3-small"}
        assert {c["dimensions"] for c in calls} == {1536}
        assert embedder.embed_query("apples").shape == (1536,)

        wrong = load_settings(
            AGENTRY_EMBEDDING_PROVIDER="openai",
            AGENTRY_EMBEDDING_BASE_URL=llm.base_url,
            AGENTRY_EMBEDDING_API_KEY="emb-key",
            AGENTRY_EMBEDDING_MODEL="text-embedding-3-large",
            AGENTRY_EMBEDDING_DIMS="3072",
        )
        assert get_embedder(wrong).embed(["x"]).shape == (1, 3072)


def test_bad_embedding_configuration_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="AGENTRY_EMBEDDING_DIMS=1536"):
        get_embedder(load_settings(AGENTRY_EMBEDDING_DIMS="1536"))
    with pytest.raises(ConfigError, match="AGENTRY_EMBEDDING_BASE_URL"):
        get_embedder(load_settings(AGENTRY_EMBEDDING_PROVIDER="openai"))
    with pytest.raises(ConfigError, match="local provider ships"):
        get_embedder(load_settings(AGENTRY_EMBEDDING_MODEL="bge-small"))
    with pytest.raises(ConfigError, match="AGENTRY_CHUNK_OVERLAP"):
        load_settings(AGENTRY_CHUNK_SIZE="300", AGENTRY_CHUNK_OVERLAP="300")


def test_local_embeddings_keep_input_order_whatever_the_lengths() -> None:
    from core.memory.embeddings import LOCK_SLICE, LocalEmbedder

    embedder = LocalEmbedder()
    texts = [("word " * (n % 17 + 1)).strip() + f" {n}" for n in range(LOCK_SLICE * 2 + 5)]
    together = embedder.embed(texts)
    for i in (0, 1, LOCK_SLICE, len(texts) - 1):
        alone = embedder.embed([texts[i]])[0]
        assert float(together[i] @ alone) > 0.999
