"""What a deployment's limits are, and the arithmetic both limiter backends share.

A deployment has up to five limits, always in this order (:data:`DIMENSIONS`):

- ``rpm``, ``tpm``, ``itpm``, ``otpm`` — requests, tokens, input tokens and output tokens per
  minute. Each is a bucket that holds one minute's allowance and refills continuously,
  which is how OpenAI and Anthropic document theirs. A request takes its units when it is
  sent; what it did not use comes back when it finishes.
- the same allowance over a **short window** (``short_window_s``, default 1 s): OpenAI and
  Anthropic say a minute's limit may be enforced per second ("60 RPM may be enforced as
  1 request per second"), so at most limit * window / 60 units go in any window. This is
  a sliding window, the strictest reading: a bucket of the same size would let twice that
  through within one window. Each amount *a* occupies the window for
  ``window * max(1, a / capacity)`` — a request larger than a window's allowance (RPM 50:
  0.83 requests a second) occupies it proportionally longer — and a new amount fits when
  what still occupies plus it stays within the capacity, or when nothing occupies at all.
  Entries are held ``window_pad`` (3 %) longer than the provider holds them, counted
  from the moment each request is sent, because requests reach it a little after they
  leave (a burst opening new connections: tens of milliseconds); the pad is the window's
  only margin, so steady throughput is 1 / 1.03 = 97 % of the limit. A 429 that the
  window did not predict doubles the pad (see ``memory.tightened``).
- ``rpd`` — requests per day, a counter that resets at midnight in the provider's time zone
  (Gemini: Pacific time).

The seeds' policy is here as configuration: ``safety_margin`` keeps that many requests of
headroom under the RPM and RPD limits (default 2), and ``min_spacing`` sends at most one
request every 60/RPM seconds (no bursts). Token limits keep ``token_margin`` (default
1 %) in hand: the provider's clock runs behind ours by the network and queueing delay, and
requests sent exactly at the refill rate can reach it closer together than they left; 1 %
of a minute's allowance absorbs 0.6 s of such skew. A margin shrinks only the burst, never
the refill rate, so steady-state throughput stays at the full limit.
"""

from __future__ import annotations

import datetime as dt
import math
from zoneinfo import ZoneInfo

import msgspec

DIMENSIONS = ("rpm", "tpm", "itpm", "otpm", "rpd")
RPM, TPM, ITPM, OTPM, RPD = range(5)
ROLLING = (RPM, TPM, ITPM, OTPM)
MINUTE = 60.0
DAY = 86_400.0

Amounts = tuple[float, float, float, float, float]
"""Units of each dimension, in :data:`DIMENSIONS` order."""


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment's rate limits (``None``: not limited on that dimension)."""

    rpm: int | None = None
    tpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    rpd: int | None = None
    safety_margin: int = 2
    token_margin: float = 0.01
    min_spacing: bool = False
    short_window_s: float = 1.0
    """Also pace to this window, at most limit/60 per second of it (0: the minute only)."""
    window_pad: float = 0.03
    """Short-window entries are held this share of the window longer than the provider holds
    them: requests reach the provider a little after they leave."""
    day_reset_tz: str = "UTC"

    def __post_init__(self) -> None:
        for name in DIMENSIONS:
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if self.safety_margin < 0:
            raise ValueError(f"safety_margin must be >= 0, got {self.safety_margin}")
        if not 0 <= self.token_margin < 0.5:
            raise ValueError(f"token_margin must be in [0, 0.5), got {self.token_margin}")
        if self.short_window_s < 0 or self.short_window_s > MINUTE:
            raise ValueError(f"short_window_s must be in [0, 60], got {self.short_window_s}")
        if not 0 <= self.window_pad < 1:
            raise ValueError(f"window_pad must be in [0, 1), got {self.window_pad}")
        try:
            ZoneInfo(self.day_reset_tz)
        except (KeyError, ValueError):
            raise ValueError(f"day_reset_tz: unknown time zone {self.day_reset_tz!r}") from None

    @property
    def is_unlimited(self) -> bool:
        return all(getattr(self, name) is None for name in DIMENSIONS)

    def plan(self) -> Plan:
        """The buckets these limits make: capacities after the margin, refill rates."""
        caps = [float(getattr(self, name) or 0) for name in DIMENSIONS]
        rates = [caps[i] / MINUTE for i in ROLLING]
        for i in (RPM, RPD):
            if caps[i]:
                caps[i] = max(1.0, caps[i] - self.safety_margin)
        for i in (TPM, ITPM, OTPM):
            caps[i] = math.floor(caps[i] * (1 - self.token_margin))
        if self.min_spacing and caps[RPM]:
            caps[RPM] = 1.0
        return Plan(
            caps=(caps[0], caps[1], caps[2], caps[3], caps[4]),
            rates=(rates[0], rates[1], rates[2], rates[3]),
            margin=self.safety_margin,
            token_margin=self.token_margin,
            day_tz=self.day_reset_tz,
            window=self.short_window_s,
            pad=self.window_pad,
        )


class Plan(msgspec.Struct, frozen=True):
    """Resolved buckets: ``caps`` (0 = no limit) and per-second ``rates`` of the rolling ones."""

    caps: Amounts
    rates: tuple[float, float, float, float]
    margin: int = 0
    token_margin: float = 0.0
    day_tz: str = "UTC"
    window: float = 0.0
    """The short window in seconds (0: the minute only)."""
    pad: float = 0.0

    def day(self, wall: float) -> tuple[int, float]:
        """Today's number in the reset time zone, and seconds until tomorrow starts there.

        Without a daily limit the day does not matter (and time-zone arithmetic is the
        costliest part of a decision), so it is not computed.
        """
        if not self.caps[RPD]:
            return 0, DAY
        now = dt.datetime.fromtimestamp(wall, ZoneInfo(self.day_tz))
        tomorrow = dt.datetime.combine(
            now.date() + dt.timedelta(days=1), dt.time(), tzinfo=now.tzinfo
        )
        return now.date().toordinal(), max(0.0, (tomorrow - now).total_seconds())


Occupancy = tuple[tuple[float, float], ...]
"""What occupies one dimension's short window: (seconds until it leaves, amount), soonest first."""


class Days:
    """:meth:`Plan.day` with each day's answer kept until the day ends.

    Time-zone arithmetic costs a few microseconds and a decision needs it every time a
    daily limit exists; the day number changes once a day. An answer is reused only
    between the instant it was worked out and the day's end, so a clock that goes back
    makes it be worked out again.
    """

    __slots__ = ("_known",)

    def __init__(self) -> None:
        self._known: dict[str, tuple[int, float, float]] = {}

    def __call__(self, plan: Plan, wall: float) -> tuple[int, float]:
        if not plan.caps[RPD]:
            return 0, DAY
        known = self._known.get(plan.day_tz)
        if known is None or not known[1] <= wall < known[2]:
            day, left = plan.day(wall)
            known = self._known[plan.day_tz] = (day, wall, wall + left)
        return known[0], known[2] - wall


class Snapshot(msgspec.Struct, frozen=True):
    """One deployment's limiter state at a moment: what the scheduler projects waits from."""

    levels: tuple[float, float, float, float]
    caps: Amounts
    rates: tuple[float, float, float, float]
    day_used: float
    day_left_s: float
    blocked_for: float
    window: float = 0.0
    """How long a unit amount occupies the short window, padded (0: no short window)."""
    short_caps: tuple[float, float, float, float] = (0.0, 0.0, 0.0, 0.0)
    """Each dimension's short-window capacity (0: none)."""
    occupancy: tuple[Occupancy, Occupancy, Occupancy, Occupancy] = ((), (), (), ())

    def wait_for(self, amounts: Amounts, ahead: Amounts | None = None) -> float:
        """Seconds until ``amounts`` fit after what is queued ``ahead`` of them.

        0 means now; ``inf`` means never: ``amounts`` alone exceed a limit.
        """
        total = amounts if ahead is None else add(ahead, amounts)
        wait = self.blocked_for
        for i in ROLLING:
            cap, need = self.caps[i], total[i]
            if not cap or amounts[i] <= 0:
                continue
            if amounts[i] > cap:
                return math.inf
            if need > self.levels[i]:
                wait = max(wait, (need - self.levels[i]) / self.rates[i])
            short = self.short_caps[i]
            if short:
                wait = max(wait, window_wait(self.occupancy[i], short, amounts[i]))
                if ahead is not None and need > short:  # the queue ahead goes first, paced
                    wait = max(wait, (need - short) * self.window / short)
        cap, need = self.caps[RPD], total[RPD]
        if cap and amounts[RPD] > 0:
            if amounts[RPD] > cap:
                return math.inf
            over = self.day_used + need - cap
            if over > 0:
                wait = max(wait, self.day_left_s + DAY * (math.ceil(over / cap) - 1))
        return wait

    def exceeded(self, amounts: Amounts) -> str | None:
        """The first limit ``amounts`` can never fit under, as a sentence, else ``None``."""
        for i in range(len(DIMENSIONS)):
            if self.caps[i] and amounts[i] > self.caps[i]:
                return f"it needs {amounts[i]:.0f} {_UNITS[i]} but the limit is {self.caps[i]:.0f}"
        return None


_UNITS = (
    "requests/min",
    "tokens/min",
    "input tokens/min",
    "output tokens/min",
    "requests/day",
)


_EPSILON = 1e-9


def short_caps(
    plan: Plan, caps: Amounts, rates: tuple[float, float, float, float], window: float
) -> tuple[float, float, float, float]:
    """Each limited dimension's short-window capacity: its per-second rate times ``window``."""
    if not window:
        return (0.0, 0.0, 0.0, 0.0)
    out = [rates[i] * window if caps[i] else 0.0 for i in ROLLING]
    return (out[0], out[1], out[2], out[3])


def window_wait(occupancy: Occupancy, capacity: float, amount: float) -> float:
    """Seconds until ``amount`` fits a short window of ``capacity`` (see the module docstring)."""
    used = sum(a for _, a in occupancy)
    if used <= _EPSILON or used + amount <= capacity + _EPSILON:
        return 0.0
    for leaves_in, a in occupancy:
        used -= a
        if used <= _EPSILON or used + amount <= capacity + _EPSILON:
            return max(0.0, leaves_in)
    return max(0.0, occupancy[-1][0])


def occupies(amount: float, capacity: float, window: float) -> float:
    """How long ``amount`` occupies a short window of ``capacity`` units."""
    return window * max(1.0, amount / capacity) if capacity else 0.0


def add(a: Amounts, b: Amounts) -> Amounts:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2], a[3] + b[3], a[4] + b[4])


def cost(input_tokens: int, output_tokens: int, requests: int = 1) -> Amounts:
    """The units one request takes: itself, its tokens, input and output separately."""
    return (
        float(requests),
        float(input_tokens + output_tokens),
        float(input_tokens),
        float(output_tokens),
        float(requests),
    )


ZERO: Amounts = (0.0, 0.0, 0.0, 0.0, 0.0)

__all__ = [
    "DIMENSIONS",
    "ZERO",
    "Amounts",
    "Days",
    "Limits",
    "Occupancy",
    "Plan",
    "Snapshot",
    "add",
    "cost",
    "occupies",
    "short_caps",
    "window_wait",
]
