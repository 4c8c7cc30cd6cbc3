"""Typed events of the router, and a bus whose handlers cannot break a call.

Metrics, tracing, logs and statistics are handlers: callables taking an :class:`Event`.
A handler that raises is reported with a warning and the call goes on.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Iterable

import msgspec

from llmrelay.types import Attempt, ChatRequest, ChatResponse

log = logging.getLogger("llmrelay.events")


class EventKind(enum.Enum):
    ATTEMPT_STARTED = "attempt_started"
    ATTEMPT_SUCCEEDED = "attempt_succeeded"
    ATTEMPT_FAILED = "attempt_failed"
    SKIPPED = "skipped"
    FELL_BACK = "fell_back"
    EXHAUSTED = "exhausted"
    BREAKER_CHANGED = "breaker_changed"
    HEDGED = "hedged"
    LIMIT_LEARNED = "limit_learned"
    """A 429 the scheduler's buckets did not predict: it now paces to a stricter window."""
    FINISHED = "finished"
    """Exactly one per routed request, whatever its outcome (``error`` set on failure):
    it carries the request, the answer and every attempt (see :class:`Event`)."""
    DOWNGRADED = "downgraded"
    """A budget is past its downgrade share: cheaper deployments were put first."""
    BUDGET_THRESHOLD = "budget_threshold"
    """A budget's spend crossed one of its thresholds (``budget``, ``share``)."""
    BUDGET_REFUSED = "budget_refused"
    """A budget could not afford a request on a deployment; it was not sent there."""
    CACHE_HIT = "cache_hit"
    """Answered from the response cache (``message``: exact or semantic; ``cost_micros``:
    what the answer cost when it was made, saved this time)."""


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """One step of routing one request (``group``) on one deployment.

    ``finished`` and ``cache_hit`` events also carry the whole request: ``request``, the
    ``response`` (``None`` on failure), every ``attempts`` made, whether it was
    ``streamed``, and ``started_at`` (Unix time); ``latency_s`` is then the request's.
    Handlers must treat these objects as read-only.
    """

    kind: EventKind
    group: str = ""
    deployment: str = ""
    error: str | None = None
    message: str = ""
    latency_s: float = 0.0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    attempt: int = 0
    """0 for the first deployment tried for a request, 1 for the next, …"""
    request_id: str = ""
    budget: str = ""
    share: float = 0.0
    """A budget's spend over its limit, for budget events."""
    request: ChatRequest | None = None
    response: ChatResponse | None = None
    attempts: tuple[Attempt, ...] = ()
    streamed: bool = False
    started_at: float = 0.0

    @property
    def cost_usd(self) -> float:
        return self.cost_micros / 1_000_000


Handler = Callable[[Event], None]


class EventBus:
    """Delivers every event to every handler; a failing handler only warns."""

    def __init__(self, handlers: Iterable[Handler] = ()) -> None:
        self._handlers = list(handlers)

    def subscribe(self, handler: Handler) -> None:
        self._handlers.append(handler)

    def emit(self, event: Event) -> None:
        for handler in self._handlers:
            try:
                handler(event)
            except Exception:
                log.warning(
                    "event handler %r failed on %s", handler, event.kind.value, exc_info=True
                )


__all__ = ["Event", "EventBus", "EventKind", "Handler"]
