"""Send every call at the earliest moment its deployment will accept it.

A :class:`Scheduler` keeps one queue per deployment, ordered by priority and then arrival.
The head of each queue asks the limiter for its units; when they are not there yet, the
queue sleeps until the moment they will be (a timer, not a polling loop) or until
something changes — a new arrival, a cancellation, capacity given back. Waiters are woken
in order.

Before anyone joins a queue the wait is projected from the limiter's state and what is
queued ahead. If it would exceed ``max_wait_before_fallback`` (default 90 s), the caller
gets :class:`~llmrelay.errors.WaitTooLong` at once, so a router can fall back instead of
waiting — the 90-second rule; with nowhere to fall back, ``max_wait_seconds`` (default
300 s) bounds the wait. The same check runs again for everyone queued whenever the wait
grows (a 429's Retry-After blocks the deployment). A cancelled caller leaves the queue, and
whatever it had reserved is released.

:class:`ScheduledProvider` wraps one provider with a scheduler: it estimates the tokens of
each request, reserves them, sends once, and reconciles with the reported usage and the
response's rate-limit headers. It never retries — the router alone decides that. A 429 or
529 with Retry-After blocks the deployment for that long, so whoever comes next waits; an
upstream 429 with a short Retry-After means the provider enforces something stricter than
the buckets predicted, so the deployment is paced to a stricter short window from then on
(announced as a ``limit_learned`` event).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import heapq
import itertools
import logging
import math
from collections.abc import AsyncIterator, Coroutine
from dataclasses import dataclass, field

import msgspec

from llmrelay.catalog import Catalog
from llmrelay.errors import (
    LLMRelayError,
    Overloaded,
    ProviderError,
    RateLimited,
    StreamInterrupted,
    Timeout,
    WaitTooLong,
)
from llmrelay.events import Event, EventBus, EventKind
from llmrelay.limits import Amounts, Limiter, Limits, Plan, Reservation, cost
from llmrelay.limits.plan import ZERO, add
from llmrelay.providers.base import Provider
from llmrelay.tokens import Calibration, Estimator, TiktokenEstimator
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    RateLimitInfo,
    StreamEnd,
    StreamEvent,
    StreamStart,
    Usage,
)

log = logging.getLogger("llmrelay.scheduling")

_EARLY_WAKE_SLACK = 0.0005
"""Timers may fire a little early; sleeping this much longer avoids a second wake-up."""


_SHORT_RETRY_AFTER_S = 2.0
"""A 429 asking for at most this wait is a short window's refusal, and teaches a stricter
one; a longer Retry-After says the minute's allowance is gone (another client of the same
key): the deployment is blocked for it, and the pacing is left as it is."""


_RELEARN_AFTER_S = 1.0
"""After a lesson, 429s for this long are the old pacing's, already learned from."""


class SchedulerPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How long a caller may wait for capacity (seconds)."""

    max_wait_before_fallback: float = 90.0
    """A caller with somewhere else to go gets :class:`WaitTooLong` rather than wait longer."""
    max_wait_seconds: float = 300.0
    """The bound when there is nowhere else to go."""

    def __post_init__(self) -> None:
        if self.max_wait_before_fallback < 0 or self.max_wait_seconds < 0:
            raise ValueError("max_wait_before_fallback and max_wait_seconds must be >= 0")


@dataclass(eq=False, slots=True)
class _Waiter:
    order: tuple[int, int]
    amounts: Amounts
    give_up_at: float
    bound: float
    future: asyncio.Future[Reservation]

    def __lt__(self, other: _Waiter) -> bool:
        return self.order < other.order


@dataclass(eq=False, slots=True)
class _Lane:
    key: str
    plan: Plan
    heap: list[_Waiter] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    pump: asyncio.Task[None] | None = None
    waiting: int = 0
    queued: dict[int, Amounts] = field(default_factory=dict)
    """Units still waiting, per priority: what a newcomer of that priority queues behind."""

    def join(self, waiter: _Waiter) -> None:
        priority = -waiter.order[0]
        self.queued[priority] = add(self.queued.get(priority, ZERO), waiter.amounts)
        self.waiting += 1
        waiter.future.add_done_callback(lambda _: self._leave(priority, waiter.amounts))
        heapq.heappush(self.heap, waiter)

    def _leave(self, priority: int, amounts: Amounts) -> None:
        self.queued[priority] = add(self.queued[priority], _negated(amounts))
        self.waiting -= 1

    def ahead_of(self, priority: int) -> Amounts:
        ahead = ZERO
        for level, amounts in self.queued.items():
            if level >= priority:
                ahead = add(ahead, amounts)
        return ahead

    def live(self) -> list[_Waiter]:
        """Waiters still waiting, in the order they will be admitted."""
        return sorted(w for w in self.heap if not w.future.done())


class Scheduler:
    """Fair, priority-ordered queues per deployment over one :class:`Limiter`."""

    def __init__(
        self,
        limiter: Limiter | None = None,
        policy: SchedulerPolicy | None = None,
        *,
        events: EventBus | None = None,
    ) -> None:
        self.limiter = limiter or Limiter()
        self.policy = policy or SchedulerPolicy()
        self.events = events or EventBus()
        self._lanes: dict[str, _Lane] = {}
        self._seq = itertools.count()
        self._background: set[asyncio.Task[None]] = set()
        self._learned_at: dict[str, float] = {}

    def next_ticket(self) -> int:
        """An arrival number; a retried request passes its first one to keep its place."""
        return next(self._seq)

    def queued(self, key: str) -> int:
        """How many callers wait for deployment ``key``."""
        lane = self._lanes.get(key)
        return lane.waiting if lane else 0

    async def acquire(
        self,
        key: str,
        plan: Plan,
        amounts: Amounts,
        *,
        priority: int = 0,
        deadline: float | None = None,
        can_fall_back: bool = True,
        max_wait: float | None = None,
        ticket: int | None = None,
    ) -> Reservation:
        """Wait for ``amounts`` on deployment ``key`` and return their reservation.

        Higher ``priority`` goes first; ``deadline`` is an instant of the event loop's clock
        (``asyncio.get_running_loop().time()``, which is ``time.monotonic()`` on asyncio's
        and uvloop's loops); ``max_wait`` is a caller's own, tighter bound in seconds.
        Raises :class:`WaitTooLong` at once when the projected wait exceeds the bound.
        """
        bound = self.policy.max_wait_before_fallback if can_fall_back else math.inf
        bound = min(bound, self.policy.max_wait_seconds)
        if max_wait is not None:
            bound = min(bound, max_wait)
        if deadline is not None:
            bound = min(bound, max(0.0, deadline - asyncio.get_running_loop().time()))
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane(key, plan)
        lane.plan = plan
        if not lane.waiting:
            got = await self.limiter.reserve(key, plan, amounts)
            if isinstance(got, Reservation):
                return got
        snapshot = await self.limiter.snapshot(key, plan)
        projected = snapshot.wait_for(amounts, lane.ahead_of(priority))
        if projected > bound:
            raise await self._too_long(lane, amounts, projected, bound)
        loop = asyncio.get_running_loop()
        order = (-priority, self.next_ticket() if ticket is None else ticket)
        waiter = _Waiter(order, amounts, loop.time() + bound, bound, loop.create_future())
        lane.join(waiter)
        lane.wake.set()
        if lane.pump is None or lane.pump.done():
            lane.pump = asyncio.create_task(self._pump(lane), name=f"llmrelay-scheduler:{key}")
        try:
            return await waiter.future
        except asyncio.CancelledError:
            lane.wake.set()
            granted = waiter.future.done() and not waiter.future.cancelled()
            if granted and waiter.future.exception() is None:
                self._spawn(self.limiter.release(waiter.future.result(), sent=False))
            raise

    async def _too_long(
        self, lane: _Lane, amounts: Amounts, projected: float, bound: float
    ) -> WaitTooLong:
        if math.isinf(projected):
            snapshot = await self.limiter.snapshot(lane.key, lane.plan)
            reason = snapshot.exceeded(amounts) or "a limit is zero"
            message = f"request can never be admitted: {reason}"
        else:
            message = f"projected wait {projected:.1f}s exceeds the {bound:.1f}s allowed"
        return WaitTooLong(message, projected_wait=projected, max_wait=bound, deployment=lane.key)

    async def _pump(self, lane: _Lane) -> None:
        """Admit the head of the queue as soon as the limiter allows, in order."""
        try:
            await self._admit_in_order(lane)
        except Exception as exc:  # a broken backend must fail the queue, not strand it
            log.exception("scheduler queue for %s failed", lane.key)
            for waiter in lane.heap:
                if not waiter.future.done():
                    waiter.future.set_exception(exc)
            lane.heap.clear()

    async def _admit_in_order(self, lane: _Lane) -> None:
        loop = asyncio.get_running_loop()
        while lane.heap:
            head = lane.heap[0]
            if head.future.done():
                heapq.heappop(lane.heap)
                continue
            got = await self.limiter.reserve(lane.key, lane.plan, head.amounts)
            if isinstance(got, Reservation):
                _remove(lane.heap, head)  # an earlier ticket may have arrived meanwhile
                if head.future.done():  # cancelled while the limiter was being asked
                    await self.limiter.release(got, sent=False)
                else:
                    got.queued = True
                    head.future.set_result(got)
                continue
            await self._expire(lane, loop.time())
            if lane.heap and lane.heap[0] is head and not head.future.done():
                lane.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), got + _EARLY_WAKE_SLACK)

    async def _expire(self, lane: _Lane, now: float) -> None:
        """Fail, at once, every waiter whose projected wait now exceeds its bound."""
        snapshot = await self.limiter.snapshot(lane.key, lane.plan)
        ahead = ZERO
        for waiter in lane.live():
            projected = snapshot.wait_for(waiter.amounts, ahead)
            if projected > waiter.give_up_at - now:
                error = await self._too_long(lane, waiter.amounts, projected, waiter.bound)
                waiter.future.set_exception(error)
            else:
                ahead = add(ahead, waiter.amounts)

    async def projected_wait(self, key: str, plan: Plan, amounts: Amounts) -> float:
        """Seconds ``amounts`` would wait on ``key`` now, behind everyone queued."""
        lane = self._lanes.get(key)
        ahead = lane.ahead_of(0) if lane is not None and lane.waiting else None
        return (await self.limiter.snapshot(key, plan)).wait_for(amounts, ahead)

    async def learn(self, key: str, plan: Plan, deployment: str) -> None:
        """A 429 the buckets did not predict: pace ``key`` to a stricter short window.

        The requests already in flight were admitted under the old pacing and may be
        refused for the same reason; their 429s, within a window of the last lesson, teach
        nothing new.
        """
        now = asyncio.get_running_loop().time()
        if now - self._learned_at.get(key, -math.inf) < _RELEARN_AFTER_S:
            return
        self._learned_at[key] = now
        held = await self.limiter.tighten(key, plan)
        message = f"an unpredicted 429: each request now holds a short window for {held:.3g} s"
        log.warning("%s: %s", deployment, message)
        self.events.emit(Event(kind=EventKind.LIMIT_LEARNED, deployment=deployment,
                               message=message))  # fmt: skip

    async def penalize(self, key: str, plan: Plan, seconds: float) -> None:
        """Admit nothing on ``key`` for ``seconds``; queued callers re-check their bound."""
        await self.limiter.block(key, plan, seconds)
        lane = self._lanes.get(key)
        if lane is not None:
            await self._expire(lane, asyncio.get_running_loop().time())
            lane.wake.set()

    async def reconcile(
        self, reservation: Reservation, usage: Usage, info: RateLimitInfo | None = None
    ) -> None:
        await self.limiter.reconcile(reservation, usage, info)
        self._poke(reservation.key)

    async def release(self, reservation: Reservation, *, sent: bool) -> None:
        await self.limiter.release(reservation, sent=sent)
        self._poke(reservation.key)

    def _poke(self, key: str) -> None:
        lane = self._lanes.get(key)
        if lane is not None and lane.heap:
            lane.wake.set()

    def _spawn(self, work: Coroutine[None, None, None]) -> None:
        task = asyncio.create_task(work)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def aclose(self) -> None:
        """Fail everyone still queued, stop the pumps, finish pending releases."""
        for lane in self._lanes.values():
            for waiter in lane.heap:
                if not waiter.future.done():
                    waiter.future.set_exception(
                        LLMRelayError(f"the scheduler of {lane.key} was closed during the wait")
                    )
            if lane.pump is not None:
                lane.pump.cancel()
        pumps = [lane.pump for lane in self._lanes.values() if lane.pump is not None]
        await asyncio.gather(*pumps, *self._background, return_exceptions=True)
        self._lanes.clear()


def _keep(reservation: Reservation) -> None:
    """Settle ``reservation`` at its estimate (no-op if it is settled already)."""
    reservation.settled = True


def _negated(a: Amounts) -> Amounts:
    return (-a[0], -a[1], -a[2], -a[3], -a[4])


def _remove(heap: list[_Waiter], waiter: _Waiter) -> None:
    if heap[0] is waiter:
        heapq.heappop(heap)
    else:
        heap.remove(waiter)
        heapq.heapify(heap)


def deployment_key(provider: Provider) -> str:
    """provider + model + a digest of base URL and API key: what limits are counted per.

    The key itself never leaves the process (Redis sees only the digest).
    """
    deployment = provider.deployment
    secret = getattr(provider, "api_key", None) or deployment.api_key or ""
    account = f"{deployment.base_url or ''}|{secret}"
    return f"{provider.name}:{deployment.model}:{hashlib.sha256(account.encode()).hexdigest()[:16]}"


class ScheduledProvider:
    """A provider that never sends what its deployment's limits would refuse.

    ``output_reservation`` is reserved for the answer when a request sets no
    ``max_tokens``; the difference is given back when the real usage is known.
    """

    def __init__(
        self,
        provider: Provider,
        limits: Limits,
        *,
        scheduler: Scheduler | None = None,
        estimator: Estimator | None = None,
        output_reservation: int = 1024,
    ) -> None:
        self.provider = provider
        self.limits = limits
        self.plan = limits.plan()
        self.scheduler = scheduler or Scheduler()
        self.estimator = estimator or TiktokenEstimator()
        self.output_reservation = output_reservation
        self.calibration = Calibration()
        self.key = deployment_key(provider)
        self._counts_tokens = any(self.plan.caps[1:4])
        self._owns_scheduler = scheduler is None

    @classmethod
    def for_tier(
        cls,
        provider: Provider,
        tier: str,
        *,
        catalog: Catalog | None = None,
        scheduler: Scheduler | None = None,
    ) -> ScheduledProvider:
        """Scheduled with the catalog's limits for the provider's model at ``tier``."""
        catalog = catalog or Catalog.default()
        limits = catalog.limits(provider.name, provider.deployment.model, tier)
        return cls(provider, limits, scheduler=scheduler)

    @property
    def deployment(self) -> str:
        return self.provider.deployment.id

    def estimate(
        self, request: ChatRequest, input_tokens: int | None = None
    ) -> tuple[int, Amounts]:
        """Estimated input tokens, and the units a request reserves.

        ``input_tokens`` (the caller's own, quicker count) is used only where no token limit
        binds: under a token limit a few percent too few fill a short window past what the
        provider accepts, so the request is counted exactly.
        """
        if input_tokens is None or self._counts_tokens:
            raw = self.estimator.count_request(request)
        else:
            raw = input_tokens
        output = request.max_tokens or self.output_reservation
        return raw, cost(self.calibration.adjust(self.key, raw), output)

    async def send(
        self,
        request: ChatRequest,
        *,
        priority: int = 0,
        deadline: float | None = None,
        can_fall_back: bool = True,
        max_wait: float | None = None,
        input_tokens: int | None = None,
    ) -> ChatResponse:
        """Wait for capacity, send once, settle the reservation."""
        raw, amounts = self.estimate(request, input_tokens)
        reservation = await self._acquire(amounts, priority, deadline, can_fall_back, max_wait)
        try:
            await self.scheduler.limiter.sent(reservation)
            response = await self.provider.send(request)
        except ProviderError as exc:
            await self._failed(reservation, exc)
            raise
        except BaseException:
            _keep(reservation)
            raise
        await self._succeeded(reservation, response.rate_limits, response.usage, raw)
        return response

    async def stream(
        self,
        request: ChatRequest,
        *,
        priority: int = 0,
        deadline: float | None = None,
        can_fall_back: bool = True,
        max_wait: float | None = None,
        input_tokens: int | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Wait for capacity, stream once, settle the reservation when the stream ends."""
        raw, amounts = self.estimate(request, input_tokens)
        reservation = await self._acquire(amounts, priority, deadline, can_fall_back, max_wait)
        info: RateLimitInfo | None = None
        try:
            await self.scheduler.limiter.sent(reservation)
            async for event in self.provider.stream(request):
                if isinstance(event, StreamStart):
                    info = event.rate_limits  # adopted with the usage, in one step
                elif isinstance(event, StreamEnd):
                    usage = event.usage or Usage(
                        input_tokens=int(amounts[2]), output_tokens=int(amounts[3])
                    )
                    await self._succeeded(reservation, info, usage, raw)
                yield event
        except ProviderError as exc:
            await self._failed(reservation, exc)
            raise
        finally:
            # Cancelled, or the caller stopped reading: what the provider generated is
            # unknown, so the reservation stays spent at its estimate rather than risk
            # counting too little.
            _keep(reservation)

    async def _acquire(
        self,
        amounts: Amounts,
        priority: int,
        deadline: float | None,
        can_fall_back: bool,
        max_wait: float | None,
    ) -> Reservation:
        return await self.scheduler.acquire(
            self.key,
            self.plan,
            amounts,
            priority=priority,
            deadline=deadline,
            can_fall_back=can_fall_back,
            max_wait=max_wait,
        )

    async def projected_wait(self, request: ChatRequest, input_tokens: int | None = None) -> float:
        """Seconds this request would wait for capacity here now."""
        _, amounts = self.estimate(request, input_tokens)
        return await self.scheduler.projected_wait(self.key, self.plan, amounts)

    async def _failed(self, reservation: Reservation, exc: ProviderError) -> None:
        """Settle a failed call; learn from its headers, its Retry-After and its 429."""
        if isinstance(exc, Timeout | StreamInterrupted):
            _keep(reservation)  # the provider received it and may have generated tokens
        else:
            await self.scheduler.release(reservation, sent=exc.status_code is not None)
        await self.scheduler.limiter.observe(self.key, self.plan, exc.rate_limits)
        if isinstance(exc, RateLimited | Overloaded) and exc.retry_after:
            await self.scheduler.penalize(self.key, self.plan, exc.retry_after)
        short = exc.retry_after is None or exc.retry_after <= _SHORT_RETRY_AFTER_S
        if isinstance(exc, RateLimited) and exc.status_code == 429 and short:
            await self.scheduler.learn(self.key, self.plan, self.deployment)

    async def _succeeded(
        self,
        reservation: Reservation,
        info: RateLimitInfo | None,
        usage: Usage,
        raw_estimate: int,
    ) -> None:
        await self.scheduler.reconcile(reservation, usage, info)
        self.calibration.observe(self.key, raw_estimate, usage.input_tokens)

    async def aclose(self) -> None:
        if self._owns_scheduler:
            await self.scheduler.aclose()
            await self.scheduler.limiter.aclose()
        await self.provider.aclose()


__all__ = ["ScheduledProvider", "Scheduler", "SchedulerPolicy", "deployment_key"]
