"""A circuit breaker for the LLM planner: after N failures in a row, skip it for a while.

While open, plans come from the pattern planner at once instead of waiting on a planner
that keeps failing; after the cooldown one call may try the LLM again (half-open), and
its success closes the breaker.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class PlannerBreaker:
    """Consecutive-failure breaker with a cooldown; ``clock`` is injectable for tests."""

    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 30.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = failures
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open``."""
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def allow(self) -> bool:
        """Whether the LLM planner may be called now (one probe at a time when half-open)."""
        state = self.state
        if state == "closed":
            return True
        if state == "half_open" and not self._probing:
            self._probing = True
            return True
        return False

    def success(self) -> None:
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def failure(self) -> None:
        self._failures += 1
        if self._probing or self._failures >= self.threshold:
            self._opened_at = self._clock()
        self._probing = False


__all__ = ["PlannerBreaker"]
