"""Router scenarios against the simulator over real HTTP, through SmartLLM / LLMBuilder."""

from __future__ import annotations

import asyncio
import collections
import math
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import (
    AllModelsExhausted,
    AuthenticationFailed,
    BadRequest,
    ContextWindowExceeded,
    StreamInterrupted,
    UnknownModelGroup,
)
from llmrelay.routing import BreakerConfig, BreakerState, CircuitBreaker
from llmrelay.testing import SimulatorHandle
from llmrelay.types import ChatRequest, Message, StreamEnd, TextDelta

SIM = {"context_window": 16000, "max_output_tokens": 4096}


def openai(
    sim: SimulatorHandle, model: str = "sim-openai", key: str = "sk-a", **kw: Any
) -> dict[str, Any]:
    return {"base_url": sim.url + "/v1", "api_key": key, **SIM, **kw, "model": model}


def anthropic(sim: SimulatorHandle, key: str = "sk-b", **kw: Any) -> dict[str, Any]:
    return {"base_url": sim.url, "api_key": key, **SIM, **kw, "model": "sim-anthropic"}


def fast_builder(**scheduler: Any) -> LLMBuilder:
    return (
        LLMBuilder()
        .with_scheduler(max_wait_before_fallback=0.5, **scheduler)
        .with_retries(1, retry_backoff_s=0.01)
        .with_circuit_breaker(failure_threshold=3, cooldown_s=0.3)
    )


def build(builder: LLMBuilder, primary: dict[str, Any], *fallbacks: dict[str, Any]) -> SmartLLM:
    builder.with_primary("openai" if "/v1" in primary["base_url"] else "anthropic", **primary)
    for fb in fallbacks:
        builder.with_fallback("openai" if "/v1" in fb["base_url"] else "anthropic", **fb)
    return builder.build()


async def test_rate_limit_storm_is_answered_by_the_fallback(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Every call to the primary is a 429: the fallback answers and the caller sees no error."""
    simulator.set_faults("sim-openai", {"rate_limit": 1.0})
    llm = build(fast_builder(), openai(simulator), anthropic(simulator))
    closing.append(llm)
    for _ in range(3):
        response = await llm.ainvoke("hello")
        assert response.content == "Echo: hello"
        assert response.deployment == "anthropic/sim-anthropic"
        assert response.attempts[0].error in ("RateLimited", "WaitTooLong")
    stats = llm.get_stats()
    assert stats["fallback"] == 3 and stats["rate_limit_fallbacks"] == 3


async def test_long_prompt_goes_to_the_large_window_without_a_wasted_call(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A prompt beyond 90 % of the primary's window is sent only to the larger model."""
    simulator.configure({"models": [{"name": "sim-large", "api": "openai",
                                     "context_window": 200000, "max_output_tokens": 4096}]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_primary("openai", **openai(simulator))
        .with_context_fallback("openai", **openai(simulator, "sim-large", context_window=200000))
        .build()
    )
    closing.append(llm)
    response = await llm.ainvoke("word " * 20_000, max_tokens=10)
    assert response.deployment == "openai/sim-large"
    assert response.attempts[0].error == "ContextWindowExceeded"
    assert "not sent" in response.attempts[0].message
    assert simulator.usage("sk-a", "sim-openai")["requests"] == 0
    assert llm.get_stats()["context_fallbacks"] == 1


async def test_context_error_from_the_provider_routes_to_a_larger_window(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A window smaller than configured: the provider's 400 still moves on to a larger one."""
    simulator.configure({"models": [{"name": "sim-large", "api": "openai",
                                     "context_window": 200000, "max_output_tokens": 4096}]})  # fmt: skip
    simulator.set_model("sim-openai", context_window=2000)
    llm = build(
        LLMBuilder(), openai(simulator), openai(simulator, "sim-large", context_window=200000)
    )
    closing.append(llm)
    response = await llm.ainvoke("word " * 5_000, max_tokens=10)
    assert response.deployment == "openai/sim-large"
    assert response.attempts[0].error == "ContextWindowExceeded"
    assert response.attempts[0].status_code == 400


async def test_prompt_too_long_for_every_window_fails_before_sending(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """When no window can hold the request, ContextWindowExceeded comes without a call."""
    llm = build(LLMBuilder(), openai(simulator))
    closing.append(llm)
    with pytest.raises(ContextWindowExceeded, match="largest window"):
        await llm.ainvoke("word " * 20_000)
    assert simulator.usage("sk-a", "sim-openai")["requests"] == 0


async def test_breaker_opens_half_opens_and_recovers(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A provider down: the breaker opens, skips it, probes after the cool-down, closes."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    llm = build(fast_builder().with_retries(0), openai(simulator), anthropic(simulator))
    closing.append(llm)
    now = [0.0]
    primary = llm.router.group("default").primary[0]
    primary.breaker = CircuitBreaker(
        primary.id, BreakerConfig(failure_threshold=3, cooldown_s=30), clock=lambda: now[0]
    )
    for _ in range(3):
        assert (await llm.ainvoke("hi")).deployment == "anthropic/sim-anthropic"
    assert llm.breaker_states()["openai/sim-openai"] == "open"
    sent = simulator.ledger()["totals"]["refused"]["fault:500"]
    response = await llm.ainvoke("hi")
    assert response.attempts[0].error == "CircuitOpen"
    assert simulator.ledger()["totals"]["refused"]["fault:500"] == sent  # not sent while open
    simulator.set_faults("sim-openai", {})
    now[0] += 29.9
    assert llm.breaker_states()["openai/sim-openai"] == "open"
    now[0] += 0.1
    assert llm.breaker_states()["openai/sim-openai"] == "half_open"
    assert (await llm.ainvoke("hi")).deployment == "openai/sim-openai"
    assert llm.breaker_states()["openai/sim-openai"] == "closed"


def test_peek_reads_a_breaker_without_moving_it() -> None:
    """``peek`` (read from other threads) says half-open when due, but the move to it, and
    its event, happen only on the router's own read."""
    now, changes = [0.0], []
    breaker = CircuitBreaker(
        "d", BreakerConfig(failure_threshold=1, cooldown_s=30), clock=lambda: now[0],
        on_change=lambda _, old, new: changes.append((old.value, new.value)),
    )  # fmt: skip
    breaker.record_failure()
    now[0] = 30
    assert breaker.peek() is BreakerState.HALF_OPEN
    assert changes == [("closed", "open")]
    assert breaker.state is BreakerState.HALF_OPEN
    assert changes == [("closed", "open"), ("open", "half_open")]


async def test_transient_error_is_retried_on_the_same_deployment(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """One 503 then success: the same deployment answers on its retry."""
    simulator.configure({"seed": 1})
    simulator.set_faults("sim-openai", {"503": 0.5})
    llm = build(fast_builder().with_retries(3, retry_backoff_s=0.0), openai(simulator))
    closing.append(llm)
    responses = [await llm.ainvoke("hi") for _ in range(10)]
    assert all(r.deployment == "openai/sim-openai" for r in responses)
    assert any(len(r.attempts) > 1 for r in responses)


async def test_stream_cut_before_the_first_token_falls_over(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A connection dropped before any token: the fallback streams the answer instead."""
    simulator.set_faults("sim-openai", {"disconnect": 1.0})
    llm = build(fast_builder().with_retries(0), openai(simulator), anthropic(simulator))
    closing.append(llm)
    events = [e async for e in llm.astream("hello there")]
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Echo: hello there"
    end = events[-1]
    assert isinstance(end, StreamEnd) and end.usage is not None and end.usage.output_tokens > 0


async def test_stream_cut_after_the_first_token_raises(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """After a token reached the caller, a cut is StreamInterrupted — never a quiet end."""
    simulator.set_faults("sim-openai", {"stream_cut": 1.0})
    llm = build(fast_builder(), openai(simulator), anthropic(simulator))
    closing.append(llm)
    received: list[str] = []
    with pytest.raises(StreamInterrupted):
        async for event in llm.astream("one two three four five six seven eight"):
            if isinstance(event, TextDelta):
                received.append(event.text)
    assert received
    assert simulator.usage("sk-b", "sim-anthropic")["requests"] == 0


async def test_authentication_error_is_raised_at_once(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A bad key is the caller's problem: no fallback is tried."""
    llm = build(fast_builder(), openai(simulator, key="invalid-key"), anthropic(simulator))
    closing.append(llm)
    with pytest.raises(AuthenticationFailed):
        await llm.ainvoke("hi")
    assert simulator.usage("sk-b", "sim-anthropic")["requests"] == 0


async def test_all_down_raises_with_the_whole_trace(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Everything failing ends in AllModelsExhausted listing every attempt in order."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    simulator.set_faults("sim-anthropic", {"503": 1.0})
    llm = build(fast_builder(), openai(simulator), anthropic(simulator))
    closing.append(llm)
    with pytest.raises(AllModelsExhausted) as caught:
        await llm.ainvoke("hi")
    trace = [(a.deployment, a.error) for a in caught.value.attempts]
    assert trace == [
        ("openai/sim-openai", "ProviderUnavailable"),
        ("openai/sim-openai", "ProviderUnavailable"),
        ("anthropic/sim-anthropic", "ProviderUnavailable"),
        ("anthropic/sim-anthropic", "ProviderUnavailable"),
    ]
    assert "openai/sim-openai: ProviderUnavailable" in str(caught.value)
    assert llm.get_stats()["exhausted"] == 1


async def test_bad_input_fails_before_any_call(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Unknown group, empty messages, non-positive max_tokens: clear errors, nothing sent."""
    llm = build(LLMBuilder(), openai(simulator))
    closing.append(llm)
    with pytest.raises(
        UnknownModelGroup, match="unknown model group 'nope' \\(configured: default\\)"
    ):
        await llm.ainvoke("hi", model="nope")
    with pytest.raises(BadRequest, match="messages must not be empty"):
        await llm.ainvoke([])
    with pytest.raises(BadRequest, match="max_tokens must be a positive integer, got -5"):
        await llm.ainvoke("hi", max_tokens=-5)
    with pytest.raises(BadRequest, match="unknown request parameter"):
        await llm.ainvoke("hi", max_tokenz=5)
    assert simulator.ledger()["totals"]["requests"] == 0


async def test_cost_policy_prefers_the_cheapest(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """The cost policy sends to the cheapest deployment first, whatever the order given."""
    pricey = {"openai/sim-openai": {"price": {"input": 10.0, "output": 30.0}, **SIM}}
    cheap = {"anthropic/sim-anthropic": {"price": {"input": 0.1, "output": 0.4}, **SIM}}
    llm = (
        fast_builder()
        .with_policy("cost")
        .with_catalog({**pricey, **cheap})
        .with_primary("openai", **openai(simulator))
        .with_fallback("anthropic", **anthropic(simulator))
        .build()
    )
    closing.append(llm)
    response = await llm.ainvoke("hi")
    assert response.deployment == "anthropic/sim-anthropic"
    assert response.cost_micros == math.ceil(
        response.usage.input_tokens * 0.1 + response.usage.output_tokens * 0.4
    )


async def spread(llm: SmartLLM, calls: int, concurrency: int = 1) -> collections.Counter[str]:
    """``concurrency`` workers send ``calls`` requests in all, each as soon as its last ends."""
    counts: collections.Counter[str] = collections.Counter()
    left = calls

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            counts[(await llm.ainvoke("hi")).attempts[-1].deployment] += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return counts


def two_primaries(sim: SimulatorHandle, strategy: str, **second: Any) -> SmartLLM:
    return (
        LLMBuilder()
        .with_load_balancing(strategy)
        .with_primary("openai", name="a", **openai(sim, key="sk-1"))
        .with_primary("openai", name="b", **openai(sim, key="sk-2", **second))
        .build()
    )


async def test_round_robin_alternates(simulator: SimulatorHandle, closing: list[SmartLLM]) -> None:
    """Round-robin sends every other request to each deployment."""
    llm = two_primaries(simulator, "round-robin")
    closing.append(llm)
    assert await spread(llm, 40) == {"a": 20, "b": 20}


async def test_weighted_follows_the_weights(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Weights 3:1 give about three quarters of the traffic to the first."""
    llm = (
        LLMBuilder()
        .with_load_balancing("weighted")
        .with_primary("openai", name="a", weight=3, **openai(simulator, key="sk-1"))
        .with_primary("openai", name="b", weight=1, **openai(simulator, key="sk-2"))
        .build()
    )
    closing.append(llm)
    counts = await spread(llm, 400)
    assert 0.65 < counts["a"] / 400 < 0.85


async def test_least_loaded_balances_concurrent_calls(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """With one deployment slow, concurrent calls go mostly where fewer are in flight."""
    simulator.configure({"models": [{"name": "sim-slow", "api": "openai", "ttft_ms": 200,
                                     **SIM}]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_load_balancing("least_loaded")
        .with_primary("openai", name="fast", **openai(simulator, key="sk-1"))
        .with_primary("openai", name="slow", **openai(simulator, "sim-slow", key="sk-2"))
        .build()
    )
    closing.append(llm)
    counts = await spread(llm, 80, concurrency=4)
    assert counts["fast"] > 3 * counts["slow"]


async def test_latency_prefers_the_faster(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """After both are measured, the lower moving-average latency gets the traffic."""
    simulator.configure({"models": [{"name": "sim-slow", "api": "openai", "ttft_ms": 50,
                                     **SIM}]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_load_balancing("latency")
        .with_primary("openai", name="slow", **openai(simulator, "sim-slow", key="sk-2"))
        .with_primary("openai", name="fast", **openai(simulator, key="sk-1"))
        .build()
    )
    closing.append(llm)
    counts = await spread(llm, 30)
    assert counts["fast"] >= 27


async def test_headroom_prefers_more_remaining_limit(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """The deployment whose headers report more of its limit left is chosen."""
    simulator.configure({"models": [{"name": "sim-tight", "api": "openai", "rpm": 100, **SIM},
                                    {"name": "sim-roomy", "api": "openai", "rpm": 10000, **SIM}]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_load_balancing("headroom")
        .with_primary("openai", name="tight", **openai(simulator, "sim-tight", key="sk-1"))
        .with_primary("openai", name="roomy", **openai(simulator, "sim-roomy", key="sk-2"))
        .build()
    )
    closing.append(llm)
    counts = await spread(llm, 30)
    assert counts["roomy"] >= 25


def test_sync_api_runs_on_a_background_loop(simulator: SimulatorHandle) -> None:
    """invoke and stream work from plain synchronous code."""
    with build(LLMBuilder(), openai(simulator)) as llm:
        assert llm.invoke("hi").content == "Echo: hi"
        text = "".join(e.text for e in llm.stream("hey") if isinstance(e, TextDelta))
        assert text == "Echo: hey"
        assert llm.get_stats()["requests"] == 2


async def test_for_tier_uses_the_keys_in_the_environment(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """for_tier builds primary and fallbacks from the providers whose keys are set."""
    simulator.configure({"models": [{"name": "gpt-4o-mini", "api": "openai", **SIM},
                                    {"name": "claude-haiku-4-5", "api": "anthropic", **SIM}]})  # fmt: skip
    env = {
        "OPENAI_API_KEY": "sk-o",
        "OPENAI_BASE_URL": simulator.url + "/v1",
        "ANTHROPIC_API_KEY": "sk-c",
        "ANTHROPIC_BASE_URL": simulator.url,
    }
    llm = SmartLLM.for_tier("tier1", env=env)
    closing.append(llm)
    group = llm.router.group("default")
    assert [c.id for c in group.primary] == ["openai/gpt-4o-mini"]
    assert [c.id for c in group.fallbacks] == ["anthropic/claude-haiku-4-5", "openai/gpt-4.1-mini"]
    assert group.primary[0].scheduled.limits.rpm == 500
    assert (await llm.ainvoke("hi")).content == "Echo: hi"


async def test_hedging_answers_from_the_second_when_the_first_is_slow(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A slow primary: after the hedge delay the fallback is asked too and wins; the loser
    is cancelled and keeps its reservation (the provider may be generating)."""
    simulator.configure({"slow_s": 1.0})
    simulator.set_faults("sim-openai", {"slow": 1.0})
    llm = build(fast_builder().with_hedging(hedge_after_s=0.05, hedge_budget=1.0),
                openai(simulator, tpm=100_000), anthropic(simulator))  # fmt: skip
    closing.append(llm)
    response = await llm.ainvoke("hi")
    assert response.deployment == "anthropic/sim-anthropic"
    assert [(a.deployment, a.error) for a in response.attempts] == [
        ("openai/sim-openai", "Cancelled"),
        ("anthropic/sim-anthropic", None),
    ]
    primary = llm.router.group("default").primary[0]
    # The loser's cancellation finishes on the next turns of the loop; no event marks it.
    while primary.in_flight:  # noqa: ASYNC110 - the loop turns, no time passes
        await asyncio.sleep(0)
    scheduled = primary.scheduled
    snapshot = await scheduled.scheduler.limiter.snapshot(scheduled.key, scheduled.plan)
    request = ChatRequest(messages=[Message(role="user", content="hi")])
    _, reserved = scheduled.estimate(request, llm.router.quick_estimator.count_request(request))
    # No answer from it yet, so its bucket has not begun to refill: exactly the reservation.
    assert snapshot.levels[1] == pytest.approx(scheduled.plan.caps[1] - reserved[1])


async def test_hedging_respects_its_budget(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """With a 10 % budget, at most one request in ten is hedged."""
    simulator.configure({"slow_s": 0.2})
    simulator.set_faults("sim-openai", {"slow": 1.0})
    llm = build(fast_builder().with_hedging(hedge_after_s=0.01, hedge_budget=0.1), openai(simulator),
                anthropic(simulator))  # fmt: skip
    closing.append(llm)
    await asyncio.gather(*(llm.ainvoke("hi") for _ in range(20)))
    assert llm.router.hedged <= 2
    assert llm.router.routed == 20
