"""What a sink is, and what it may read of the router's state.

A sink is a small object fed the router's events (:class:`~llmrelay.events.Event`) one at
a time, on a thread of its own (see :class:`~llmrelay.observe.Observer`): it may block on
I/O without slowing a call. Besides ``handle`` and ``close`` it may define:

- ``name`` — how drops and failures are reported (default: its class name);
- ``wants_context = True`` — ``handle`` then runs in a copy of the caller's
  :mod:`contextvars` taken when the event was emitted (OpenTelemetry's current span);
- ``attach(live)`` — given, once, a :class:`Live` view of the router, to read state
  that is not an event (queue depth, breaker state, budgets) when it needs it.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import msgspec

from llmrelay.events import Event


@runtime_checkable
class Sink(Protocol):
    def handle(self, event: Event) -> None:
        """Take one event; runs on the sink's own thread, in the order events were emitted."""
        ...

    def close(self) -> None:
        """Flush and release what the sink holds; called once, after its last event."""
        ...


class DeploymentNow(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment as the router sees it at this moment."""

    deployment: str
    provider: str
    model: str
    groups: tuple[str, ...]
    breaker: str
    """``closed``, ``open`` or ``half_open``."""
    in_flight: int
    queued: int
    """Requests waiting in the scheduler's queue for this deployment."""
    headroom: float
    """Share of the tighter rate limit the provider last reported as remaining."""


class Live(Protocol):
    """The router's state that events do not carry, read on demand (from any thread)."""

    def deployments(self) -> list[DeploymentNow]: ...

    def budgets(self) -> list[dict[str, Any]]:
        """Each budget as this process last saw it (see ``Budgets.last_seen``)."""
        ...


__all__ = ["DeploymentNow", "Live", "Sink"]
