"""Shared helpers of the semantic cache tests: the real model, loaded once per process, and a
small deterministic embedder for tests about plumbing rather than meaning."""

from __future__ import annotations

import functools
import hashlib
import re

import numpy as np
import numpy.typing as npt

from llmrelay.cache.embed import MiniLM


@functools.cache
def minilm() -> MiniLM:
    """The bundled model, loaded on first use and shared by every test of the session."""
    model = MiniLM()
    model.embed(["warm up"])
    return model


class BagOfWords:
    """Texts sharing words get close vectors: each word lands in a hashed dimension."""

    dim = 64

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        rows = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in zip(rows, texts, strict=True):
            for word in re.findall(r"\w+", text.lower()):
                row[hashlib.sha256(word.encode()).digest()[0] % self.dim] += 1.0
            norm = float(np.linalg.norm(row))
            if norm:
                row /= norm
        return rows


class BrokenEmbedder:
    """An embedder whose every call fails, as a model that cannot run would."""

    dim = 8

    def __init__(self) -> None:
        self.calls = 0

    def embed(self, texts: list[str]) -> npt.NDArray[np.float32]:
        self.calls += 1
        raise RuntimeError("no model here")
