"""Route one request over the candidate deployments of a model group.

The router holds no policy of its own: the group's balancer and the fallback policy order
the candidates; the context check skips those whose window cannot hold the request, and
the capability check those that cannot serve it (tools, JSON mode…); each deployment's
scheduler decides when to send; the breaker says whether a deployment is tried at all.

It is the one place that decides what a failure means, in one failure path shared by
``send``, ``stream`` and the hedge race (:meth:`Router._after_failure`):

- **raise at once** — authentication or a bad request: the caller's fault, the same
  anywhere;
- **retry the same deployment** — a retryable error (outage, 429, 529), up to ``retries``
  times with jittered exponential backoff; the scheduler makes the retry wait out any
  Retry-After. A rate-limited or overloaded deployment is retried only when its known wait
  is at most ``stay_within_s`` or no other deployment can serve now;
- **move on** — everything else, in the order the fallback policy chooses (a context error
  goes to larger windows, a rate limit to another account, a refusal to the content
  fallbacks).

Every upstream send is one :class:`~llmrelay.types.Attempt` on the answer (or on
:class:`AllModelsExhausted`). A stream falls over only until its first token reaches the
caller; after that, a failure raises :class:`StreamInterrupted` — a cut stream never ends
as if it had succeeded.
"""

from __future__ import annotations

import asyncio
import math
import random
import time
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import msgspec

from llmrelay.errors import (
    AllModelsExhausted,
    AuthenticationFailed,
    BadRequest,
    BudgetExceeded,
    ContextWindowExceeded,
    MalformedResponse,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    Timeout,
    UnknownModelGroup,
    WaitTooLong,
)
from llmrelay.events import Event, EventBus, EventKind
from llmrelay.routing.breaker import BreakerState
from llmrelay.routing.candidate import Candidate
from llmrelay.routing.policy import FallbackPolicy, ModelGroup, Smart, unique
from llmrelay.tokens import Estimator, HeuristicEstimator, TiktokenEstimator
from llmrelay.types import (
    Attempt,
    ChatRequest,
    ChatResponse,
    RoutedResponse,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Usage,
)

_CALLERS_FAULT = (AuthenticationFailed, BadRequest)
_INPUT_MARGIN = 1.1
"""Budgets hold input at the estimate plus this margin (the quick estimate is within a
few percent of the provider's count)."""
_OUTAGES = (ProviderUnavailable, Timeout, MalformedResponse, StreamInterrupted, Overloaded)


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """How the router retries, moves on, checks context windows and hedges.

    The router is the one place that decides to retry: the scheduler only waits.
    """

    retries: int = 2
    """Extra tries of one deployment after a retryable error (outage, 429, 529)."""
    retry_backoff_s: float = 0.25
    """First backoff; it doubles on each retry, with jitter, never below Retry-After."""
    retry_backoff_max_s: float = 30.0
    retry_jitter: float = 0.25
    """Each backoff is scaled by a random factor in [1 - jitter, 1 + jitter]."""
    stay_within_s: float = 2.0
    """A rate-limited or overloaded deployment is left at once for another deployment that
    can serve now, unless its known wait (Retry-After, queue) is at most this long."""
    context_margin: float = 0.9
    """The share of a context window a request may fill (input estimate + ``max_tokens``)."""
    hedge_after_s: float | None = None
    """Hedging (off by default): with no answer after this many seconds, also send to the
    next candidate; the first answer wins and the other call is cancelled."""
    hedge_quantile: float | None = None
    """Or wait for this quantile (e.g. 0.95) of the deployment's observed latency."""
    hedge_budget: float = 0.05
    """At most this share of requests may be hedged (extra load stays bounded)."""

    def __post_init__(self) -> None:
        if self.hedge_after_s is not None and self.hedge_after_s <= 0:
            raise ValueError(f"hedge_after_s must be > 0, got {self.hedge_after_s}")
        if self.hedge_quantile is not None and not 0 < self.hedge_quantile < 1:
            raise ValueError(f"hedge_quantile must be in (0, 1), got {self.hedge_quantile}")
        if not 0 <= self.hedge_budget <= 1:
            raise ValueError(f"hedge_budget must be in [0, 1], got {self.hedge_budget}")
        if self.retries < 0:
            raise ValueError(f"retries must be >= 0, got {self.retries}")
        for name in ("retry_backoff_s", "retry_backoff_max_s", "stay_within_s"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.retry_jitter < 1:
            raise ValueError(f"retry_jitter must be in [0, 1), got {self.retry_jitter}")
        if not 0 < self.context_margin <= 1:
            raise ValueError(f"context_margin must be in (0, 1], got {self.context_margin}")


def validate(request: ChatRequest) -> None:
    """Refuse, before any network call, what no deployment could accept."""
    if not request.messages:
        raise BadRequest("messages must not be empty")
    if request.max_tokens is not None and request.max_tokens < 1:
        raise BadRequest(f"max_tokens must be a positive integer, got {request.max_tokens}")
    if request.temperature is not None and not 0 <= request.temperature <= 2:
        raise BadRequest(f"temperature must be between 0 and 2, got {request.temperature}")


class Meter(Protocol):
    """Money, seen by the router: budgets and the spend ledger (:mod:`llmrelay.cost`).

    Each send to a deployment first holds its worst-case cost (``reserve``, which raises
    :class:`BudgetExceeded` when a budget cannot afford it: the deployment is then not
    tried); then ``settle`` records what the call really cost, or ``release`` gives the
    hold back when nothing was spent. ``release`` after ``settle`` does nothing.
    """

    def prefer_cheaper(self, request: ChatRequest) -> bool: ...

    async def reserve(self, request: ChatRequest, worst_case_micros: int) -> Any: ...

    async def settle(self, hold: Any, spent: Spent) -> None: ...

    async def release(self, hold: Any) -> None: ...


@dataclass(slots=True, frozen=True)
class Spent:
    """One priced call: who answered, the usage reported (or estimated), its cost."""

    request: ChatRequest
    request_id: str
    group: str
    deployment: str
    usage: Usage
    cost_micros: int


@dataclass(slots=True)
class _Route:
    """One request on its way: what remains to try, and every attempt so far."""

    group: ModelGroup
    request: ChatRequest
    input_tokens: int
    remaining: list[Candidate]
    attempts: list[Attempt]
    request_id: str
    refusal: BudgetExceeded | None = None
    """The first budget refusal: raised when no deployment answers."""


class Router:
    """Sends requests for named model groups; see the module docstring."""

    def __init__(
        self,
        groups: Mapping[str, ModelGroup],
        *,
        policy: FallbackPolicy | None = None,
        config: RouterConfig | None = None,
        estimator: Estimator | None = None,
        events: EventBus | None = None,
        rng: random.Random | None = None,
        meter: Meter | None = None,
    ) -> None:
        self.groups = {name.lower(): group for name, group in groups.items()}
        self.policy = policy or Smart()
        self.config = config or RouterConfig()
        self.estimator = estimator or TiktokenEstimator()
        self.quick_estimator: Estimator = HeuristicEstimator()
        self.routed = 0
        self.hedged = 0
        self._losers: set[asyncio.Task[ChatResponse]] = set()
        self._rng = rng or random.Random()
        self.events = events or EventBus()
        self.meter = meter

    def group(self, name: str) -> ModelGroup:
        found = self.groups.get(name.lower())
        if found is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise UnknownModelGroup(f"unknown model group {name!r} (configured: {known})")
        return found

    # -- planning -----------------------------------------------------------------------

    async def _route(
        self, group: ModelGroup, request: ChatRequest, request_id: str, *, stream: bool
    ) -> _Route:
        """The candidates that can serve ``request``, in order; the others as attempts."""
        validate(request)
        # The heuristic is within a few percent and several times cheaper than tiktoken;
        # the exact count is taken only when the request is near a window's limit.
        input_tokens = self.quick_estimator.count_request(request)
        output_tokens = request.max_tokens or 0
        ordered = self.policy.initial(group, input_tokens, output_tokens)
        cheaper = self.meter is not None and self.meter.prefer_cheaper(request)
        if cheaper and group.downgrade:
            targets = [c for g in group.downgrade
                       for c in self.policy.initial(g, input_tokens, output_tokens)]  # fmt: skip
            ordered = unique([*targets, *ordered])
        unknown = [c.discover() for c in ordered if c.context_window is None]
        if unknown:
            await asyncio.gather(*unknown)
        need = input_tokens + output_tokens
        margin = self.config.context_margin
        if any(c.context_window and 0.8 <= need / (c.context_window * margin) <= 1.25
               for c in ordered):  # fmt: skip
            input_tokens = self.estimator.count_request(request)
            need = input_tokens + output_tokens
        fit: list[Candidate] = []
        skipped: list[Attempt] = []
        refusals: list[BadRequest] = []
        for candidate in ordered:
            if not candidate.fits(need, margin):
                message = (
                    f"estimated {need} tokens exceed {margin:.0%} of the "
                    f"{candidate.context_window}-token window; not sent"
                )
                skipped.append(_skipped(candidate, "ContextWindowExceeded", message))
                self._emit(EventKind.SKIPPED, group, candidate, error="ContextWindowExceeded",
                           request_id=request_id)  # fmt: skip
                continue
            try:
                candidate.scheduled.provider.check(request, stream=stream)
            except BadRequest as exc:
                refusals.append(exc)
                skipped.append(_skipped(candidate, "BadRequest", f"{exc.message}; not sent"))
                self._emit(EventKind.SKIPPED, group, candidate, error="BadRequest",
                           request_id=request_id)  # fmt: skip
                continue
            fit.append(candidate)
        if fit and cheaper:
            fit = self._downgraded(group, fit, input_tokens, request.max_tokens, request_id)
        if not fit and refusals:
            raise refusals[0]
        if not fit:
            largest = max((c.context_window or 0 for c in ordered), default=0)
            raise ContextWindowExceeded(
                f"the request needs about {need} tokens; the largest window in group "
                f"{group.name!r} is {largest}",
                required_tokens=need,
                max_tokens=largest,
            )
        return _Route(group, request, input_tokens, fit, skipped, request_id)

    def _downgraded(
        self,
        group: ModelGroup,
        fit: list[Candidate],
        input_tokens: int,
        max_tokens: int | None,
        request_id: str,
    ) -> list[Candidate]:
        """A budget is nearly spent: the group's ``downgrade`` targets first, else the
        cheapest deployments that can serve; an event when the first choice changes."""
        if group.downgrade:
            targets = {id(c) for g in group.downgrade for c in g.members()}
            chosen = sorted(fit, key=lambda c: id(c) not in targets)  # stable: order kept
        else:
            chosen = sorted(fit, key=lambda c: _worst_case(c, input_tokens, max_tokens))
        own = {id(c) for c in group.members()}
        if chosen[0] is not next((c for c in fit if id(c) in own), None):
            self._emit(EventKind.DOWNGRADED, group, chosen[0], request_id=request_id)
        return chosen

    # -- money ----------------------------------------------------------------------------

    async def _reserve(self, route: _Route, candidate: Candidate) -> tuple[bool, Any]:
        """Hold the worst case of sending ``route`` to ``candidate``: ``(False, None)`` when
        a budget refuses (traced as a skipped attempt)."""
        meter = self.meter
        if meter is None:
            return True, None
        worst = _worst_case(candidate, route.input_tokens, route.request.max_tokens)
        try:
            return True, await meter.reserve(route.request, worst)
        except BudgetExceeded as exc:
            route.refusal = route.refusal or exc
            route.attempts.append(_skipped(candidate, "BudgetExceeded", f"{exc}; not sent"))
            self._emit(EventKind.BUDGET_REFUSED, route.group, candidate, error="BudgetExceeded",
                       request_id=route.request_id)  # fmt: skip
            return False, None

    async def _settle(self, route: _Route, candidate: Candidate, hold: Any, usage: Usage) -> int:
        """Price ``usage`` at ``candidate`` and record it against the hold; the cost."""
        cost = candidate.cost_micros(usage)
        if self.meter is not None:
            spent = Spent(route.request, route.request_id, route.group.name, candidate.id,
                          usage, cost)  # fmt: skip
            await self.meter.settle(hold, spent)
        return cost

    async def _release(self, hold: Any) -> None:
        if self.meter is not None:
            await self.meter.release(hold)

    async def _metered(self, route: _Route, candidate: Candidate, **send: Any) -> ChatResponse:
        """One send, its cost held before and settled after (released if it fails)."""
        ok, hold = await self._reserve(route, candidate)
        if not ok:
            raise _Refused
        try:
            response = await candidate.scheduled.send(
                route.request, input_tokens=route.input_tokens, **send
            )
            response.cost_micros = await self._settle(route, candidate, hold, response.usage)
            return response
        finally:
            await self._release(hold)

    # -- send ---------------------------------------------------------------------------

    async def send(
        self, request: ChatRequest, group: str = "default", *, request_id: str | None = None
    ) -> RoutedResponse:
        """Answer ``request`` from ``group``; ``request_id`` names it in events, the ledger
        and the answer (default: a new random id)."""
        model_group = self.group(group)
        self.routed += 1
        request_id = request_id or new_request_id()
        began = time.time()
        try:
            route = await self._route(model_group, request, request_id, stream=False)
            response = await self._send(route)
        except BaseException as exc:
            self._finished(model_group, request, request_id, began, False, None, exc)
            raise
        self._finished(model_group, request, request_id, began, False, response, None)
        return response

    async def _send(self, route: _Route) -> RoutedResponse:
        delay = self._hedge_delay(route.remaining[0]) if len(route.remaining) > 1 else None
        if delay is not None:
            won = await self._race(route, delay)
            if won is not None:
                return won
        while route.remaining:
            candidate = route.remaining.pop(0)
            if not self._admitted(candidate, route):
                continue
            retry, patient = 0, False
            while True:
                started = time.perf_counter()
                max_wait = self._max_wait(route, patient)
                candidate.in_flight += 1
                try:
                    response = await self._metered(
                        route, candidate, can_fall_back=bool(route.remaining), max_wait=max_wait
                    )
                except _Refused:
                    break
                except ProviderError as exc:
                    if max_wait is not None and await self._nothing_better(route, exc):
                        patient = True
                        continue
                    backoff = await self._after_failure(route, candidate, exc, started, retry)
                    if backoff is None:
                        break
                    retry += 1
                    await asyncio.sleep(backoff)
                    continue
                finally:
                    candidate.in_flight -= 1
                return self._answered(route, candidate, response, started)
        raise self._exhausted(route)

    def _max_wait(self, route: _Route, patient: bool) -> float | None:
        """How long a candidate may make this request wait while others remain: a busy
        deployment is left for one that can serve now (unless nothing better is free)."""
        return None if patient or not route.remaining else self.config.stay_within_s

    async def _nothing_better(self, route: _Route, exc: ProviderError) -> bool:
        """A wait past ``stay_within_s`` and no other deployment free now: wait here after
        all (within the scheduler's 90-second rule)."""
        return (
            isinstance(exc, WaitTooLong)
            and math.isfinite(exc.projected_wait)
            and not await self._another_can_serve_now(route)
        )

    def _hedge_delay(self, candidate: Candidate) -> float | None:
        if self.config.hedge_after_s is not None:
            return self.config.hedge_after_s
        if self.config.hedge_quantile is not None:
            return candidate.latency_quantile(self.config.hedge_quantile)
        return None

    async def _race(self, route: _Route, delay: float) -> ChatResponse | None:
        """Send to the first candidate; if it has not answered after ``delay`` seconds, to
        the next too; the first answer wins.

        Failures take the one failure path (no retries inside the race); returns ``None``
        when every call it made failed, leaving ``route.remaining`` as the policy chose.
        """
        first = route.remaining.pop(0)
        if not self._admitted(first, route):
            return None
        started: dict[asyncio.Task[ChatResponse], tuple[Candidate, float]] = {}

        def launch(candidate: Candidate) -> None:
            candidate.in_flight += 1
            task = asyncio.create_task(self._metered(route, candidate, can_fall_back=True))
            task.add_done_callback(lambda _: _leave(candidate))
            started[task] = (candidate, time.perf_counter())

        launch(first)
        done, pending = await asyncio.wait(set(started), timeout=delay)
        budget = max(1.0, self.config.hedge_budget * self.routed)
        if not done and route.remaining and self.hedged < budget:
            second = route.remaining.pop(0)
            if self._admitted(second, route):
                self.hedged += 1
                launch(second)
                pending = {t for t in started if not t.done()}
                self._emit(EventKind.HEDGED, route.group, first, request_id=route.request_id)
        try:
            while pending or done:
                if not done:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    candidate, at = started[task]
                    exc = task.exception()
                    if exc is None:
                        for loser in pending:
                            route.attempts.append(_cancelled(started[loser][0]))
                        return self._answered(route, candidate, task.result(), at)
                    if isinstance(exc, _Refused):
                        continue
                    if not isinstance(exc, ProviderError):
                        raise exc
                    await self._after_failure(route, candidate, exc, at, self.config.retries)
                done = set()
            return None
        finally:
            for task in pending:  # the loser: cancelled, it keeps its reservation
                task.cancel()
                self._losers.add(task)
                task.add_done_callback(self._losers.discard)

    # -- stream -------------------------------------------------------------------------

    async def stream(
        self,
        request: ChatRequest,
        group: str = "default",
        *,
        request_id: str | None = None,
        on_answer: Callable[[RoutedResponse], None] | None = None,
    ) -> AsyncIterator[StreamEvent]:
        """Stream from the first deployment that produces a token; usage comes at the end.

        ``on_answer`` is given the complete answer (deployment, attempts, cost) just
        before the stream's end event."""
        model_group = self.group(group)
        self.routed += 1
        request_id = request_id or new_request_id()
        began = time.time()
        answered: ChatResponse | None = None
        try:
            route = await self._route(model_group, request, request_id, stream=True)
            async for event in self._stream(route):
                if isinstance(event, ChatResponse):
                    answered = event
                    if on_answer is not None:
                        on_answer(event)
                    continue
                yield event
        except BaseException as exc:
            self._finished(model_group, request, request_id, began, True, None, exc)
            raise
        self._finished(model_group, request, request_id, began, True, answered, None)

    async def _stream(self, route: _Route) -> AsyncIterator[StreamEvent | ChatResponse]:
        while route.remaining:
            candidate = route.remaining.pop(0)
            if not self._admitted(candidate, route):
                continue
            retry, patient = 0, False
            while True:
                ok, hold = await self._reserve(route, candidate)
                if not ok:
                    break
                started = time.perf_counter()
                max_wait = self._max_wait(route, patient)
                delivered = settled = False
                ttft = 0.0
                opening: StreamStart | None = None
                text: list[str] = []
                candidate.in_flight += 1
                try:
                    async for event in candidate.scheduled.stream(
                        route.request,
                        can_fall_back=bool(route.remaining),
                        max_wait=max_wait,
                        input_tokens=route.input_tokens,
                    ):
                        if isinstance(event, StreamStart):
                            opening = event
                            candidate.record_limits(event.rate_limits)
                            continue
                        if not delivered:
                            delivered = True
                            ttft = time.perf_counter() - started
                            candidate.record_latency(ttft)
                            yield _opening(opening, candidate)
                        if isinstance(event, TextDelta):
                            text.append(event.text)
                        elif isinstance(event, StreamEnd):
                            event = self._finish_stream(event, route.input_tokens, text)
                            usage = event.usage or Usage()
                            response = ChatResponse(
                                content="".join(text),
                                finish_reason=event.finish_reason,
                                usage=usage,
                                model=opening.model if opening else "",
                                id=opening.id if opening else "",
                                latency_s=time.perf_counter() - started,
                                ttft_s=ttft,
                                cost_micros=await self._settle(route, candidate, hold, usage),
                            )
                            settled = True
                            yield self._answered(route, candidate, response, started)
                        yield event
                    return
                except ProviderError as exc:
                    if delivered:  # the provider bills what it sent: an estimate of it
                        self._failure(route, candidate, exc, started)
                        cut = self._finish_stream(StreamEnd(), route.input_tokens, text).usage
                        await self._settle(route, candidate, hold, cut or Usage())
                        raise _interrupted(exc) from exc
                    if max_wait is not None and await self._nothing_better(route, exc):
                        patient = True
                        continue
                    backoff = await self._after_failure(route, candidate, exc, started, retry)
                    if backoff is None:
                        break
                    retry += 1
                    await asyncio.sleep(backoff)
                except (GeneratorExit, asyncio.CancelledError):
                    if delivered and not settled:  # the caller left mid-answer: bill what was made
                        cut = self._finish_stream(StreamEnd(), route.input_tokens, text).usage
                        await self._settle(route, candidate, hold, cut or Usage())
                    raise
                finally:
                    candidate.in_flight -= 1
                    await self._release(hold)
        raise self._exhausted(route)

    def _finish_stream(self, end: StreamEnd, input_tokens: int, text: list[str]) -> StreamEnd:
        """Every stream ends with usage: the provider's, or an estimate when it sent none."""
        if end.usage is not None:
            return end
        output = self.estimator.count_text("".join(text))
        return StreamEnd(
            finish_reason=end.finish_reason,
            usage=Usage(input_tokens=input_tokens, output_tokens=output, estimated=True),
        )

    # -- the one failure path -------------------------------------------------------------

    async def _after_failure(
        self,
        route: _Route,
        candidate: Candidate,
        exc: ProviderError,
        started: float,
        retry: int,
    ) -> float | None:
        """Trace a failed attempt and decide: seconds to back off before retrying the same
        deployment, or ``None`` to move on (``route.remaining`` is then what the policy
        chose). Raises ``exc`` when it is the caller's to see."""
        self._failure(route, candidate, exc, started)
        if isinstance(exc, _CALLERS_FAULT):
            raise exc
        if isinstance(exc, ContextWindowExceeded):
            candidate.learn_window(exc.max_tokens)
        if (
            retry < self.config.retries
            and exc.retryable
            and await self._stay(route, candidate, exc)
        ):
            return self._backoff(retry)
        following = self.policy.after(exc, candidate, route.remaining, route.group)
        if following is None:
            raise exc
        route.remaining = following
        return None

    async def _stay(self, route: _Route, candidate: Candidate, exc: ProviderError) -> bool:
        """Whether retrying ``candidate`` beats moving on."""
        if candidate.breaker.state is not BreakerState.CLOSED:
            return False
        if not isinstance(exc, RateLimited | Overloaded):
            return True  # a transient outage: the same deployment is the best bet
        if exc.retry_after is not None:
            wait = exc.retry_after
        elif isinstance(exc, Overloaded):
            wait = math.inf  # no one knows for how long
        else:
            wait = await candidate.scheduled.projected_wait(route.request, route.input_tokens)
        if wait <= self.config.stay_within_s:
            return True
        return not await self._another_can_serve_now(route)

    async def _another_can_serve_now(self, route: _Route) -> bool:
        for other in route.remaining:
            if (
                other.breaker.state is BreakerState.CLOSED
                and not await other.scheduled.projected_wait(route.request, route.input_tokens)
            ):
                return True
        return False

    def _backoff(self, retry: int) -> float:
        """Exponential backoff with jitter for retry ``retry`` (0-based)."""
        c = self.config
        delay = min(c.retry_backoff_max_s, c.retry_backoff_s * 2.0**retry)
        return delay * self._rng.uniform(1 - c.retry_jitter, 1 + c.retry_jitter)

    def _failure(
        self, route: _Route, candidate: Candidate, exc: ProviderError, started: float
    ) -> None:
        """Trace a failed attempt, announce it, and count an outage against the breaker."""
        elapsed = time.perf_counter() - started
        route.attempts.append(_failed(candidate, exc, elapsed))
        self._emit(EventKind.ATTEMPT_FAILED, route.group, candidate, exc, elapsed,
                   len(route.attempts) - 1, request_id=route.request_id)  # fmt: skip
        if isinstance(exc, _OUTAGES):
            candidate.breaker.record_failure()

    def _exhausted(self, route: _Route) -> AllModelsExhausted | BudgetExceeded:
        """What to raise when no deployment answered: the budget's refusal if a budget
        stopped one from being tried, else :class:`AllModelsExhausted`."""
        self._emit(EventKind.EXHAUSTED, route.group, None, request_id=route.request_id)
        if route.refusal is not None:
            route.refusal.attempts = route.attempts
            return route.refusal
        return AllModelsExhausted(
            f"every deployment of model group {route.group.name!r} failed", route.attempts
        )

    def _admitted(self, candidate: Candidate, route: _Route) -> bool:
        if candidate.breaker.allow():
            return True
        route.attempts.append(_skipped(candidate, "CircuitOpen", "circuit breaker open; not sent"))
        self._emit(EventKind.SKIPPED, route.group, candidate, error="CircuitOpen",
                   request_id=route.request_id)  # fmt: skip
        return False

    # -- outcomes -------------------------------------------------------------------------

    def _answered(
        self, route: _Route, candidate: Candidate, response: ChatResponse, started: float
    ) -> RoutedResponse:
        attempts, group = route.attempts, route.group
        elapsed = time.perf_counter() - started
        candidate.breaker.record_success()
        candidate.record_limits(response.rate_limits)
        if response.ttft_s is None:
            candidate.record_latency(response.latency_s or elapsed)
        latency = response.latency_s or elapsed
        wait = max(0.0, elapsed - latency)
        attempts.append(Attempt(deployment=candidate.id, wait_s=wait, latency_s=latency,
                                status_code=200))  # fmt: skip
        usage, cost = response.usage, response.cost_micros
        if len(attempts) > 1:  # why the first choice was left: the first attempt's error
            self._emit(EventKind.FELL_BACK, group, candidate, attempt=len(attempts) - 1,
                       error=attempts[0].error, request_id=route.request_id)  # fmt: skip
        self.events.emit(
            Event(
                kind=EventKind.ATTEMPT_SUCCEEDED,
                group=group.name,
                deployment=candidate.id,
                latency_s=elapsed,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_micros=cost,
                attempt=len(attempts) - 1,
                request_id=route.request_id,
            )
        )
        response.attempts, response.group = list(attempts), group.name
        response.request_id = route.request_id
        response.deployment = response.deployment or candidate.id
        response.provider = response.provider or candidate.provider
        return response

    def _finished(
        self,
        group: ModelGroup,
        request: ChatRequest,
        request_id: str,
        began: float,
        streamed: bool,
        response: ChatResponse | None,
        exc: BaseException | None,
    ) -> None:
        """The one event every routed request ends with, whatever its outcome: it carries
        the request, the answer (or the error) and every attempt, for the observers."""
        latency = time.time() - began
        if response is not None:
            event = Event(kind=EventKind.FINISHED, group=group.name,
                          deployment=response.deployment, attempt=len(response.attempts) - 1,
                          latency_s=latency, input_tokens=response.usage.input_tokens,
                          output_tokens=response.usage.output_tokens,
                          cost_micros=response.cost_micros, request_id=request_id,
                          request=request, response=response,
                          attempts=tuple(response.attempts), streamed=streamed,
                          started_at=began)  # fmt: skip
        else:
            cancelled = isinstance(exc, asyncio.CancelledError | GeneratorExit)
            name = "Cancelled" if cancelled else type(exc).__name__
            message = exc.message if isinstance(exc, ProviderError) else str(exc or "")
            attempts = getattr(exc, "attempts", None)
            event = Event(kind=EventKind.FINISHED, group=group.name, error=name, message=message,
                          latency_s=latency, request_id=request_id, request=request,
                          attempts=tuple(attempts) if isinstance(attempts, list) else (),
                          streamed=streamed, started_at=began)  # fmt: skip
        self.events.emit(event)

    def _emit(
        self,
        kind: EventKind,
        group: ModelGroup,
        candidate: Candidate | None,
        exc: ProviderError | None = None,
        latency: float = 0.0,
        attempt: int = 0,
        *,
        error: str | None = None,
        request_id: str = "",
    ) -> None:
        self.events.emit(
            Event(
                kind=kind,
                group=group.name,
                deployment=candidate.id if candidate else "",
                error=type(exc).__name__ if exc is not None else error,
                message=exc.message if exc is not None else "",
                latency_s=latency,
                attempt=attempt,
                request_id=request_id,
            )
        )

    def candidates(self) -> list[Candidate]:
        """Every deployment of every group, once."""
        return unique([c for group in self.groups.values() for c in group.members()])

    async def aclose(self) -> None:
        """Cancel hedge losers still running and close every provider adapter."""
        for task in list(self._losers):
            task.cancel()
        await asyncio.gather(*self._losers, return_exceptions=True)
        for candidate in self.candidates():
            await candidate.scheduled.provider.aclose()


def new_request_id() -> str:
    """A random request id (32 hex digits)."""
    return uuid.uuid4().hex


class _Refused(Exception):
    """A budget refused the deployment; it was not sent to (see ``_Route.refusal``)."""


def _worst_case(candidate: Candidate, input_tokens: int, max_tokens: int | None) -> int:
    """The most a call can cost at ``candidate``: its input (with a margin over the
    estimate) and every output token it may write."""
    output = max_tokens or candidate.max_output_tokens or 0
    return candidate.price_for(math.ceil(input_tokens * _INPUT_MARGIN) + 16, output)


def _opening(start: StreamStart | None, candidate: Candidate) -> StreamStart:
    opening = start or StreamStart()
    return msgspec.structs.replace(
        opening,
        model=opening.model or candidate.scheduled.provider.deployment.model,
        deployment=candidate.id,
    )


def _interrupted(exc: ProviderError) -> StreamInterrupted:
    if isinstance(exc, StreamInterrupted):
        return exc
    return StreamInterrupted(
        f"the stream failed after its first token: {exc.message}",
        provider=exc.provider,
        deployment=exc.deployment,
        status_code=exc.status_code,
    )


def _skipped(candidate: Candidate, error: str, message: str) -> Attempt:
    return Attempt(deployment=candidate.id, error=error, message=message)


def _cancelled(candidate: Candidate) -> Attempt:
    return _skipped(candidate, "Cancelled", "another deployment answered first")


def _leave(candidate: Candidate) -> None:
    candidate.in_flight -= 1


def _failed(candidate: Candidate, exc: ProviderError, elapsed: float) -> Attempt:
    return Attempt(
        deployment=candidate.id,
        error=type(exc).__name__,
        message=exc.message,
        status_code=exc.status_code,
        latency_s=elapsed,
    )


__all__ = ["Meter", "Router", "RouterConfig", "Spent", "new_request_id", "validate"]
