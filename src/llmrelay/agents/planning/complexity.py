"""Adaptive complexity routing: a prompt's score picks the cheap, balanced or strong group.

The score (0..1) grows with the number of clauses, the words, and words that ask for
reasoning (conditions, comparisons, loops); short one-step prompts go to the cheap group.
"""

from __future__ import annotations

import re

from llmrelay.agents.config import Level
from llmrelay.agents.planning.pattern import clauses

_REASONING = re.compile(
    r"\b(if|unless|otherwise|compare|each|every|for all|depending|whichever|best|plan|"
    r"analy[sz]e|summari[sz]e|explain|why)\b",
    re.I,
)


def complexity(prompt: str) -> float:
    """A score in 0..1: more clauses, words and reasoning words score higher."""
    steps = len(clauses(prompt))
    words = len(prompt.split())
    reasoning = len(_REASONING.findall(prompt))
    score = 0.12 * max(steps - 1, 0) + words / 250 + 0.15 * reasoning
    return round(min(score, 1.0), 3)


def level(score: float, *, balanced_from: float, strong_from: float) -> Level:
    """``cheap``, ``balanced`` or ``strong`` for ``score``."""
    if score >= strong_from:
        return "strong"
    return "balanced" if score >= balanced_from else "cheap"


__all__ = ["complexity", "level"]
