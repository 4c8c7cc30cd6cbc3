"""Rate limits and the billing ledger of a running simulator.

The ledger bills every served call once, in integer micro-dollars per kind of token (see
:class:`Ledger`); the rest of this module is the limits.

Limits are kept per API key and model, on up to five dimensions (:data:`DIMENSIONS`):
requests, tokens (prompt + ``max_tokens``), input tokens and output tokens (Anthropic's
ITPM and OTPM: the prompt, and ``max_tokens`` reserved at admission), and requests per day.
A request is admitted only when every limited dimension admits its amount; otherwise it
is refused with the seconds until all of them would (the ``retry-after`` the wires send).

Each per-minute limit L is enforced twice, and it is never kinder than the providers:

- **the minute**: a token bucket of L units that refills continuously at L/60 a second,
  as OpenAI and Anthropic document theirs. An amount is admitted when the bucket holds it.
- **the short window**: OpenAI ("60,000 requests/minute may be enforced as 1,000
  requests/second") and Anthropic ("60 RPM may be enforced as 1 request per second")
  enforce the minute's limit over much shorter windows. With a window of w seconds
  (``short_window_s``, default 1.0; 0 turns it off) the capacity is C = L * w / 60, a float
  that may be below 1 (RPM 50 → C = 0.833). Each admitted amount a is recorded at its
  admission time t and *occupies* the window until t + w * max(1, a / C): an amount larger
  than a window's allowance occupies it proportionally longer (RPM 50: one request every
  1.2 s; TPM 60,000 and a 4,000-token request: 4 s). A new amount a is admitted iff the
  amounts still occupying plus a stay within C, or nothing occupies at all — then any
  amount, however large, is admitted if the minute bucket allows it.

Tokens given back later (the unused part of ``max_tokens``, failures) return to the
minute bucket and shrink the entry's recorded amount, which shortens its occupancy
(t + w * max(1, a' / C)); a negative give-back (usage above the reservation) takes more.

Requests per day are a counter that resets at midnight in the provider's time zone, read
from a wall clock (``wall``) so that tests can cross midnight with a fake one.
"""

from __future__ import annotations

import datetime as dt
import math
import time
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal
from zoneinfo import ZoneInfo

from llmrelay.types import Usage

Clock = Callable[[], float]
Dimension = Literal["requests", "tokens", "input_tokens", "output_tokens", "requests_per_day"]
DIMENSIONS: tuple[Dimension, ...] = (
    "requests",
    "tokens",
    "input_tokens",
    "output_tokens",
    "requests_per_day",
)
MINUTE = 60.0
_EPSILON = 1e-9


@dataclass(frozen=True, slots=True)
class Quota:
    """One model's limits, enforced for each API key (``None``: not limited)."""

    rpm: int | None = None
    tpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    rpd: int | None = None
    window_s: float = 0.0
    """The short window in seconds (0: the minute only)."""
    day_zone: str = "UTC"
    """Where the day of ``rpd`` starts."""

    def per_minute(self) -> tuple[tuple[Dimension, int | None], ...]:
        return (
            ("requests", self.rpm),
            ("tokens", self.tpm),
            ("input_tokens", self.itpm),
            ("output_tokens", self.otpm),
        )


@dataclass(slots=True)
class Bucket:
    """A continuously refilling bucket of ``capacity`` units per minute."""

    capacity: float
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.capacity / MINUTE

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 if they are now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def until_full(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(slots=True)
class Entry:
    """One admitted amount in a short window: admitted at ``start``, occupying until ``until``."""

    start: float
    amount: float
    until: float


class ShortWindow:
    """At most ``capacity`` units occupy any ``window`` seconds (see the module docstring)."""

    __slots__ = ("_entries", "capacity", "window")

    def __init__(self, capacity: float, window: float) -> None:
        self.capacity = capacity
        self.window = window
        self._entries: deque[Entry] = deque()

    def __len__(self) -> int:
        """Entries held, including any that left behind a longer-lived one at the front."""
        return len(self._entries)

    def _occupies_until(self, start: float, amount: float) -> float:
        return start + self.window * max(1.0, amount / self.capacity)

    def _live(self, now: float) -> list[Entry]:
        entries = self._entries
        while entries and entries[0].until <= now:  # the front is pruned as entries leave
            entries.popleft()
        return [e for e in entries if e.until > now]

    def wait_for(self, amount: float, now: float) -> float:
        """Seconds until ``amount`` is admitted: when enough of what occupies has left."""
        live = self._live(now)
        used = sum(e.amount for e in live)
        if used <= _EPSILON or used + amount <= self.capacity + _EPSILON:
            return 0.0
        live.sort(key=lambda e: e.until)
        for entry in live:
            used -= entry.amount
            if used <= _EPSILON or used + amount <= self.capacity + _EPSILON:
                return entry.until - now
        return live[-1].until - now

    def add(self, amount: float, now: float) -> Entry:
        entry = Entry(now, amount, self._occupies_until(now, amount))
        self._entries.append(entry)
        return entry

    def resize(self, entry: Entry, amount: float) -> None:
        """Record ``amount`` instead for ``entry``, which moves the end of its occupancy."""
        entry.amount = max(0.0, amount)
        entry.until = self._occupies_until(entry.start, entry.amount)


@dataclass(slots=True)
class Meter:
    """One per-minute dimension of one key and model: its minute bucket and short window."""

    limit: int
    bucket: Bucket
    window: ShortWindow | None

    def wait_for(self, amount: float, now: float) -> float:
        if amount > self.limit:
            return MINUTE  # more than a minute's allowance: it never fits
        wait = self.bucket.wait_for(amount)
        if self.window is not None:
            wait = max(wait, self.window.wait_for(amount, now))
        return wait


@dataclass(slots=True)
class Account:
    """Everything limited for one API key and model."""

    quota: Quota
    meters: dict[Dimension, Meter]
    day: int = 0
    day_used: int = 0


@dataclass(slots=True)
class Admission:
    """An admitted request's hold on its meters, to give back what it did not use."""

    meters: dict[Dimension, Meter]
    entries: dict[Dimension, Entry]


@dataclass(slots=True)
class Refusal:
    """Which limit refused a request, and when the whole request would be admitted."""

    kind: Dimension
    limit: int
    requested: int
    used: int
    retry_after_s: float

    @property
    def too_large(self) -> bool:
        """The request alone exceeds the limit: no wait makes it fit."""
        return self.requested > self.limit

    @property
    def reason(self) -> str:
        return f"429:{self.kind}"


@dataclass(slots=True)
class Gauge:
    """One limit as rate-limit headers report it."""

    limit: int
    remaining: int
    reset_s: float


@dataclass(slots=True)
class Window:
    """What the rate-limit headers of one response report, per limited dimension."""

    gauges: dict[Dimension, Gauge] = field(default_factory=dict)
    wall: float = 0.0
    """When it was taken, in epoch seconds: resets that are instants count from here."""

    def get(self, kind: Dimension) -> Gauge | None:
        return self.gauges.get(kind)


def _amounts(input_tokens: int, output_tokens: int) -> dict[Dimension, float]:
    return {
        "requests": 1.0,
        "tokens": float(input_tokens + output_tokens),
        "input_tokens": float(input_tokens),
        "output_tokens": float(output_tokens),
    }


class Limiter:
    """Minute buckets, short windows and day counters per (API key, model).

    ``clock`` gives monotonic seconds (the buckets and windows); ``wall`` gives epoch
    seconds (which day it is in the provider's time zone).
    """

    def __init__(self, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._accounts: dict[tuple[str, str], Account] = {}

    def reset(self) -> None:
        self._accounts.clear()

    def _account(self, key: str, model: str, quota: Quota, now: float) -> Account:
        account = self._accounts.get((key, model))
        if account is None or account.quota != quota:  # new limits start afresh
            meters: dict[Dimension, Meter] = {}
            for kind, limit in quota.per_minute():
                if limit:
                    capacity = limit * quota.window_s / MINUTE
                    window = ShortWindow(capacity, quota.window_s) if quota.window_s else None
                    meters[kind] = Meter(limit, Bucket(float(limit), float(limit), now), window)
            account = self._accounts[(key, model)] = Account(quota, meters)
        for meter in account.meters.values():
            meter.bucket.refill(now)
        return account

    def _today(self, account: Account) -> float:
        """Roll the day counter over at midnight; return the seconds until the next one."""
        zone = ZoneInfo(account.quota.day_zone)
        moment = dt.datetime.fromtimestamp(self._wall(), zone)
        day = moment.date().toordinal()
        if day != account.day:
            account.day, account.day_used = day, 0
        midnight = dt.datetime.combine(moment.date() + dt.timedelta(days=1), dt.time(), zone)
        return max(0.0, (midnight - moment).total_seconds())

    def admit(
        self, key: str, model: str, quota: Quota, input_tokens: int, output_tokens: int
    ) -> Admission | Refusal:
        """Take one request with its tokens, or say which limit refuses it and for how long.

        ``output_tokens`` is what is reserved for the answer (``max_tokens``, or 0 when the
        request sets none: the answer is then charged when it is complete).
        """
        now = self._clock()
        account = self._account(key, model, quota, now)
        amounts = _amounts(input_tokens, output_tokens)
        worst: Refusal | None = None
        for kind, meter in account.meters.items():
            amount = amounts[kind]
            if amount <= 0:
                continue
            wait = meter.wait_for(amount, now)
            if wait > 0 and (worst is None or wait > worst.retry_after_s):
                used = max(0, math.ceil(meter.limit - meter.bucket.level))
                worst = Refusal(kind, meter.limit, int(amount), used, wait)
        if quota.rpd:
            day_left = self._today(account)
            if account.day_used >= quota.rpd and (worst is None or day_left > worst.retry_after_s):
                worst = Refusal("requests_per_day", quota.rpd, 1, account.day_used, day_left)
        if worst is not None:
            return worst
        entries: dict[Dimension, Entry] = {}
        for kind, meter in account.meters.items():
            amount = amounts[kind]
            meter.bucket.level -= amount
            if meter.window is not None and amount > 0:
                entries[kind] = meter.window.add(amount, now)
        account.day_used += 1
        return Admission(dict(account.meters), entries)

    def give_back(self, admission: Admission, input_tokens: int, output_tokens: int) -> None:
        """Return tokens taken but not used (unused ``max_tokens``, failures).

        Negative amounts take more: an answer longer than what was reserved for it.
        """
        if not input_tokens and not output_tokens:
            return
        now = self._clock()
        amounts = _amounts(input_tokens, output_tokens)
        for kind, meter in admission.meters.items():
            amount = amounts[kind] if kind != "requests" else 0.0
            if not amount:
                continue
            meter.bucket.refill(now)
            meter.bucket.level = min(meter.bucket.capacity, meter.bucket.level + amount)
            entry = admission.entries.get(kind)
            if entry is not None and meter.window is not None:
                meter.window.resize(entry, entry.amount - amount)

    def window(self, key: str, model: str, quota: Quota) -> Window:
        """The minute buckets' state, as the rate-limit headers report it."""
        account = self._account(key, model, quota, self._clock())
        out = Window(wall=self._wall())
        for kind, meter in account.meters.items():
            bucket = meter.bucket
            out.gauges[kind] = Gauge(meter.limit, max(0, int(bucket.level)), bucket.until_full())
        if quota.rpd:
            day_left = self._today(account)
            out.gauges["requests_per_day"] = Gauge(
                quota.rpd, max(0, quota.rpd - account.day_used), day_left
            )
        return out


@dataclass(slots=True)
class LedgerEntry:
    """What one API key was served by one model, and billed.

    ``input_tokens`` counts every prompt token; ``cached_input_tokens`` (read from the
    prompt cache) and ``cache_write_input_tokens`` (written to it) are parts of it.
    ``cost_micros`` is the sum of each call's exact cost in integer micro-dollars.
    """

    requests: int = 0
    input_tokens: int = 0
    cached_input_tokens: int = 0
    cache_write_input_tokens: int = 0
    output_tokens: int = 0
    cost_micros: int = 0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    refused_by_limit: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, usage: Usage, cost_micros: int, requests: int = 1) -> None:
        self.requests += requests
        self.input_tokens += usage.input_tokens
        self.cached_input_tokens += usage.cached_input_tokens
        self.cache_write_input_tokens += usage.cache_write_input_tokens
        self.output_tokens += usage.output_tokens
        self.cost_micros += cost_micros

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "cached_input_tokens": self.cached_input_tokens,
            "cache_write_input_tokens": self.cache_write_input_tokens,
            "output_tokens": self.output_tokens,
            "cost_micros": self.cost_micros,
            "cost_usd": self.cost_micros / 1_000_000,
            "refused": dict(self.refused),
            "refused_by_limit": dict(self.refused_by_limit),
        }


class Ledger:
    """What was served, billed and refused, per API key and model.

    Each served call is billed once, when it ends, at the model's
    :class:`~llmrelay.catalog.Price` (``Price.micros``: every kind of token at its rate,
    rounded up to a whole micro-dollar per call). ``refused`` counts refusals by status
    (``"429"``, ``"400"``…) and injected fault (``"fault:500"``); ``refused_by_limit`` says
    which limit gave each 429 (``"429:requests"``, ``"429:tokens"``,
    ``"429:input_tokens"``, ``"429:output_tokens"``, ``"429:requests_per_day"``).
    """

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LedgerEntry] = {}

    def reset(self) -> None:
        self._entries.clear()

    def _entry(self, key: str, model: str) -> LedgerEntry:
        entry = self._entries.get((key, model))
        if entry is None:
            entry = self._entries[(key, model)] = LedgerEntry()
        return entry

    def served(self, key: str, model: str, usage: Usage, cost_micros: int) -> None:
        """Bill one served call: its usage and its cost in micro-dollars."""
        self._entry(key, model).add(usage, cost_micros)

    def refused(self, key: str, model: str, reason: str) -> None:
        self._entry(key, model).refused[reason] += 1

    def limited(self, key: str, model: str, refusal: Refusal) -> None:
        """Count a 429 from a limit, and which limit gave it."""
        entry = self._entry(key, model)
        entry.refused["429"] += 1
        entry.refused_by_limit[refusal.reason] += 1

    def report(self) -> dict[str, Any]:
        """``{"keys": {key: {model: entry}}, "totals": {...}}`` as JSON-ready data."""
        keys: dict[str, dict[str, Any]] = {}
        totals = LedgerEntry()
        for (key, model), entry in sorted(self._entries.items()):
            keys.setdefault(key, {})[model] = entry.as_dict()
            usage = Usage(
                input_tokens=entry.input_tokens,
                cached_input_tokens=entry.cached_input_tokens,
                cache_write_input_tokens=entry.cache_write_input_tokens,
                output_tokens=entry.output_tokens,
            )
            totals.add(usage, entry.cost_micros, entry.requests)
            for reason, count in entry.refused.items():
                totals.refused[reason] += count
            for reason, count in entry.refused_by_limit.items():
                totals.refused_by_limit[reason] += count
        return {"keys": keys, "totals": totals.as_dict()}
