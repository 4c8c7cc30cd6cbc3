"""Spending budgets: reserve a call's worst case, reconcile it to the real cost, or release.

Before a call is sent to a deployment, :meth:`Budgets.reserve` holds its worst-case cost
(estimated input + ``max_tokens`` at that deployment's prices) on every budget the request
counts against — global, its key, its user, its tags; for the day and the month — or
raises :class:`~llmrelay.errors.BudgetExceeded` naming the first budget that cannot afford
it. Afterwards :meth:`Budgets.settle` replaces the hold with the real cost;
:meth:`Budgets.release` gives it back when nothing was spent. Since every call holds its
worst case before it is sent, the spend can never pass a limit, however many calls run at
once and on however many replicas share the counters.

Past ``downgrade_at`` of any of its budgets, a request is routed to the cheapest
deployments that can serve it first. Each crossing of a threshold (50 %, 80 %, 100 % by
default) is one ``budget_threshold`` event, seen by exactly one caller.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from llmrelay.budget.counters import Counters, Line, MemoryCounters
from llmrelay.budget.limits import BudgetLimit, Calendar, Who
from llmrelay.errors import BudgetExceeded
from llmrelay.events import Event, EventBus, EventKind

_DAY_S = 86_400.0


class BudgetPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """How budgets count and warn."""

    timezone: str = "UTC"
    """The zone whose midnight starts a budget's day (and whose 1st its month)."""
    downgrade_at: float | None = 0.8
    """Past this share of any of its budgets, a request goes to the cheapest deployments
    that can serve it first (``None``: never)."""
    thresholds: tuple[float, ...] = (0.5, 0.8, 1.0)
    """Shares of a budget whose crossing is a ``budget_threshold`` event."""

    def __post_init__(self) -> None:
        if self.downgrade_at is not None and not 0 < self.downgrade_at <= 1:
            raise ValueError(f"downgrade_at must be in (0, 1], got {self.downgrade_at}")
        if any(not 0 < t <= 1 for t in self.thresholds):
            raise ValueError(f"thresholds must be in (0, 1], got {list(self.thresholds)}")
        Calendar(self.timezone)  # raises ValueError for an unknown zone


@dataclass(slots=True, frozen=True)
class _Counted:
    limit: BudgetLimit
    label: str
    line: Line
    resets_at: Any


@dataclass(slots=True)
class Hold:
    """What one call holds on its budgets until it is settled or released."""

    lines: list[_Counted]
    amount: int
    open: bool = True


class Budgets:
    """Every configured budget, over one set of counters (see the module docstring)."""

    def __init__(
        self,
        limits: Sequence[BudgetLimit],
        counters: Counters | None = None,
        *,
        policy: BudgetPolicy | None = None,
        events: EventBus | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        policy = policy or BudgetPolicy()
        self.limits = list(limits)
        self.caller_limits: Callable[[Who], Sequence[BudgetLimit]] | None = None
        """Limits that come with the caller rather than the configuration (the gateway's
        virtual keys carry budgets of their own), read for every request."""
        self.counters = counters or MemoryCounters()
        self.calendar = Calendar(policy.timezone)
        self.downgrade_at = policy.downgrade_at
        self.thresholds = sorted(policy.thresholds)
        self.events = events or EventBus()
        self._clock = clock
        self._shares: dict[str, float] = {}
        """The last known share of each counter, for downgrade decisions (no round trip)."""
        self._spent: dict[str, int] = {}
        """The last known spend of each counter."""
        self._seen: dict[str, _Counted] = {}
        """Every counter used in this process, for :meth:`snapshot`."""

    def _lines(self, who: Who) -> list[_Counted]:
        now = self._clock()
        counted = []
        limits = self.limits
        if self.caller_limits is not None:
            limits = [*limits, *self.caller_limits(who)]
        for limit in limits:
            period, resets = self.calendar.period(limit.period, now)
            for subject in limit.subjects(who):
                label = (
                    limit.label
                    if not subject or limit.value
                    else (f"{limit.scope}:{subject}/{limit.period}")
                )
                key = f"{label}@{period}"
                line = Line(key, limit.micros, resets.timestamp() + _DAY_S)
                counted.append(_Counted(limit, label, line, resets))
        return counted

    def prefer_cheaper(self, who: Who) -> bool:
        """Whether a budget of ``who`` is past its downgrade share (as last seen here)."""
        if self.downgrade_at is None:
            return False
        shares = self._shares
        return any(shares.get(c.line.key, 0.0) >= self.downgrade_at for c in self._lines(who))

    async def reserve(self, who: Who, amount: int) -> Hold:
        """Hold ``amount`` micro-dollars on every budget of ``who``, or raise
        :class:`BudgetExceeded` for the first that cannot afford it."""
        counted = self._lines(who)
        if not counted:
            return Hold(counted, amount)
        refusal = await self.counters.reserve([c.line for c in counted], amount)
        if refusal is not None:
            refused = counted[refusal.line]
            self._note(refused, refusal.spent + refusal.held)
            raise BudgetExceeded(
                refused.label,
                spent_micros=refusal.spent + refusal.held,
                limit_micros=refused.line.limit,
                needed_micros=amount,
                resets_at=refused.resets_at,
            )
        for c in counted:
            self._seen.setdefault(c.line.key, c)
        return Hold(counted, amount)

    async def settle(self, hold: Hold, cost: int) -> None:
        """Replace the hold by the call's real cost (once; later calls do nothing)."""
        if not hold.open:
            return
        hold.open = False
        if not hold.lines:
            return
        changes = await self.counters.settle([c.line for c in hold.lines], hold.amount, cost)
        for c, (before, after) in zip(hold.lines, changes, strict=True):
            self._note(c, after)
            limit = c.line.limit
            if limit <= 0:
                continue
            for threshold in self.thresholds:
                if before < threshold * limit <= after:
                    self.events.emit(Event(kind=EventKind.BUDGET_THRESHOLD, budget=c.label,
                                           share=threshold, cost_micros=after,
                                           message=f"{c.label} reached {threshold:.0%} of "
                                                   f"${limit / 1e6:.2f}"))  # fmt: skip

    async def release(self, hold: Hold) -> None:
        """Give the hold back: the call spent nothing."""
        await self.settle(hold, 0)

    def _note(self, counted: _Counted, spent: int) -> None:
        limit, key = counted.line.limit, counted.line.key
        self._spent[key] = spent
        self._shares[key] = spent / limit if limit else 1.0

    def _current(self) -> dict[str, _Counted]:
        """The counters of the current periods: the global ones, and every other one this
        process has used."""
        current = {c.line.key: c for c in self._lines(Who())}
        now = self._clock()
        for key, c in self._seen.items():
            period, _ = self.calendar.period(c.limit.period, now)
            if key.endswith(f"@{period}"):
                current.setdefault(key, c)
        return current

    def last_seen(self) -> list[dict[str, Any]]:
        """What :meth:`snapshot` reports, from what this process last saw of each counter
        (no round trip; other replicas' spend since then is not in it)."""
        return [_row(key, c, self._spent.get(key, 0), 0) for key, c in self._current().items()]

    async def snapshot(self) -> list[dict[str, Any]]:
        """Spend, holds, limit and what remains of each budget in its current period (the
        global ones, and every other one this process has counted against)."""
        current = self._current()
        rows = await self.counters.read(list(current))
        out = []
        for (key, c), (spent, held) in zip(current.items(), rows, strict=True):
            self._note(c, spent)
            out.append(_row(key, c, spent, held))
        return out

    async def aclose(self) -> None:
        await self.counters.aclose()


def _row(key: str, c: _Counted, spent: int, held: int) -> dict[str, Any]:
    return {
        "budget": c.label,
        "period": key.rpartition("@")[2],
        "spent_usd": spent / 1e6,
        "held_usd": held / 1e6,
        "limit_usd": c.line.limit / 1e6,
        "remaining_usd": max(0, c.line.limit - spent - held) / 1e6,
        "resets_at": c.resets_at.isoformat(),
    }


__all__ = ["BudgetPolicy", "Budgets", "Hold"]
