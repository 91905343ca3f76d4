"""The ONNX graph is built from the packaged weights without PyTorch, and matches it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from core.memory.local_model import load_local_model
from core.memory.onnx_model import PROBE_TEXTS, reference_vectors

ROOT = Path(__file__).resolve().parents[3]
TEXTS = ["Where is the nearest train station?", "Thanks!", "rivers and lakes " * 40]
# A process in which PyTorch and everything that pulls it in cannot be imported.
WITHOUT_TORCH = """
import json, sys
from pathlib import Path
for name in ("torch", "sentence_transformers", "transformers"):
    sys.modules[name] = None  # import raises ImportError
from core.memory.embeddings import LocalEmbedder
embedder = LocalEmbedder(runtime="onnx", cache_dir=Path(sys.argv[1]))
vectors = embedder.embed(json.loads(sys.argv[2]))
loaded = sorted(m for m in sys.modules if m.startswith("torch") and sys.modules[m])
print(json.dumps({"runtime": embedder.runtime, "vectors": vectors.tolist(), "torch": loaded}))
"""


def without_torch(cache: Path, texts: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", WITHOUT_TORCH, str(cache), json.dumps(texts)],
        env=dict(os.environ, PYTHONPATH=str(ROOT)),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def torch_vectors(texts: list[str]) -> np.ndarray:
    return np.asarray(
        load_local_model().encode(
            texts, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
        )
    )


def test_the_graph_is_built_and_used_without_torch(tmp_path: Path) -> None:
    proc = without_torch(tmp_path / "models", TEXTS)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["runtime"] == "onnx" and out["torch"] == []
    assert [p.suffix for p in (tmp_path / "models").iterdir()] == [".onnx"]
    cosines = np.sum(np.asarray(out["vectors"]) * torch_vectors(TEXTS), axis=1)
    assert cosines.min() >= 0.9999, cosines


def test_the_shipped_reference_is_what_pytorch_makes() -> None:
    cosines = np.sum(reference_vectors() * torch_vectors(PROBE_TEXTS), axis=1)
    assert cosines.min() >= 0.99999, cosines


def test_without_torch_a_failed_build_says_what_to_install(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("")  # the graph's folder cannot be made under a file, even by root
    proc = without_torch(blocker / "models", ["hi"])
    assert proc.returncode != 0
    assert "PyTorch, its fallback, is not installed (pip install 'agentry[torch]')" in proc.stderr
