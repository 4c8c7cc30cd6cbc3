"""Calibration: the shipped model separates right from wrong parses on held-out names."""

from __future__ import annotations

import pytest

from llmrelay.media.analyze import Analyzer
from llmrelay.media.calibrate import fit, fit_logistic, judge, read_rows
from llmrelay.media.confidence import OVERALL, ConfidenceModel, auroc, reliability
from llmrelay.media.dataset import all_samples, build_names, shipped_samples, split_of
from llmrelay.media.features import features
from llmrelay.media.parse import PARSER_VERSION, check_name, to_result


def test_overall_confidence_has_auroc_of_at_least_0_9_on_held_out_names() -> None:
    """On the held-out split of the shipped data, confidence ranks right parses above wrong."""
    model, rows = ConfidenceModel.load(), read_rows()
    held = [r for r in rows if r.split == "test"]
    assert len(held) > 400 and sum(not r.right[OVERALL] for r in held) >= 10
    score = auroc([model.score(r.x, OVERALL) for r in held], [r.right[OVERALL] for r in held])
    assert score >= 0.9


def test_high_confidence_buckets_are_mostly_right() -> None:
    """Held-out names scored at 0.95 or more are right at least 95 % of the time."""
    model, rows = ConfidenceModel.load(), read_rows()
    held = [r for r in rows if r.split == "test"]
    top = reliability([model.score(r.x, OVERALL) for r in held], [r.right[OVERALL] for r in held])
    assert top[-1].low == 0.95 and top[-1].accuracy >= 0.95


def test_shipped_model_is_what_fitting_the_shipped_rows_gives() -> None:
    """The weights are reproducible: fitting the calibration split again gives them back."""
    shipped = ConfidenceModel.load().calibration
    again = fit(read_rows(), l2=shipped.l2)
    assert again.parser_version == shipped.parser_version == PARSER_VERSION
    for name, weights in shipped.models.items():
        assert again.models[name] == pytest.approx(weights, abs=1e-4)


def test_shipped_rows_match_what_the_parser_says_today(analyzer: Analyzer) -> None:
    """A sample of the recorded features and labels is recomputed and agrees (no stale data)."""
    samples = all_samples()[::37]
    rows = {r.name: r for r in read_rows()}
    for sample in samples:
        guess = analyzer.engine.guess(check_name(sample.name))
        row = rows[sample.name]
        assert row.split == split_of(sample.name)
        assert row.x == features(guess), sample.name
        assert row.right == judge(to_result(guess), sample), sample.name


def test_shipped_second_set_is_the_one_the_builder_makes() -> None:
    """``data/names.jsonl`` is exactly what ``build_names`` composes (truth by construction)."""
    assert shipped_samples() == build_names()


def test_auroc_counts_ties_as_half() -> None:
    """AUROC is the share of (right, wrong) pairs ordered correctly, ties counting ½."""
    assert auroc([0.9, 0.8, 0.3, 0.1], [True, True, False, False]) == 1.0
    assert auroc([0.5, 0.5], [True, False]) == 0.5
    assert auroc([0.2, 0.9, 0.4, 0.1], [True, False, False, False]) == pytest.approx(1 / 3)
    with pytest.raises(ValueError, match="both"):
        auroc([0.1, 0.2], [True, True])


def test_logistic_fit_learns_which_feature_predicts_failure() -> None:
    """Failures come (almost) only with the second feature: its weight is the large negative."""
    xs = [[0.0, 0.0]] * 40 + [[1.0, 0.0]] * 40 + [[0.0, 1.0]] * 20 + [[1.0, 1.0]] * 20
    ys = [True] * 80 + [False] * 36 + [True] * 4
    bias, first, second = fit_logistic(xs, ys)
    assert second < -3 and bias > 2 and abs(second) > 5 * abs(first)
