"""A circuit breaker per deployment: closed, open, half-open.

Closed, every call goes through and consecutive failures are counted; at
``failure_threshold`` the breaker opens and the deployment is skipped for ``cooldown_s``.
Then it is half-open: up to ``half_open_probes`` calls go through as probes; a success
closes it, a failure opens it again for the next cool-down. Only outages count as
failures (5xx, timeouts, dropped or malformed answers) — never rate limits, which the
scheduler handles, nor the caller's own errors.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable

import msgspec


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class BreakerConfig(msgspec.Struct, frozen=True, kw_only=True):
    failure_threshold: int = 5
    cooldown_s: float = 30.0
    half_open_probes: int = 1

    def __post_init__(self) -> None:
        if self.failure_threshold < 1 or self.half_open_probes < 1 or self.cooldown_s < 0:
            raise ValueError("failure_threshold and half_open_probes >= 1, cooldown_s >= 0")


StateListener = Callable[[str, BreakerState, BreakerState], None]
"""Called with (deployment, old state, new state) on every transition."""


class CircuitBreaker:
    """One deployment's breaker. Not thread-safe: it lives on the router's event loop."""

    def __init__(
        self,
        deployment: str,
        config: BreakerConfig | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_change: StateListener | None = None,
    ) -> None:
        self.deployment = deployment
        self.config = config or BreakerConfig()
        self._clock = clock
        self._on_change = on_change
        self._state = BreakerState.CLOSED
        self._failures = 0
        self._opened_at = 0.0
        self._probes = 0

    @property
    def state(self) -> BreakerState:
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.cooldown_s
        ):
            self._move(BreakerState.HALF_OPEN)
            self._probes = 0
        return self._state

    def peek(self) -> BreakerState:
        """What :attr:`state` would say, without moving an open breaker to half-open:
        safe to read from another thread (a metrics scrape)."""
        if (
            self._state is BreakerState.OPEN
            and self._clock() - self._opened_at >= self.config.cooldown_s
        ):
            return BreakerState.HALF_OPEN
        return self._state

    @property
    def consecutive_failures(self) -> int:
        return self._failures

    def allow(self) -> bool:
        """Whether a call may go through now (a half-open breaker admits its probes)."""
        state = self.state
        if state is BreakerState.CLOSED:
            return True
        if state is BreakerState.HALF_OPEN and self._probes < self.config.half_open_probes:
            self._probes += 1
            return True
        return False

    def record_success(self) -> None:
        self._failures = 0
        if self._state is not BreakerState.CLOSED:
            self._move(BreakerState.CLOSED)

    def record_failure(self) -> None:
        self._failures += 1
        half_open = self.state is BreakerState.HALF_OPEN
        if half_open or self._failures >= self.config.failure_threshold:
            self._opened_at = self._clock()
            self._move(BreakerState.OPEN)

    def _move(self, new: BreakerState) -> None:
        old, self._state = self._state, new
        if old is not new and self._on_change is not None:
            self._on_change(self.deployment, old, new)


__all__ = ["BreakerConfig", "BreakerState", "CircuitBreaker"]
