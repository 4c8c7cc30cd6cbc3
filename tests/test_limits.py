"""The limiter: one behaviour, two backends (memory and a real Redis), checked on a fake clock."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from llmrelay.limits import Limiter, Limits, MemoryBackend, Reservation, cost
from llmrelay.limits.memory import UNCONFIRMED_GRACE_S
from llmrelay.limits.plan import TPM, Days, Plan
from llmrelay.limits.redis import RedisBackend
from llmrelay.simulator.state import Limiter as ProviderBucket
from llmrelay.simulator.state import Quota, Refusal
from llmrelay.types import RateLimitInfo, Usage
from services import redis_url, require_redis


class FakeClock:
    """Seconds that move only when a test moves them; both the monotonic and the wall clock.

    As a wall clock it starts 1,000 s after midnight UTC on 1 January 1970.
    """

    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def make_backend(kind: str, clock: FakeClock) -> MemoryBackend | RedisBackend:
    if kind == "memory":
        return MemoryBackend(clock=clock, wall=clock)
    require_redis()
    prefix = f"llmrelay-test:{uuid.uuid4().hex}:"
    return RedisBackend(redis_url(), prefix=prefix, clock=clock, wall=clock)


@pytest.fixture(params=["memory", "redis"])
async def limiter(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Limiter, FakeClock]]:
    clock = FakeClock()
    backend = make_backend(request.param, clock)
    yield Limiter(backend), clock
    await backend.aclose()


async def test_rpm_bucket_with_margin(limiter: tuple[Limiter, FakeClock]) -> None:
    """RPM 12 with margin 2 admits 10 at once, then one every 5 s."""
    lim, clock = limiter
    plan = Limits(rpm=12, short_window_s=0).plan()
    for _ in range(9):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    res = await lim.reserve("d", plan, cost(0, 0))
    assert isinstance(res, Reservation)
    await lim.reconcile(res, Usage())  # the provider answered: refill runs from now
    wait = await lim.reserve("d", plan, cost(0, 0))
    assert wait == pytest.approx(5.0)
    clock.now += 5.0
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)


async def test_min_spacing(limiter: tuple[Limiter, FakeClock]) -> None:
    """min_spacing sends no burst: one request per 60/RPM seconds."""
    lim, clock = limiter
    plan = Limits(rpm=60, min_spacing=True, short_window_s=0).plan()
    res = await lim.reserve("d", plan, cost(0, 0))
    assert isinstance(res, Reservation)
    await lim.reconcile(res, Usage())
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.0)
    clock.now += 1.0
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)


async def test_no_refill_before_the_first_answer(limiter: tuple[Limiter, FakeClock]) -> None:
    """Until the provider answers, refill waits out the grace period: it may not have seen us."""
    lim, clock = limiter
    plan = Limits(rpm=60, safety_margin=0, short_window_s=0).plan()
    for _ in range(60):
        res = await lim.reserve("d", plan, cost(0, 0))
        assert isinstance(res, Reservation)
    clock.now += UNCONFIRMED_GRACE_S
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.0)
    clock.now += 1.0
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)


async def test_reconcile_gives_back_unused_tokens(limiter: tuple[Limiter, FakeClock]) -> None:
    """A reservation of input + max_tokens shrinks to the real usage."""
    lim, _ = limiter
    plan = Limits(tpm=1_000, token_margin=0, short_window_s=0).plan()
    res = await lim.reserve("d", plan, cost(100, 500))
    assert isinstance(res, Reservation)
    assert (await lim.snapshot("d", plan)).levels[TPM] == pytest.approx(400)
    await lim.reconcile(res, Usage(input_tokens=100, output_tokens=20))
    assert (await lim.snapshot("d", plan)).levels[TPM] == pytest.approx(880)
    await lim.reconcile(res, Usage(input_tokens=100, output_tokens=20))  # settled once only
    assert (await lim.snapshot("d", plan)).levels[TPM] == pytest.approx(880)


async def test_usage_above_the_estimate_is_taken(limiter: tuple[Limiter, FakeClock]) -> None:
    """An under-estimate is charged in full when the real usage arrives."""
    lim, _ = limiter
    plan = Limits(tpm=1_000, token_margin=0, short_window_s=0).plan()
    res = await lim.reserve("d", plan, cost(100, 100))
    assert isinstance(res, Reservation)
    await lim.reconcile(res, Usage(input_tokens=300, output_tokens=200))
    assert (await lim.snapshot("d", plan)).levels[TPM] == pytest.approx(500)


async def test_release_returns_tokens_and_unsent_requests(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """A failed call gives its tokens back; the request only if it never reached the provider."""
    lim, _ = limiter
    plan = Limits(rpm=12, tpm=1_000, token_margin=0, short_window_s=0).plan()
    sent = await lim.reserve("d", plan, cost(100, 100))
    unsent = await lim.reserve("d", plan, cost(100, 100))
    assert isinstance(sent, Reservation) and isinstance(unsent, Reservation)
    await lim.release(sent, sent=True)
    await lim.release(unsent, sent=False)
    snapshot = await lim.snapshot("d", plan)
    assert snapshot.levels[TPM] == pytest.approx(1_000)
    assert snapshot.levels[0] == pytest.approx(10 - 1)


async def test_headers_lower_the_limit_at_once(limiter: tuple[Limiter, FakeClock]) -> None:
    """A reported limit below the configured one, and its remaining count, apply immediately."""
    lim, _ = limiter
    plan = Limits(rpm=600, tpm=100_000, token_margin=0, short_window_s=0).plan()
    await lim.observe(
        "d",
        plan,
        RateLimitInfo(
            requests_limit=60, requests_remaining=5, tokens_limit=6_000, tokens_remaining=900
        ),
    )
    snapshot = await lim.snapshot("d", plan)
    assert snapshot.caps[0] == 58 and snapshot.rates[0] == pytest.approx(1.0)
    assert snapshot.levels[0] == pytest.approx(3)
    assert snapshot.caps[TPM] == 6_000 and snapshot.levels[TPM] == pytest.approx(900)
    assert await lim.reserve("d", plan, cost(1_000, 0)) == pytest.approx(1.0)


async def test_token_margin_holds_back_a_share_of_the_limit(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """1 % of a token limit is kept in hand, for configured and reported limits alike."""
    lim, _ = limiter
    plan = Limits(tpm=10_000, short_window_s=0).plan()
    assert (await lim.snapshot("d", plan)).caps[TPM] == 9_900
    await lim.observe("d", plan, RateLimitInfo(tokens_limit=20_000, tokens_remaining=5_000))
    snapshot = await lim.snapshot("d", plan)
    assert snapshot.caps[TPM] == 19_800
    assert snapshot.levels[TPM] == pytest.approx(4_800)


async def test_min_spacing_survives_learned_limits(limiter: tuple[Limiter, FakeClock]) -> None:
    """With min_spacing, a reported limit changes the spacing, never allows a burst."""
    lim, _ = limiter
    plan = Limits(rpm=60, min_spacing=True, short_window_s=0).plan()
    await lim.observe("d", plan, RateLimitInfo(requests_limit=120, requests_remaining=100))
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(0.5)


async def test_headers_teach_limits_to_an_unconfigured_deployment(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """A deployment with no configured limits starts limiting once headers report some."""
    lim, _ = limiter
    plan = Limits(short_window_s=0).plan()
    info = RateLimitInfo(requests_limit=120, requests_remaining=3)  # margin 2: one left
    await lim.observe("d", plan, info)
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(0.5)


async def test_block_holds_everything_until_retry_after(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """After a 429's Retry-After, nothing is admitted until it has passed."""
    lim, clock = limiter
    plan = Limits(rpm=600, short_window_s=0).plan()
    await lim.block("d", plan, 7.5)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(7.5)
    clock.now += 7.5
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)


async def test_request_larger_than_a_limit_never_fits(limiter: tuple[Limiter, FakeClock]) -> None:
    """Needing more tokens than the per-minute limit is reported as an infinite wait."""
    lim, _ = limiter
    plan = Limits(tpm=1_000, token_margin=0, short_window_s=0).plan()
    wait = await lim.reserve("d", plan, cost(900, 200))
    assert not isinstance(wait, Reservation) and math.isinf(wait)
    snapshot = await lim.snapshot("d", plan)
    assert snapshot.exceeded(cost(900, 200)) == "it needs 1100 tokens/min but the limit is 1000"


async def test_requests_per_day_reset_at_midnight(limiter: tuple[Limiter, FakeClock]) -> None:
    """RPD is a daily counter: exhausted, the wait is the time left in the day."""
    lim, clock = limiter
    plan = Limits(rpd=3, safety_margin=0, short_window_s=0).plan()
    for _ in range(3):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(86_400 - 1_000)
    clock.now += 86_400 - 1_000  # midnight UTC
    for _ in range(3):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(86_400)


async def test_deployments_are_independent(limiter: tuple[Limiter, FakeClock]) -> None:
    """Limits are kept per deployment key."""
    lim, _ = limiter
    plan = Limits(rpm=3, safety_margin=0, short_window_s=0).plan()
    for key in ("a", "b"):
        for _ in range(3):
            assert isinstance(await lim.reserve(key, plan, cost(0, 0)), Reservation)
    assert await lim.reserve("a", plan, cost(0, 0)) == pytest.approx(20.0)


# -- the short window -------------------------------------------------------------------


def short(**limits: Any) -> Plan:
    """A plan paced to a 1-s window, no margins or pad unless given."""
    return Limits(**{"safety_margin": 0, "token_margin": 0, "window_pad": 0, **limits}).plan()


async def test_short_window_admits_a_seconds_share_and_slides(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """RPM 600 over a 1-s window: 10 at once, then nothing until the first of them leaves."""
    lim, clock = limiter
    plan = short(rpm=600)
    for _ in range(10):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.0)
    clock.now += 0.5  # a bucket would have refilled 5 by now; the window has not moved
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(0.5)
    clock.now += 0.5
    for _ in range(10):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.0)


async def test_window_pad_holds_entries_longer(limiter: tuple[Limiter, FakeClock]) -> None:
    """Entries are held the pad's share of the window longer than the provider holds them."""
    lim, _ = limiter
    plan = short(rpm=60, window_pad=0.015)
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.015)


async def test_below_one_request_per_window_spaces_requests(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """RPM 50 allows 0.83 requests a second: one request every 1.2 s."""
    lim, clock = limiter
    plan = short(rpm=50)
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.2)
    clock.now += 1.2
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)


async def test_a_large_request_occupies_the_window_proportionally(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """TPM 60,000 allows 1,000 tokens a second: 4,000 tokens go alone and hold it for 4 s."""
    lim, clock = limiter
    plan = short(tpm=60_000)
    assert isinstance(await lim.reserve("d", plan, cost(3_000, 1_000)), Reservation)
    assert await lim.reserve("d", plan, cost(1, 0)) == pytest.approx(4.0)
    clock.now += 4.0
    assert isinstance(await lim.reserve("d", plan, cost(1, 0)), Reservation)


async def test_reconciled_usage_shortens_the_occupancy(limiter: tuple[Limiter, FakeClock]) -> None:
    """Unused max_tokens given back leave the window: 4,000 reserved, 200 used → 1 s."""
    lim, _ = limiter
    plan = short(tpm=60_000)
    res = await lim.reserve("d", plan, cost(100, 3_900))
    assert isinstance(res, Reservation)
    await lim.reconcile(res, Usage(input_tokens=100, output_tokens=100))
    assert isinstance(await lim.reserve("d", plan, cost(700, 100)), Reservation)
    assert await lim.reserve("d", plan, cost(100, 100)) == pytest.approx(1.0)


async def test_unsent_requests_leave_the_window_sent_ones_stay(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """A request that never reached the provider frees its place; a failed one keeps it."""
    lim, _ = limiter
    plan = short(rpm=120)
    unsent = await lim.reserve("d", plan, cost(0, 0))
    assert isinstance(unsent, Reservation)
    await lim.release(unsent, sent=False)
    sent = await lim.reserve("d", plan, cost(0, 0))
    assert isinstance(sent, Reservation)
    await lim.release(sent, sent=True)
    assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.0)


async def test_tighten_learns_a_stricter_window(limiter: tuple[Limiter, FakeClock]) -> None:
    """Minute-only pacing learns the 1-s window first; then each entry is held longer (the
    pad doubles, up to a quarter of the window)."""
    lim, _ = limiter
    plan = short(rpm=600, short_window_s=0, window_pad=0.03)
    for _ in range(20):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.tighten("d", plan) == pytest.approx(1.03)
    assert (await lim.snapshot("d", plan)).window == pytest.approx(1.03)
    assert await lim.tighten("d", plan) == pytest.approx(1.06)
    for _ in range(4):
        await lim.tighten("d", plan)
    assert (await lim.snapshot("d", plan)).window == pytest.approx(1.25)
    for _ in range(10):
        assert isinstance(await lim.reserve("d", plan, cost(0, 0)), Reservation)
    assert await lim.reserve("d", plan, cost(0, 0)) == pytest.approx(1.25)


# -- properties -------------------------------------------------------------------------

steps = st.lists(
    st.tuples(
        st.floats(min_value=0, max_value=3),  # seconds until the next request
        st.integers(min_value=1, max_value=400),  # its input tokens
        st.integers(min_value=1, max_value=400),  # its max_tokens
        st.integers(min_value=0, max_value=400),  # output it really produced
    ),
    min_size=1,
    max_size=60,
)


def run(kind: str, scenario: Callable[[Limiter, FakeClock], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clock = FakeClock()
        backend = make_backend(kind, clock)
        try:
            return await scenario(Limiter(backend), clock)
        finally:
            await backend.aclose()

    return asyncio.run(main())


Admitted = list[tuple[float, float, float]]
"""Admissions in order: (time, requests, tokens really used)."""


def assert_minute_holds(admitted: Admitted, rpm: int, tpm: int) -> None:
    """From any admission on, what follows fits one minute's allowance plus the refill since."""
    for dim, limit in ((1, rpm), (2, tpm)):
        rate = limit / 60
        for i, first in enumerate(admitted):
            total = 0.0
            for later in admitted[i:]:
                total += later[dim]
                assert total <= limit + rate * (later[0] - first[0]) + 1e-6


def assert_short_window_holds(admitted: Admitted, rpm: int, tpm: int) -> None:
    """Any 1-s interval holding two admissions or more holds at most limit/60 units of each
    dimension; a request larger than that is admitted only alone."""
    for dim, limit in ((1, rpm), (2, tpm)):
        capacity = limit / 60
        for i, first in enumerate(admitted):
            total = first[dim]
            for later in admitted[i + 1 :]:
                if later[0] - first[0] >= 1.0 - 1e-9:
                    break
                total += later[dim]
                assert total <= capacity + 1e-6, (first, later, total)


@pytest.mark.parametrize("window", [0.0, 1.0])
@pytest.mark.parametrize("kind", ["memory", "redis"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_never_admits_what_the_provider_would_refuse(
    kind: str, window: float, steps: list[Any]
) -> None:
    """Every admission fits the simulator's own limits; every minute and every 1-s window
    holds no more than the limits allow."""
    rpm, tpm = 120, 20_000
    limits = Limits(rpm=rpm, tpm=tpm, safety_margin=0, token_margin=0, window_pad=0.0,
                    short_window_s=window)  # fmt: skip
    plan = limits.plan()
    quota = Quota(rpm=rpm, tpm=tpm, window_s=window)
    admitted: Admitted = []

    async def scenario(lim: Limiter, clock: FakeClock) -> None:
        provider = ProviderBucket(clock=clock, wall=clock)
        for delay, prompt, max_tokens, output in steps:
            clock.now += delay
            res = await lim.reserve("d", plan, cost(prompt, max_tokens))
            if not isinstance(res, Reservation):
                continue
            admission = provider.admit("k", "m", quota, prompt, max_tokens)
            assert not isinstance(admission, Refusal), f"the provider would refuse: {admission}"
            used = min(output, max_tokens)
            provider.give_back(admission, 0, max_tokens - used)
            await lim.reconcile(res, Usage(input_tokens=prompt, output_tokens=used))
            admitted.append((clock.now, 1.0, float(prompt + used)))

    run(kind, scenario)
    assert_minute_holds(admitted, rpm, tpm)
    if window:
        assert_short_window_holds(admitted, rpm, tpm)


operations = st.lists(
    st.tuples(
        st.integers(min_value=1, max_value=300),  # input tokens reserved
        st.integers(min_value=1, max_value=300),  # max_tokens reserved
        st.sampled_from(["reconcile", "release-sent", "release-unsent"]),
        st.integers(min_value=0, max_value=300),  # output really produced
    ),
    min_size=1,
    max_size=40,
)


@pytest.mark.parametrize("kind", ["memory", "redis"])
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations)
def test_reserve_reconcile_release_never_leak(kind: str, ops: list[Any]) -> None:
    """After every reservation is settled, exactly the real usage is gone — no more, no less."""
    plan = Limits(
        rpm=1_000, tpm=1_000_000, safety_margin=0, token_margin=0, short_window_s=0
    ).plan()

    async def scenario(lim: Limiter, clock: FakeClock) -> tuple[float, float, float, float]:
        spent_tokens = spent_requests = 0.0
        held: list[tuple[Reservation, str, int, int]] = []
        for prompt, max_tokens, outcome, output in ops:
            res = await lim.reserve("d", plan, cost(prompt, max_tokens))
            assert isinstance(res, Reservation)
            held.append((res, outcome, prompt, min(output, max_tokens)))
        for res, outcome, prompt, output in reversed(held):
            if outcome == "reconcile":
                await lim.reconcile(res, Usage(input_tokens=prompt, output_tokens=output))
                spent_tokens += prompt + output
                spent_requests += 1
            else:
                await lim.release(res, sent=outcome == "release-sent")
                spent_requests += outcome == "release-sent"
        snapshot = await lim.snapshot("d", plan)
        return snapshot.levels[TPM], spent_tokens, snapshot.levels[0], spent_requests

    tokens_left, spent_tokens, requests_left, spent_requests = run(kind, scenario)
    assert tokens_left == pytest.approx(1_000_000 - spent_tokens)
    assert requests_left == pytest.approx(1_000 - spent_requests)


async def test_reconcile_adopts_the_answers_headers_in_the_same_step(
    limiter: tuple[Limiter, FakeClock],
) -> None:
    """Usage and header feedback settle together: the reported limit and remaining count
    apply as if observed (on Redis in the same script, with no fallback to local state)."""
    lim, _ = limiter
    plan = Limits(rpm=600, tpm=100_000, token_margin=0, short_window_s=0).plan()
    reservation = await lim.reserve("d", plan, cost(100, 100))
    assert isinstance(reservation, Reservation)
    info = RateLimitInfo(
        requests_limit=60, requests_remaining=5, tokens_limit=6_000, tokens_remaining=900
    )
    await lim.reconcile(reservation, Usage(input_tokens=100, output_tokens=20), info)
    snapshot = await lim.snapshot("d", plan)
    assert snapshot.caps[0] == 58 and snapshot.levels[0] == pytest.approx(3)
    assert snapshot.caps[TPM] == 6_000 and snapshot.levels[TPM] == pytest.approx(900)
    backend = lim.backend
    if isinstance(backend, RedisBackend):
        assert backend.metrics.fallback_decisions == 0


def test_days_are_worked_out_once_a_day_and_again_when_the_clock_goes_back() -> None:
    """The cached day answers exactly as Plan.day does, across midnights and backwards."""
    plan = Limits(rpd=10, day_reset_tz="America/Los_Angeles").plan()
    days = Days()
    start = 1_700_000_000.0
    for wall in [start, start + 10, start + 86_000, start + 90_000, start - 5, start + 3 * 86_400]:
        assert days(plan, wall) == pytest.approx(plan.day(wall))
