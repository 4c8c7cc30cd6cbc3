"""best_model_for: on a history whose answers are known, each objective picks its deployment."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from analytics.history import KNOWN, history, seed_store
from llmrelay.analytics import Analytics, AnalyticsSettings, choose

MINI, FLASH, SONNET = "openai/gpt-4o-mini", "gemini/gemini-2.5-flash", "anthropic/claude-sonnet-4-5"


@pytest.fixture
def analytics(settings: AnalyticsSettings) -> Iterator[Analytics]:
    """The KNOWN history (two tasks), a tenth of its scores given as feedback."""
    with Analytics.open(settings) as opened:
        seed_store(opened.store, history(KNOWN, requests=1500, tasks=("summarize", "extract")),
                   feedback_every=10)  # fmt: skip
        yield opened


def test_each_objective_picks_the_deployment_known_to_be_best(analytics: Analytics) -> None:
    """Cost: the cheapest; speed: the fastest; quality: the best scored — among those with
    enough answers and few enough errors."""
    picks = {
        objective: analytics.best_model_for("summarize", objective)
        for objective in ("cost", "speed", "quality")
    }
    assert {k: c.deployment for k, c in picks.items() if c} == {
        "cost": MINI, "speed": FLASH, "quality": SONNET,
    }  # fmt: skip
    cost = picks["cost"]
    assert cost is not None and cost.task == "summarize" and cost.optimize_for == "cost"
    assert cost.why.startswith(f"{MINI}: lowest mean cost, $0.000")
    assert cost.figures.deployment == MINI and cost.figures.answered >= 10
    assert cost.ranking == (MINI, FLASH, SONNET)
    assert "error rate" in cost.rejected["openai/gpt-4o"]
    assert "min_calls=10" in cost.rejected["ollama/llama3"]
    speed = picks["speed"]
    assert speed is not None and speed.ranking == (FLASH, MINI, SONNET)
    quality = picks["quality"]
    assert quality is not None and quality.ranking == (SONNET, FLASH, MINI)
    assert quality.why.startswith(f"{SONNET}: highest mean quality, 0.9")


def test_min_quality_leaves_out_the_cheap_and_poor(analytics: Analytics) -> None:
    """The cheapest deployment good enough wins; none good enough is ``None``."""
    good = analytics.best_model_for("summarize", "cost", min_quality=0.75)
    better = analytics.best_model_for("summarize", "cost", min_quality=0.9)
    assert good is not None and better is not None
    assert (good.deployment, better.deployment) == (FLASH, SONNET)
    assert "below min_quality=0.75" in good.rejected[MINI]
    speed = analytics.best_model_for("summarize", "speed", min_quality=0.9)
    assert speed is not None and speed.ranking == (SONNET,)
    p50 = speed.figures.latency_p50_s
    assert p50 is not None
    assert (
        speed.why
        == f"{SONNET}: lowest median answer time, {p50 * 1000:.0f} ms (the only one qualifying)"
    )
    assert analytics.best_model_for("summarize", "quality", min_quality=0.995) is None


def test_thresholds_decide_who_qualifies(analytics: Analytics) -> None:
    """A looser error bound lets the fast, unreliable gpt-4o win on speed; a task with no
    requests has no best deployment."""
    loose = analytics.best_model_for("extract", "speed", max_error_rate=0.5)
    assert loose is not None and loose.deployment == "openai/gpt-4o"
    assert analytics.best_model_for("translate", "cost") is None
    everything = analytics.best_model_for(None, "cost", min_calls=1)
    assert everything is not None and everything.deployment == "ollama/llama3"


def test_a_bad_objective_or_quality_is_refused() -> None:
    with pytest.raises(ValueError, match="optimize_for"):
        choose([], "price")  # type: ignore[arg-type]  # wrong on purpose
    with pytest.raises(ValueError, match="min_quality"):
        choose([], "cost", min_quality=2)
