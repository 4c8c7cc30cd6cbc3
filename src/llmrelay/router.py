"""Route one request over the candidate deployments of a model group.

The router holds no policy of its own: the group's balancer and the fallback policy order
the candidates; the context check skips those whose window cannot hold the request; each
deployment's scheduler decides when to send; the breaker says whether a deployment is
tried at all. The router classifies each failure and does one of three things:

- **retry the same deployment** — an outage (5xx, timeout, dropped or malformed answer),
  up to ``retries`` times with backoff;
- **move on** — a rate limit beyond the scheduler's wait bound, an outage that outlasted
  the retries, overload, a context window, a content refusal with fallbacks configured;
- **raise at once** — authentication or a bad request: the caller's fault, the same
  anywhere.

When every candidate is spent it raises :class:`AllModelsExhausted` with the attempts. A
stream falls over only until its first token reaches the caller; after that, a failure
raises :class:`StreamInterrupted` — a cut stream never ends as if it had succeeded.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping

import msgspec

from llmrelay.errors import (
    AllModelsExhausted,
    AuthenticationFailed,
    BadRequest,
    ContextWindowExceeded,
    MalformedResponse,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    StreamInterrupted,
    Timeout,
    UnknownModelGroup,
)
from llmrelay.events import Event, EventBus, EventKind
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
_OUTAGES = (ProviderUnavailable, Timeout, MalformedResponse, StreamInterrupted, Overloaded)


class RouterConfig(msgspec.Struct, frozen=True, kw_only=True):
    """``retries``: extra tries of one deployment after an outage; ``context_margin``: the
    share of a context window a request may fill (input estimate + ``max_tokens``)."""

    retries: int = 1
    retry_backoff_s: float = 0.25
    context_margin: float = 0.9
    hedge_after_s: float | None = None
    """Hedging (off by default): with no answer after this many seconds, also send to the
    next candidate; the first answer wins and the other call is cancelled."""
    hedge_quantile: float | None = None
    """Or wait for this quantile (e.g. 0.95) of the deployment's observed latency."""
    hedge_budget: float = 0.05
    """At most this share of requests may be hedged (extra load stays bounded)."""

    def __post_init__(self) -> None:
        if self.hedge_quantile is not None and not 0 < self.hedge_quantile < 1:
            raise ValueError(f"hedge_quantile must be in (0, 1), got {self.hedge_quantile}")
        if not 0 <= self.hedge_budget <= 1:
            raise ValueError(f"hedge_budget must be in [0, 1], got {self.hedge_budget}")
        if self.retries < 0 or self.retry_backoff_s < 0:
            raise ValueError("retries and retry_backoff_s must be >= 0")
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
    ) -> None:
        self.groups = {name.lower(): group for name, group in groups.items()}
        self.policy = policy or Smart()
        self.config = config or RouterConfig()
        self.estimator = estimator or TiktokenEstimator()
        self.quick_estimator: Estimator = HeuristicEstimator()
        self.routed = 0
        self.hedged = 0
        self._losers: set[asyncio.Task[ChatResponse]] = set()
        self.events = events or EventBus()

    def group(self, name: str) -> ModelGroup:
        found = self.groups.get(name.lower())
        if found is None:
            known = ", ".join(sorted(self.groups)) or "none"
            raise UnknownModelGroup(f"unknown model group {name!r} (configured: {known})")
        return found

    def plan(
        self, group: ModelGroup, request: ChatRequest
    ) -> tuple[list[Candidate], list[Attempt], int]:
        """Candidates in order, the ones skipped for their context window, the input estimate."""
        # The heuristic is within a few percent and several times cheaper than tiktoken;
        # the exact count is taken only when the request is near a window's limit.
        input_tokens = self.quick_estimator.count_request(request)
        output_tokens = request.max_tokens or 0
        ordered = self.policy.initial(group, input_tokens, output_tokens)
        need = input_tokens + output_tokens
        margin = self.config.context_margin
        if any(0.8 <= need / (c.context_window * margin) <= 1.25 for c in ordered):
            input_tokens = self.estimator.count_request(request)
            need = input_tokens + output_tokens
        fit, skipped = [], []
        for candidate in ordered:
            if candidate.fits(need, self.config.context_margin):
                fit.append(candidate)
                continue
            message = (
                f"estimated {need} tokens exceed {self.config.context_margin:.0%} of the "
                f"{candidate.context_window}-token window; not sent"
            )
            skipped.append(Attempt(deployment=candidate.id, error="ContextWindowExceeded",
                                   message=message))  # fmt: skip
            self._emit(EventKind.SKIPPED, group, candidate, error="ContextWindowExceeded")
        if not fit:
            largest = max((c.context_window for c in ordered), default=0)
            raise ContextWindowExceeded(
                f"the request needs about {need} tokens; the largest window in group "
                f"{group.name!r} is {largest}",
                required_tokens=need,
                max_tokens=largest,
            )
        return fit, skipped, input_tokens

    async def send(self, request: ChatRequest, group: str = "default") -> RoutedResponse:
        validate(request)
        model_group = self.group(group)
        remaining, attempts, input_tokens = self.plan(model_group, request)
        self.routed += 1
        delay = self._hedge_delay(remaining[0]) if len(remaining) > 1 else None
        if delay is not None:
            won = await self._race(model_group, request, remaining, attempts, input_tokens, delay)
            if won is not None:
                return won
        while remaining:
            candidate = remaining.pop(0)
            if not self._admitted(candidate, model_group, attempts):
                continue
            for retry in range(self.config.retries + 1):
                started = time.perf_counter()
                candidate.in_flight += 1
                try:
                    response = await candidate.scheduled.send(
                        request, can_fall_back=bool(remaining), input_tokens=input_tokens
                    )
                except ProviderError as exc:
                    self._failure(model_group, candidate, exc, started, attempts)
                    if isinstance(exc, _CALLERS_FAULT):
                        raise
                    outage = isinstance(exc, _OUTAGES)
                    if outage and retry < self.config.retries and candidate.breaker.allow():
                        await asyncio.sleep(self.config.retry_backoff_s * 2**retry)
                        continue
                    following = self.policy.after(exc, candidate, remaining, model_group)
                    if following is None:
                        raise
                    remaining = following
                    break
                finally:
                    candidate.in_flight -= 1
                return self._answered(model_group, candidate, response, attempts, started)
        self._emit(EventKind.EXHAUSTED, model_group, None)
        raise AllModelsExhausted(
            f"every deployment of model group {model_group.name!r} failed", attempts
        )

    def _hedge_delay(self, candidate: Candidate) -> float | None:
        if self.config.hedge_after_s is not None:
            return self.config.hedge_after_s
        if self.config.hedge_quantile is not None:
            return candidate.latency_quantile(self.config.hedge_quantile)
        return None

    async def _race(
        self,
        group: ModelGroup,
        request: ChatRequest,
        remaining: list[Candidate],
        attempts: list[Attempt],
        input_tokens: int,
        delay: float,
    ) -> ChatResponse | None:
        """Send to the first candidate; if it has not answered after ``delay`` seconds, to
        the next too; the first answer wins.

        Returns ``None`` when every call it made failed (they are in ``attempts``; the
        caller goes on with ``remaining``).
        """
        first = remaining.pop(0)
        if not self._admitted(first, group, attempts):
            return None
        started: dict[asyncio.Task[ChatResponse], tuple[Candidate, float]] = {}

        def launch(candidate: Candidate) -> None:
            candidate.in_flight += 1
            task = asyncio.create_task(
                candidate.scheduled.send(request, can_fall_back=True, input_tokens=input_tokens)
            )
            task.add_done_callback(lambda _: _leave(candidate))
            started[task] = (candidate, time.perf_counter())

        launch(first)
        pending = set(started)
        done, pending = await asyncio.wait(pending, timeout=delay)
        budget = max(1.0, self.config.hedge_budget * self.routed)
        if not done and remaining and self.hedged < budget and remaining[0].breaker.allow():
            self.hedged += 1
            launch(remaining.pop(0))
            pending = {t for t in started if not t.done()}
            self._emit(EventKind.HEDGED, group, first)
        try:
            while pending or done:
                if not done:
                    done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    candidate, at = started[task]
                    exc = task.exception()
                    if exc is None:
                        for loser in pending:
                            attempts.append(_cancelled(started[loser][0]))
                        return self._answered(group, candidate, task.result(), attempts, at)
                    if not isinstance(exc, ProviderError):
                        raise exc
                    self._failure(group, candidate, exc, at, attempts)
                    if isinstance(exc, _CALLERS_FAULT):
                        raise exc
                done = set()
            return None
        finally:
            for task in pending:  # the loser: cancelling it releases its reservation
                task.cancel()
                self._losers.add(task)
                task.add_done_callback(self._losers.discard)

    async def stream(
        self, request: ChatRequest, group: str = "default"
    ) -> AsyncIterator[StreamEvent]:
        """Stream from the first deployment that produces a token; usage comes at the end."""
        validate(request)
        model_group = self.group(group)
        remaining, attempts, input_tokens = self.plan(model_group, request)
        while remaining:
            candidate = remaining.pop(0)
            if not self._admitted(candidate, model_group, attempts):
                continue
            started = time.perf_counter()
            delivered = False
            ttft = 0.0
            start: StreamStart | None = None
            text: list[str] = []
            candidate.in_flight += 1
            try:
                async for event in candidate.scheduled.stream(
                    request, can_fall_back=bool(remaining), input_tokens=input_tokens
                ):
                    if isinstance(event, StreamStart):
                        start = event
                        candidate.record_limits(event.rate_limits)
                        continue
                    if not delivered:
                        delivered = True
                        ttft = time.perf_counter() - started
                        candidate.record_latency(ttft)
                        model = candidate.scheduled.provider.deployment.model
                        opening = start or StreamStart()
                        yield msgspec.structs.replace(opening, model=opening.model or model)
                    if isinstance(event, TextDelta):
                        text.append(event.text)
                    elif isinstance(event, StreamEnd):
                        event = self._finish_stream(event, input_tokens, text)
                        response = ChatResponse(
                            content="".join(text),
                            usage=event.usage or Usage(),
                            latency_s=time.perf_counter() - started,
                            ttft_s=ttft,
                        )
                        self._answered(model_group, candidate, response, attempts, started)
                    yield event
                return
            except ProviderError as exc:
                self._failure(model_group, candidate, exc, started, attempts)
                if delivered:
                    if isinstance(exc, StreamInterrupted):
                        raise
                    raise StreamInterrupted(
                        f"the stream failed after its first token: {exc.message}",
                        provider=exc.provider,
                        deployment=exc.deployment,
                        status_code=exc.status_code,
                    ) from exc
                if isinstance(exc, _CALLERS_FAULT):
                    raise
                following = self.policy.after(exc, candidate, remaining, model_group)
                if following is None:
                    raise
                remaining = following
            finally:
                candidate.in_flight -= 1
        self._emit(EventKind.EXHAUSTED, model_group, None)
        raise AllModelsExhausted(
            f"every deployment of model group {model_group.name!r} failed", attempts
        )

    def _finish_stream(self, end: StreamEnd, input_tokens: int, text: list[str]) -> StreamEnd:
        """Every stream ends with usage: the provider's, or an estimate when it sent none."""
        if end.usage is not None:
            return end
        output = self.estimator.count_text("".join(text))
        return StreamEnd(
            finish_reason=end.finish_reason,
            usage=Usage(input_tokens=input_tokens, output_tokens=output),
        )

    def _failure(
        self,
        group: ModelGroup,
        candidate: Candidate,
        exc: ProviderError,
        started: float,
        attempts: list[Attempt],
    ) -> None:
        """Trace a failed attempt, announce it, and count an outage against the breaker."""
        elapsed = time.perf_counter() - started
        attempts.append(_failed(candidate, exc, elapsed))
        self._emit(EventKind.ATTEMPT_FAILED, group, candidate, exc, elapsed, len(attempts) - 1)
        if isinstance(exc, _OUTAGES):
            candidate.breaker.record_failure()

    def _admitted(self, candidate: Candidate, group: ModelGroup, attempts: list[Attempt]) -> bool:
        if candidate.breaker.allow():
            return True
        attempts.append(Attempt(deployment=candidate.id, error="CircuitOpen",
                                message="circuit breaker open; not sent"))  # fmt: skip
        self._emit(EventKind.SKIPPED, group, candidate, error="CircuitOpen")
        return False

    def _answered(
        self,
        group: ModelGroup,
        candidate: Candidate,
        response: ChatResponse,
        attempts: list[Attempt],
        started: float,
    ) -> RoutedResponse:
        elapsed = time.perf_counter() - started
        candidate.breaker.record_success()
        candidate.record_limits(response.rate_limits)
        if response.ttft_s is None:
            candidate.record_latency(response.latency_s or elapsed)
        latency = response.latency_s or elapsed
        wait = max(0.0, elapsed - latency)
        attempts.append(Attempt(deployment=candidate.id, wait_s=wait, latency_s=latency))
        usage = response.usage
        cost = candidate.price_for(usage.input_tokens, usage.output_tokens)
        if len(attempts) > 1:  # why the first choice was left: the first attempt's error
            self._emit(EventKind.FELL_BACK, group, candidate, attempt=len(attempts) - 1,
                       error=attempts[0].error)  # fmt: skip
        self.events.emit(
            Event(
                kind=EventKind.ATTEMPT_SUCCEEDED,
                group=group.name,
                deployment=candidate.id,
                latency_s=elapsed,
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cost_usd=cost,
                attempt=len(attempts) - 1,
            )
        )
        response.attempts, response.group, response.cost_usd = list(attempts), group.name, cost
        return response

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
            )
        )

    def candidates(self) -> list[Candidate]:
        """Every deployment of every group, once."""
        return unique([c for group in self.groups.values() for c in group.members()])

    async def aclose(self) -> None:
        schedulers = {id(c.scheduled.scheduler): c.scheduled for c in self.candidates()}
        for scheduled in schedulers.values():
            await scheduled.scheduler.aclose()
        for candidate in self.candidates():
            await candidate.scheduled.provider.aclose()


def _cancelled(candidate: Candidate) -> Attempt:
    return Attempt(
        deployment=candidate.id, error="Cancelled", message="another deployment answered first"
    )


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


__all__ = ["Router", "RouterConfig", "validate"]
