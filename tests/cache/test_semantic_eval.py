"""The labelled pairs and the evaluation that chose the shipped threshold."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from llmrelay.cache.evaluate import TARGET_PRECISION, evaluate, load_pairs, split_of
from llmrelay.cache.semantic import DEFAULT_THRESHOLD


def test_the_pairs_are_many_varied_and_split_by_their_hash() -> None:
    """At least 300 pairs, a third of them hard negatives, no text repeated, each in the
    split its hash says, about half in each."""
    pairs = load_pairs()
    kinds = Counter(p.kind for p in pairs)
    assert len(pairs) >= 300
    assert kinds["hard_negative"] * 3 >= len(pairs)
    assert all(p.same == (p.kind == "paraphrase") for p in pairs)
    texts = [t.casefold() for p in pairs for t in (p.a, p.b)]
    assert len(texts) == len(set(texts))
    assert all(p.split == split_of(p.a, p.b) for p in pairs)
    dev = sum(p.split == "dev" for p in pairs)
    assert 0.4 < dev / len(pairs) < 0.6


@pytest.fixture(scope="module")
def results() -> dict[str, Any]:
    pytest.importorskip("sentence_transformers")
    from cache.semantic_support import minilm

    return evaluate(minilm())


def test_the_shipped_threshold_is_the_one_chosen_on_dev(results: dict[str, Any]) -> None:
    """data/semantic_threshold.json holds what the evaluation chooses today; rerun
    ``python -m llmrelay.cache.evaluate --write-threshold`` after changing the data or guard."""
    assert results["embedding+guard"]["dev"]["threshold"] == DEFAULT_THRESHOLD


def test_held_out_precision_at_the_shipped_threshold_reaches_the_target(
    results: dict[str, Any],
) -> None:
    """On the test split, at most 2% of the hits are wrong answers, and most paraphrases hit."""
    test = results["embedding+guard"]["test"]
    assert test["threshold"] == DEFAULT_THRESHOLD
    assert test["precision"] >= TARGET_PRECISION, test["false_hits"]
    assert test["hit_rate"] >= 0.75


def test_the_guard_is_what_makes_the_precision(results: dict[str, Any]) -> None:
    """Without the guard, the same threshold serves most hard negatives."""
    alone = results["embedding, same threshold"]["test"]
    assert alone["precision"] < 0.8
    assert alone["per_kind"]["hard_negative"]["hits"] > 0
