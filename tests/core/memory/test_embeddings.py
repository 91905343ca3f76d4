"""Embedding providers: the local model and an OpenAI-compatible endpoint over real HTTP."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from config import Settings, load_settings
from core.devtools.scripted_llm import ScriptedLLM
from core.errors import ConfigError
from core.memory.embeddings import (
    SLICE_TEXTS,
    Embedder,
    LocalEmbedder,
    OpenAIEmbedder,
    get_embedder,
    token_slices,
)
from core.memory.local_model import load_local_model
from core.memory.onnx_model import MIN_COSINE, graph_path


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
    # One model per process: the same object for the same configuration, on ONNX
    # Runtime by default, from a graph exported once into AGENTRY_HOME/models.
    assert get_embedder(test_settings) is embedder
    assert embedder.runtime == "onnx"
    assert graph_path(test_settings.home_dir / "models").is_file()
    # The PyTorch model (fallback runtime) is loaded once too, whichever test asks first.
    first = load_local_model()
    before = load_local_model.cache_info().hits
    assert load_local_model() is first
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


MIXED = [("word " * (n % 17 + 1)).strip() + f" {n}" for n in range(SLICE_TEXTS * 2 + 5)] + [
    "x",
    # Longer than the model's 256-token window: truncated the same way by both runtimes.
    " ".join(f"sentence {i} of a long report about rivers and bridges" for i in range(60)),
]


@pytest.mark.parametrize("runtime", ["torch", "onnx"])
def test_local_embeddings_keep_input_order_whatever_the_lengths(
    runtime: str, test_settings: Settings
) -> None:
    embedder = LocalEmbedder(runtime=runtime, cache_dir=test_settings.home_dir / "models")
    assert embedder.runtime == runtime
    together = embedder.embed(MIXED)
    for i in (0, 1, SLICE_TEXTS, len(MIXED) - 2, len(MIXED) - 1):
        alone = embedder.embed([MIXED[i]])[0]
        assert float(together[i] @ alone) > 0.9999


def test_onnx_and_torch_make_the_same_vectors(test_settings: Settings) -> None:
    """Same model name on both runtimes is only honest if the vectors agree."""
    onnx = LocalEmbedder(runtime="onnx", cache_dir=test_settings.home_dir / "models")
    torch = LocalEmbedder(runtime="torch")
    cosines = np.sum(onnx.embed(MIXED) * torch.embed(MIXED), axis=1)
    assert float(cosines.min()) >= MIN_COSINE


def test_onnx_graph_is_reused_and_a_corrupt_one_is_exported_again(tmp_path: Path) -> None:
    cache = tmp_path / "models"
    first = LocalEmbedder(runtime="onnx", cache_dir=cache)
    graph = graph_path(cache)
    exported = graph.stat().st_mtime_ns
    again = LocalEmbedder(runtime="onnx", cache_dir=cache)
    assert graph.stat().st_mtime_ns == exported  # loaded, not exported again
    assert float(first.embed_query("rivers") @ again.embed_query("rivers")) > 0.9999
    assert [p.name for p in cache.iterdir()] == [graph.name]  # no temp files left behind

    graph.write_bytes(b"not a graph")
    repaired = LocalEmbedder(runtime="onnx", cache_dir=cache)
    assert repaired.runtime == "onnx"
    assert graph.stat().st_size > 1_000_000
    assert float(repaired.embed_query("rivers") @ first.embed_query("rivers")) > 0.9999


def test_onnx_failure_falls_back_to_torch_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import core.memory.onnx_model as onnx_model

    def broken(dest: Path) -> None:
        raise onnx_model.OnnxExportError("exporter exploded")

    monkeypatch.setattr(onnx_model, "export_graph", broken)
    embedder = LocalEmbedder(runtime="onnx", cache_dir=tmp_path / "models")
    assert embedder.runtime == "torch"
    assert "exporter exploded" in caplog.text and "using PyTorch" in caplog.text
    assert embedder.embed(["still works"]).shape == (1, 384)


def test_token_slices_group_by_length_under_the_budget() -> None:
    lengths = [5, 200, 6, 7, 120, 5, 9, 130, 8]
    slices = token_slices(lengths, budget=256, max_count=3)
    assert sorted(i for s in slices for i in s) == list(range(len(lengths)))
    for s in slices:
        assert len(s) <= 3
        widest = max(lengths[i] for i in s)
        assert len(s) == 1 or len(s) * widest <= 256
    # Shortest first; the two long ones cannot share a call.
    assert slices[0] == [0, 5, 2]
    assert [1] in slices and any(4 in s and 7 not in s for s in slices)
    assert token_slices([], budget=10, max_count=2) == []
    assert token_slices([50], budget=10, max_count=2) == [[0]]  # a long text still gets a call
