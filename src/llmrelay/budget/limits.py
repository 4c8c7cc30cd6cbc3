"""Budget limits, who a request is spent for, and the calendar periods counters run over."""

from __future__ import annotations

import datetime as dt
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo

import msgspec

from llmrelay.types import ChatRequest

Scope = Literal["global", "key", "user", "tag"]
Period = Literal["day", "month"]
SCOPES: tuple[Scope, ...] = ("global", "key", "user", "tag")
PERIODS: tuple[Period, ...] = ("day", "month")


class BudgetLimit(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """At most ``usd`` per calendar ``period`` for a ``scope``.

    ``scope``: ``global`` (every call), or per ``key``, ``user`` or ``tag`` of the request;
    ``value`` names the one key, user or tag the limit is for — without it, each key
    (user, tag) has a budget of its own.
    """

    usd: float
    period: Period = "day"
    scope: Scope = "global"
    value: str | None = None
    name: str = ""
    """How events and errors name it (default: ``scope[:value]/period``)."""

    def __post_init__(self) -> None:
        if self.usd < 0:
            raise ValueError(f"usd must be >= 0, got {self.usd}")
        if self.scope == "global" and self.value is not None:
            raise ValueError("a global budget takes no value")

    @property
    def micros(self) -> int:
        return round(self.usd * 1_000_000)

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        target = self.scope if self.value is None else f"{self.scope}:{self.value}"
        return f"{target}/{self.period}"

    def subjects(self, who: Who) -> list[str]:
        """The counters of this limit a request of ``who`` is spent against ('' = global)."""
        if self.scope == "global":
            return [""]
        given: tuple[str, ...]
        if self.scope == "tag":
            given = who.tags
        else:
            one = who.key if self.scope == "key" else who.user
            given = (one,) if one else ()
        return [v for v in given if self.value is None or v == self.value]


class Who(NamedTuple):
    """Whom a request is spent for: the caller's key, its user and its tags."""

    key: str | None = None
    user: str | None = None
    tags: tuple[str, ...] = ()

    @classmethod
    def of(cls, request: ChatRequest) -> Who:
        return cls(key=request.key, user=request.user, tags=tuple(request.tags or ()))


class Calendar:
    """The current day and month in one time zone, recomputed only when they end."""

    def __init__(self, timezone: str = "UTC") -> None:
        try:
            self.zone = ZoneInfo(timezone)
        except (KeyError, ValueError) as exc:
            raise ValueError(f"unknown time zone {timezone!r}") from exc
        self.timezone = timezone
        self._cached: dict[Period, tuple[float, float, str, dt.datetime]] = {}

    def period(self, period: Period, now: float) -> tuple[str, dt.datetime]:
        """``(label, resets_at)`` of the period containing ``now`` (epoch seconds):
        ``2026-11-23`` or ``2026-11``, and the aware moment the next one starts."""
        cached = self._cached.get(period)
        if cached is not None and cached[0] <= now < cached[1]:
            return cached[2], cached[3]
        local = dt.datetime.fromtimestamp(now, self.zone)
        if period == "day":
            start = local.replace(hour=0, minute=0, second=0, microsecond=0)
            following = (start.date() + dt.timedelta(days=1)).timetuple()[:3]
            label = start.date().isoformat()
        else:
            start = local.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
            after = start.month % 12 + 1
            following = (start.year + (after == 1), after, 1)
            label = f"{start.year:04d}-{start.month:02d}"
        resets = dt.datetime(*following, tzinfo=self.zone)  # midnight by the zone's rules
        start_s = dt.datetime(*start.timetuple()[:3], tzinfo=self.zone).timestamp()
        self._cached[period] = (start_s, resets.timestamp(), label, resets)
        return label, resets


__all__ = ["PERIODS", "SCOPES", "BudgetLimit", "Calendar", "Period", "Scope", "Who"]
