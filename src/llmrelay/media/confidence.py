"""Calibrated confidence: per field and overall, from the features of a parse.

One logistic model per field (and one for "title, season, episode and year all right"),
fitted on labelled names by :mod:`.calibrate` and shipped as ``data/calibration.json``.
A logistic model's output is a probability, so once fitted on held-in names its score is
read as "how often a parse like this one is right", which the reliability table in the
documentation checks on held-out names.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path

import msgspec

from llmrelay.errors import ConfigError
from llmrelay.media.features import FEATURES

CALIBRATION_FILE = Path(__file__).with_name("data") / "calibration.json"
OVERALL = "overall"
CALIBRATED_FIELDS = ("title", "season", "episode")
"""Fields with a model of their own: the labelled names hold enough wrong parses of each
to fit one (year and type are wrong too rarely there; they take the overall confidence)."""


class Calibration(msgspec.Struct, kw_only=True):
    """Fitted weights: per model, a bias then one weight per feature (in ``features``)."""

    parser_version: str
    features: list[str]
    models: dict[str, list[float]]
    l2: float = 1.0


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


class ConfidenceModel:
    """Scores a feature vector: a probability per core field and overall."""

    def __init__(self, calibration: Calibration) -> None:
        if calibration.features != list(FEATURES):
            raise ConfigError(
                f"{CALIBRATION_FILE.name}: fitted on features {calibration.features}, the code "
                f"computes {list(FEATURES)}; run python -m llmrelay.media.calibrate"
            )
        missing = [f for f in (*CALIBRATED_FIELDS, OVERALL) if f not in calibration.models]
        if missing:
            raise ConfigError(f"{CALIBRATION_FILE.name}: no model for {', '.join(missing)}")
        self.calibration = calibration
        self._models = {name: tuple(w) for name, w in calibration.models.items()}

    @classmethod
    def load(cls, path: Path = CALIBRATION_FILE) -> ConfidenceModel:
        """The shipped model (or another file written by :mod:`.calibrate`)."""
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the calibration: {exc.strerror}") from None
        try:
            return cls(msgspec.json.decode(data, type=Calibration))
        except msgspec.ValidationError as exc:
            raise ConfigError(f"{path}: not a calibration file: {exc}") from None

    def score(self, x: Sequence[float], model: str) -> float:
        """The probability ``model`` (a core field, or ``overall``) gives vector ``x``."""
        w = self._models[model]
        return _sigmoid(w[0] + sum(wi * xi for wi, xi in zip(w[1:], x, strict=True)))

    def scores(self, x: Sequence[float]) -> dict[str, float]:
        """Every model's probability for ``x``."""
        return {name: self.score(x, name) for name in self._models}


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a right parse outscores a wrong one (ties: ½)."""
    pairs = sorted(zip(scores, labels, strict=True))
    positives = sum(labels)
    negatives = len(labels) - positives
    if not positives or not negatives:
        raise ValueError("AUROC needs both right and wrong parses")
    rank_sum, i = 0.0, 0
    while i < len(pairs):
        j = i
        while j < len(pairs) and pairs[j][0] == pairs[i][0]:
            j += 1
        mid_rank = (i + j + 1) / 2  # ranks are 1-based; tied scores share the mean rank
        rank_sum += mid_rank * sum(1 for _, y in pairs[i:j] if y)
        i = j
    return (rank_sum - positives * (positives + 1) / 2) / (positives * negatives)


class Bucket(msgspec.Struct, frozen=True, kw_only=True):
    """One row of a reliability table."""

    low: float
    high: float
    count: int
    mean_confidence: float
    accuracy: float


RELIABILITY_EDGES = (0.0, 0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


def reliability(
    scores: Sequence[float], labels: Sequence[bool], edges: Sequence[float] = RELIABILITY_EDGES
) -> list[Bucket]:
    """Per confidence bucket, how many names fell in it and how many of those were right."""
    rows = []
    for low, high in itertools.pairwise(edges):
        inside = [
            (s, y)
            for s, y in zip(scores, labels, strict=True)
            if low <= s < high or (high == edges[-1] and s == high)
        ]
        if inside:
            mean = sum(s for s, _ in inside) / len(inside)
            accuracy = sum(y for _, y in inside) / len(inside)
            rows.append(
                Bucket(
                    low=low, high=high, count=len(inside), mean_confidence=mean, accuracy=accuracy
                )
            )
    return rows


__all__ = [
    "CALIBRATED_FIELDS",
    "CALIBRATION_FILE",
    "OVERALL",
    "Bucket",
    "Calibration",
    "ConfidenceModel",
    "auroc",
    "reliability",
]
