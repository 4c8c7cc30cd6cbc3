"""How a cache lives through its backend failing: a miss, never the caller's error.

While a backend fails, :class:`Outage` counts each error, logs one warning per outage (and
one line when the backend answers again), and tells the cache to leave the backend alone
for ``retry_after_s`` so that an outage costs one timeout, not one per call.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from llmrelay.cache.stores import CacheUnavailable

log = logging.getLogger("llmrelay.cache")


class Outage:
    """The state of one cache's backend: up, or down since a failure (see the module)."""

    def __init__(self, name: str, clock: Callable[[], float], retry_after_s: float) -> None:
        self.name = name
        self.retry_after_s = retry_after_s
        self.errors = 0
        self.down = False
        self._clock = clock
        self._retry_at = 0.0

    def resting(self) -> bool:
        """Whether the backend is down and not to be tried again yet."""
        return self.down and self._clock() < self._retry_at

    def failed(self, exc: Exception, where: str) -> None:
        """Count a failure of the backend at ``where``; warn when an outage starts (with
        the traceback of an error the backend did not expect)."""
        self.errors += 1
        self._retry_at = self._clock() + self.retry_after_s
        if self.down:
            return
        self.down = True
        expected = isinstance(exc, CacheUnavailable)
        log.warning(
            "%s unavailable (%s): answers are neither served from it nor kept until it is "
            "back; trying again every %gs",
            self.name,
            exc if expected else f"{where}: {exc!r}",
            self.retry_after_s,
            exc_info=not expected,
        )

    def answered(self, where: str) -> None:
        """The backend answered: an outage, if there was one, is over."""
        if self.down:
            self.down = False
            log.info("%s: %s answers again", self.name, where)


__all__ = ["Outage"]
