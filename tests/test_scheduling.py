"""The scheduler: order, priorities, the 90-second rule, cancellation, backoff.

Every test runs on looptime's fake event-loop clock, and the limiter reads the same clock, so
waits take no real time and admissions happen at exact loop instants.
"""

from __future__ import annotations

import asyncio
import itertools
import math

import pytest

from llmrelay.errors import LLMRelayError, WaitTooLong
from llmrelay.limits import Amounts, Limiter, Limits, MemoryBackend, Plan, Reservation, cost
from llmrelay.limits.plan import TPM
from llmrelay.scheduling import Scheduler, SchedulerPolicy

pytestmark = pytest.mark.looptime

REQUEST = cost(0, 0)

WAKE_SLACK = 0.001
"""The scheduler sleeps a hair past a slot (timers may fire early); admissions land within
this of the slot."""


def now() -> float:
    """The event loop's (fake) clock: what the scheduler and the limiter both read."""
    return asyncio.get_running_loop().time()


def loop_limiter(backend: MemoryBackend | None = None) -> Limiter:
    """A limiter on the event loop's clock, so limiter and scheduler share the fake time."""
    return Limiter(backend or MemoryBackend(clock=now))


async def queued(scheduler: Scheduler, n: int, key: str = "d") -> None:
    """Return once ``n`` callers wait on ``key`` (yields to the loop, never sleeps)."""
    # The scheduler offers no event for its queue length; sleep(0) yields one loop turn.
    while scheduler.queued(key) < n:  # noqa: ASYNC110 - a state wait, not a timed sleep
        await asyncio.sleep(0)


@pytest.fixture
async def scheduler() -> Scheduler:
    return Scheduler(loop_limiter(), SchedulerPolicy(max_wait_before_fallback=5.0))


async def test_waiters_are_admitted_in_order_at_their_slot(scheduler: Scheduler) -> None:
    """At 1200 RPM with no burst, five callers are admitted 50 ms apart, in arrival order."""
    plan = Limits(rpm=1200, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    admitted: list[tuple[int, float]] = []

    async def call(n: int) -> None:
        await scheduler.acquire("d", plan, REQUEST)
        admitted.append((n, now()))

    tasks = []
    for n in range(5):
        tasks.append(asyncio.create_task(call(n)))
        await queued(scheduler, n + 1)
    await asyncio.gather(*tasks)
    assert [n for n, _ in admitted] == [0, 1, 2, 3, 4]
    assert admitted[0][1] == pytest.approx(0.05, abs=WAKE_SLACK)
    gaps = [b - a for (_, a), (_, b) in itertools.pairwise(admitted)]
    assert gaps == pytest.approx([0.05] * 4, abs=WAKE_SLACK)
    await scheduler.aclose()


async def test_higher_priority_goes_first(scheduler: Scheduler) -> None:
    """Among queued callers, a higher priority is admitted before earlier arrivals."""
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    order: list[str] = []

    async def call(name: str, priority: int) -> None:
        await scheduler.acquire("d", plan, REQUEST, priority=priority)
        order.append(name)

    low = [asyncio.create_task(call(f"low{n}", 0)) for n in range(2)]
    await queued(scheduler, 2)
    high = asyncio.create_task(call("high", 5))
    await queued(scheduler, 3)
    await asyncio.gather(*low, high)
    assert order == ["high", "low0", "low1"]
    await scheduler.aclose()


async def _exhaust_sixty_rpm(scheduler: Scheduler, plan: Plan) -> None:
    """Take all 60 requests of a 60-RPM bucket at once; an answer confirms it refills now."""
    for _ in range(60):
        last = await scheduler.acquire("d", plan, REQUEST)
    await scheduler.release(last, sent=True)


async def test_projected_wait_beyond_the_bound_raises_at_once(scheduler: Scheduler) -> None:
    """The 90-second rule (here 5 s): a wait projected past the bound fails immediately."""
    plan = Limits(rpm=60, safety_margin=0, short_window_s=0).plan()
    await _exhaust_sixty_rpm(scheduler, plan)
    waiting = [asyncio.create_task(scheduler.acquire("d", plan, REQUEST)) for _ in range(4)]
    await queued(scheduler, 4)
    started = now()
    with pytest.raises(WaitTooLong) as caught:  # two more behind four, at 1/s: 6 s away
        await scheduler.acquire("d", plan, cost(0, 0, requests=2))
    assert now() == started
    assert caught.value.projected_wait == pytest.approx(6.0)
    assert caught.value.max_wait == 5.0
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    await scheduler.aclose()


async def test_a_higher_priority_projects_only_what_goes_before_it(
    scheduler: Scheduler,
) -> None:
    """Behind a long low-priority queue, an urgent caller still fits within its bound."""
    plan = Limits(rpm=60, safety_margin=0, short_window_s=0).plan()
    await _exhaust_sixty_rpm(scheduler, plan)
    waiting = [asyncio.create_task(scheduler.acquire("d", plan, REQUEST)) for _ in range(4)]
    await queued(scheduler, 4)
    with pytest.raises(WaitTooLong):  # two more requests: 6 s away, past the 5 s bound
        await scheduler.acquire("d", plan, cost(0, 0, requests=2))
    assert isinstance(await scheduler.acquire("d", plan, REQUEST, priority=1), Reservation)
    assert now() == pytest.approx(1.0, abs=WAKE_SLACK)  # the first request refilled
    assert scheduler.queued("d") == 4
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert scheduler.queued("d") == 0
    await scheduler.aclose()


async def test_without_fallback_the_longer_bound_applies() -> None:
    """can_fall_back=False waits up to max_wait_seconds instead of raising at 90 s."""
    policy = SchedulerPolicy(max_wait_before_fallback=0.01, max_wait_seconds=1.0)
    scheduler = Scheduler(loop_limiter(), policy)
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    with pytest.raises(WaitTooLong):
        await scheduler.acquire("d", plan, REQUEST)
    assert now() == 0.0
    assert isinstance(await scheduler.acquire("d", plan, REQUEST, can_fall_back=False), Reservation)
    assert now() == pytest.approx(0.1, abs=WAKE_SLACK)
    await scheduler.aclose()


async def test_deadline_bounds_the_wait(scheduler: Scheduler) -> None:
    """A caller's deadline (a loop-clock instant) is a tighter bound than the policy's."""
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    with pytest.raises(WaitTooLong) as caught:
        await scheduler.acquire("d", plan, REQUEST, deadline=now() + 0.01)
    assert caught.value.max_wait == pytest.approx(0.01)
    assert now() == 0.0
    assert isinstance(await scheduler.acquire("d", plan, REQUEST, deadline=now() + 1), Reservation)
    assert now() == pytest.approx(0.1, abs=WAKE_SLACK)
    await scheduler.aclose()


async def test_request_that_can_never_fit_raises(scheduler: Scheduler) -> None:
    """More tokens than the per-minute limit is refused at once, saying which limit."""
    plan = Limits(tpm=1_000, token_margin=0).plan()
    with pytest.raises(WaitTooLong, match="needs 1500 tokens/min but the limit is 1000") as caught:
        await scheduler.acquire("d", plan, cost(1_000, 500))
    assert math.isinf(caught.value.projected_wait)
    await scheduler.aclose()


async def test_cancelled_waiter_leaves_the_queue_and_frees_nothing_twice(
    scheduler: Scheduler,
) -> None:
    """A cancelled caller is removed; the token bucket ends exactly as if it never came."""
    plan = Limits(rpm=600, tpm=10_000, token_margin=0, min_spacing=True).plan()
    first = await scheduler.acquire("d", plan, cost(100, 100))
    waiting = asyncio.create_task(scheduler.acquire("d", plan, cost(100, 100)))
    await queued(scheduler, 1)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    assert scheduler.queued("d") == 0
    before = await scheduler.limiter.snapshot("d", plan)
    assert before.levels[TPM] == 9_800  # only the first caller's tokens are out
    await scheduler.release(first, sent=False)
    after = await scheduler.limiter.snapshot("d", plan)
    assert after.levels[TPM] == 10_000
    assert now() == 0.0  # no refill hides a double count
    await scheduler.aclose()


async def test_block_fails_queued_callers_whose_bound_it_breaks(scheduler: Scheduler) -> None:
    """A Retry-After longer than the bound fails everyone queued at once."""
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.acquire("d", plan, REQUEST)
    waiting = asyncio.create_task(scheduler.acquire("d", plan, REQUEST))
    await queued(scheduler, 1)
    started = now()
    await scheduler.penalize("d", plan, 30.0)
    with pytest.raises(WaitTooLong):
        await waiting
    assert now() == started
    await scheduler.aclose()


async def test_block_within_the_bound_delays_the_queue(scheduler: Scheduler) -> None:
    """A Retry-After shorter than the bound holds the queue until it has passed."""
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    waiting = asyncio.create_task(scheduler.acquire("d", plan, REQUEST))
    await queued(scheduler, 1)
    await scheduler.penalize("d", plan, 3.0)
    assert isinstance(await waiting, Reservation)
    assert now() == pytest.approx(3.0, abs=WAKE_SLACK)
    await scheduler.aclose()


def test_policy_rejects_nonsense() -> None:
    """Negative waits and zero limits are configuration errors."""
    with pytest.raises(ValueError, match="max_wait"):
        SchedulerPolicy(max_wait_seconds=-1)
    with pytest.raises(ValueError, match="rpm must be a positive integer"):
        Limits(rpm=0)


class GatedBackend(MemoryBackend):
    """Holds its ``gate_at``-th reserve call until the test opens the gate."""

    def __init__(self, gate_at: int) -> None:
        super().__init__(clock=now)
        self.calls, self.gate_at = 0, gate_at
        self.reached, self.gate = asyncio.Event(), asyncio.Event()

    async def reserve(self, key: str, plan: Plan, amounts: Amounts, ident: str) -> float:
        self.calls += 1
        if self.calls == self.gate_at:
            self.reached.set()
            await self.gate.wait()
        return await super().reserve(key, plan, amounts, ident)


async def test_an_earlier_ticket_arriving_mid_admission_is_not_lost() -> None:
    """A retry keeping its place (an earlier ticket) while the head is admitted still gets in."""
    # reserve calls: 1 first caller, 2 `late` (must wait), 3 the queue (wait), 4 the queue admits
    backend = GatedBackend(gate_at=4)
    scheduler = Scheduler(Limiter(backend))
    plan = Limits(rpm=600, min_spacing=True).plan()
    await scheduler.release(await scheduler.acquire("d", plan, REQUEST), sent=True)
    late = asyncio.create_task(scheduler.acquire("d", plan, REQUEST, ticket=1_000))
    await backend.reached.wait()
    early = asyncio.create_task(scheduler.acquire("d", plan, REQUEST, ticket=0))
    await queued(scheduler, 2)
    backend.gate.set()
    done = await asyncio.gather(late, early)
    assert all(isinstance(r, Reservation) for r in done)
    assert scheduler.queued("d") == 0
    await scheduler.aclose()


async def test_closing_fails_the_waiters_with_a_clear_error(scheduler: Scheduler) -> None:
    """Callers still queued when the scheduler closes get an error saying so, not a hang."""
    plan = Limits(rpm=60, min_spacing=True).plan()
    await scheduler.acquire("d", plan, REQUEST)
    waiting = asyncio.create_task(scheduler.acquire("d", plan, REQUEST))
    await queued(scheduler, 1)
    await scheduler.aclose()
    with pytest.raises(LLMRelayError, match="closed during the wait"):
        await waiting
