"""The learned balancer: on a seeded history it mostly leads with the best, and still explores."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import AsyncIterator

import pytest

from analytics.history import KNOWN, WEEK_START, history, seed_store
from llmrelay import LLMBuilder
from llmrelay.analytics import Analytics, AnalyticsSettings, LearnedBalancer, LearnedSettings
from llmrelay.routing import Candidate

SONNET, FLASH = "anthropic/claude-sonnet-4-5", "gemini/gemini-2.5-flash"
NEW = "openai/gpt-4.1"
"""A deployment with no history yet."""


@pytest.fixture
async def candidates() -> AsyncIterator[list[Candidate]]:
    """The router's candidates for KNOWN's well-tried deployments and a new one (never
    called)."""
    builder = LLMBuilder()
    for profile in (*KNOWN[:4], None):
        provider, _, model = (profile.deployment if profile else NEW).partition("/")
        builder.with_primary(provider, model, api_key="sk-unused", base_url="http://127.0.0.1:9",
                             rpm=10_000, tpm=10_000_000)  # fmt: skip
    llm = builder.build()
    yield list(llm.router.group("default").primary)
    await llm.aclose()


@pytest.fixture
def analytics(sqlite_settings: AnalyticsSettings) -> AnalyticsSettings:
    with Analytics.open(sqlite_settings) as opened:
        seed_store(opened.store, history(KNOWN, requests=1500))
    return sqlite_settings


def leaders(balancer: LearnedBalancer, candidates: list[Candidate], n: int) -> Counter[str]:
    return Counter(balancer.order(candidates)[0].id for _ in range(n))


def test_quality_first_leads_with_the_best_and_explores_the_rest(
    analytics: AnalyticsSettings, candidates: list[Candidate]
) -> None:
    """Weighing quality alone, the best-scored reliable deployment leads most requests;
    every other one, and the one with no history, still leads some."""
    reader = Analytics.open(analytics)
    balancer = LearnedBalancer(
        reader,
        group="default",
        settings=LearnedSettings(quality=1, cost=0, speed=0, window_s=3650 * 86400.0),
        rng=random.Random(11),
        clock=lambda: WEEK_START,
    )
    balancer.refresh()
    arms = balancer.arms
    assert max((c.id for c in candidates if c.id in arms), key=lambda d: arms[d].utility) == SONNET
    assert arms["openai/gpt-4o"].utility < arms[SONNET].utility  # its errors cost it
    counts = leaders(balancer, candidates, 2000)
    assert counts[SONNET] > 1600
    assert set(counts) == {c.id for c in candidates}
    assert counts[NEW] > counts["openai/gpt-4o-mini"]  # unknown: tried more than the poor
    orders = [balancer.order(candidates) for _ in range(50)]
    assert all(sorted(c.id for c in o) == sorted(c.id for c in candidates) for o in orders)
    balancer.close()


@pytest.mark.parametrize(
    ("weights", "leader"),
    [({"cost": 1}, "openai/gpt-4o-mini"), ({"speed": 1}, "openai/gpt-4o")],
)
def test_cost_or_speed_alone_pick_their_leader(
    analytics: AnalyticsSettings,
    candidates: list[Candidate],
    weights: dict[str, float],
    leader: str,
) -> None:
    """Weighing cost alone the cheapest leads; speed alone, the fastest — its utility
    held down by its share of failed calls."""
    settings = LearnedSettings(quality=0, cost=weights.get("cost", 0),
                               speed=weights.get("speed", 0), explore=0.0,
                               window_s=3650 * 86400.0)  # fmt: skip
    balancer = LearnedBalancer(Analytics.open(analytics), settings=settings,
                               rng=random.Random(5))  # fmt: skip
    balancer.refresh()
    known = [c for c in candidates if c.id != NEW]
    assert leaders(balancer, known, 1000).most_common(1)[0][0] == leader
    stats = {s.deployment: s for s in balancer.analytics.stats(by=("deployment",))}
    error_rate = stats[leader].error_rate
    assert error_rate is not None
    assert balancer.arms[leader].utility == pytest.approx(1 - error_rate)
    balancer.close()


def test_the_figures_are_read_again_off_the_request_path(
    analytics: AnalyticsSettings, candidates: list[Candidate]
) -> None:
    """The first order starts a refresh on another thread; orders meanwhile use what is
    loaded; the next refresh waits ``refresh_s``."""
    now = [0.0]
    balancer = LearnedBalancer(
        Analytics.open(analytics),
        settings=LearnedSettings(refresh_s=60, window_s=3650 * 86400.0),
        clock=lambda: now[0],
    )
    assert balancer.arms == {}
    balancer.order(candidates)
    refreshing = balancer._refreshing
    assert refreshing is not None
    refreshing.join(timeout=30)
    assert SONNET in balancer.arms
    balancer.order(candidates)
    assert balancer._refreshing is refreshing  # not due yet
    now[0] = 61.0
    balancer.order(candidates)
    assert balancer._refreshing is not refreshing
    balancer.close()


def test_bad_settings_are_refused() -> None:
    for bad, message in (
        ({"quality": 0, "cost": 0, "speed": 0}, "weights"),
        ({"explore": 1.5}, "explore"),
        ({"memory": 0}, "memory"),
    ):
        with pytest.raises(ValueError, match=message):
            LearnedSettings(**bad)
