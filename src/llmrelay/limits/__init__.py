"""Rate-limit accounting per deployment: reservations, header feedback, shared state.

:class:`Limits` says what a deployment allows; a :class:`Limiter` reserves a request's
units before it is sent, reconciles them with the usage the provider reports, releases
them when the call fails, adopts the limits and remaining counts that response headers
report, and blocks the deployment for a 429's Retry-After. State lives in a backend:
:class:`MemoryBackend` (one process) or :class:`RedisBackend` (every replica shares one
set of limits; ``from llmrelay.limits.redis import RedisBackend``, extra ``redis``).
"""

from llmrelay.limits.limiter import LimitBackend, Limiter, Reservation
from llmrelay.limits.memory import MemoryBackend
from llmrelay.limits.plan import DIMENSIONS, Amounts, Limits, Plan, Snapshot, cost

__all__ = [
    "DIMENSIONS",
    "Amounts",
    "LimitBackend",
    "Limiter",
    "Limits",
    "MemoryBackend",
    "Plan",
    "Reservation",
    "Snapshot",
    "cost",
]
