"""What the media parser did: names, cache hits, refinements, LLM calls, tokens, cost."""

from __future__ import annotations

from typing import Any

HISTOGRAM_EDGES = (0.5, 0.7, 0.8, 0.9, 0.95, 1.0)


class MediaMetrics:
    """Counters of one :class:`~llmrelay.media.service.MediaParser` (see :meth:`snapshot`)."""

    def __init__(self) -> None:
        self.names = 0
        self.rejected = 0
        self.cache_hits = 0
        self.parsed = 0
        self.refined = 0
        self.llm_calls = 0
        self.llm_failures = 0
        self.retried_alone = 0
        self.rejected_answers = 0
        self.input_tokens = 0
        self.output_tokens = 0
        self.cost_usd = 0.0
        self.llm_latency_s = 0.0
        self.parse_latency_s = 0.0
        self.confidence = [0] * len(HISTOGRAM_EDGES)
        """Names by final overall confidence: below 0.5, below 0.7, … up to 1.0."""

    def observe_confidence(self, confidence: float) -> None:
        for i, edge in enumerate(HISTOGRAM_EDGES):
            if confidence < edge or i == len(HISTOGRAM_EDGES) - 1:
                self.confidence[i] += 1
                return

    def snapshot(self) -> dict[str, Any]:
        """Every counter, and the histogram keyed by its upper edges."""
        out = {k: v for k, v in vars(self).items() if k != "confidence"}
        out["cost_usd"] = round(self.cost_usd, 8)
        out["confidence_histogram"] = {
            f"<{edge}" if edge < 1 else "<=1.0": count
            for edge, count in zip(HISTOGRAM_EDGES, self.confidence, strict=True)
        }
        return out


__all__ = ["HISTOGRAM_EDGES", "MediaMetrics"]
