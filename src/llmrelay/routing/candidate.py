"""What the router knows about one deployment it may send to."""

from __future__ import annotations

import asyncio
import collections
import logging
from dataclasses import dataclass, field

from llmrelay.catalog import Price
from llmrelay.routing.breaker import CircuitBreaker
from llmrelay.scheduling import ScheduledProvider
from llmrelay.types import RateLimitInfo, Usage

_LATENCY_WINDOW = 200
log = logging.getLogger("llmrelay.routing")


@dataclass(eq=False)
class Candidate:
    """A scheduled deployment plus its size, price, weight, health and recent figures."""

    scheduled: ScheduledProvider
    context_window: int | None
    """``None``: unknown — the server is asked once, and a context error teaches it."""
    max_output_tokens: int | None
    breaker: CircuitBreaker
    price: Price | None = None
    weight: float = 1.0
    in_flight: int = 0
    ttft_ewma: float | None = None
    headroom: float = 1.0
    """Share of the tighter rate limit the provider last reported as remaining."""
    latencies: collections.deque[float] = field(
        default_factory=lambda: collections.deque(maxlen=_LATENCY_WINDOW)
    )
    _discovery: asyncio.Task[None] | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        return self.scheduled.deployment

    @property
    def provider(self) -> str:
        return self.scheduled.provider.name

    @property
    def account(self) -> str:
        """Provider + credentials: candidates sharing it share rate limits upstream."""
        return f"{self.provider}:{self.scheduled.key.rsplit(':', 1)[-1]}"

    def fits(self, tokens: int, margin: float) -> bool:
        """Whether ``tokens`` (input + output) fit in ``margin`` of the context window
        (an unknown window is not checked: the provider will say)."""
        return self.context_window is None or tokens <= self.context_window * margin

    async def discover(self) -> None:
        """Ask the server for an unknown context window, once (concurrent callers share it)."""
        if self.context_window is not None:
            return
        if self._discovery is None:
            self._discovery = asyncio.ensure_future(self._ask())
        await asyncio.shield(self._discovery)

    async def _ask(self) -> None:
        window = await self.scheduled.provider.discover_context_window()
        if window is not None and self.context_window is None:
            log.info("%s: the server reports a %d-token context window", self.id, window)
            self.context_window = window

    def learn_window(self, window: int | None) -> None:
        """A context error named the window: remember it (only ever smaller)."""
        if window and (self.context_window is None or window < self.context_window):
            log.info("%s: learned a %d-token context window from an error", self.id, window)
            self.context_window = window

    def cost_micros(self, usage: Usage) -> int:
        """What ``usage`` costs here, in integer micro-dollars (0 without a price)."""
        return 0 if self.price is None else self.price.micros(usage)

    def price_for(self, input_tokens: int, output_tokens: int) -> int:
        """Micro-dollars for a call of this size, with no cache hits (its worst case)."""
        return self.cost_micros(Usage(input_tokens=input_tokens, output_tokens=output_tokens))

    def record_latency(self, first_token_s: float, alpha: float = 0.2) -> None:
        self.latencies.append(first_token_s)
        old = self.ttft_ewma
        self.ttft_ewma = first_token_s if old is None else old + alpha * (first_token_s - old)

    def record_limits(self, info: RateLimitInfo | None) -> None:
        if info is None or (info.requests_limit is None and info.tokens_limit is None):
            return
        shares = [
            remaining / limit
            for remaining, limit in (
                (info.requests_remaining, info.requests_limit),
                (info.tokens_remaining, info.tokens_limit),
            )
            if remaining is not None and limit
        ]
        if shares:
            self.headroom = max(0.0, min(shares))

    def latency_quantile(self, q: float) -> float | None:
        if len(self.latencies) < 20:
            return None
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


__all__ = ["Candidate"]
