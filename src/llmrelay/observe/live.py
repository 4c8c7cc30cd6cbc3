"""The router's state read on demand, for sinks that report more than events (gauges)."""

from __future__ import annotations

from typing import Any

from llmrelay.budget import Budgets
from llmrelay.observe.sink import DeploymentNow
from llmrelay.router import Router
from llmrelay.scheduling import Scheduler


class RouterLive:
    """A :class:`~llmrelay.observe.Live` over one router, its scheduler and budgets.

    Read from other threads (a metrics scrape) while the router runs: every figure is a
    plain read of a counter, and a read that races a change is simply a moment older.
    """

    def __init__(self, router: Router, scheduler: Scheduler, budgets: Budgets | None) -> None:
        self._router = router
        self._scheduler = scheduler
        self._budgets = budgets

    def deployments(self) -> list[DeploymentNow]:
        groups: dict[str, list[str]] = {}
        for name, group in list(self._router.groups.items()):
            for candidate in group.members():
                groups.setdefault(candidate.id, []).append(name)
        return [
            DeploymentNow(
                deployment=c.id,
                provider=c.provider,
                model=c.scheduled.provider.deployment.model,
                groups=tuple(groups.get(c.id, ())),
                breaker=c.breaker.peek().value,
                in_flight=c.in_flight,
                queued=self._scheduler.queued(c.scheduled.key),
                headroom=c.headroom,
            )
            for c in self._router.candidates()
        ]

    def budgets(self) -> list[dict[str, Any]]:
        return self._budgets.last_seen() if self._budgets is not None else []


__all__ = ["RouterLive"]
