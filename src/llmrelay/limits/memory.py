"""The in-process limiter backend: one process, no dependencies, the reference behaviour.

:mod:`llmrelay.limits.redis` runs the same arithmetic as Lua scripts inside Redis; the
backend tests run one suite against both.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from llmrelay.limits.plan import (
    ITPM,
    OTPM,
    ROLLING,
    RPD,
    RPM,
    TPM,
    Amounts,
    Days,
    Occupancy,
    Plan,
    Snapshot,
    occupies,
    short_caps,
)
from llmrelay.types import RateLimitInfo

Clock = Callable[[], float]

UNCONFIRMED_GRACE_S = 2.0
"""Seconds after a deployment's first reservation during which, until the provider has
answered, its buckets are not refilled (the provider may not have seen the request yet)."""

DEFAULT_WINDOW_S = 1.0
"""The short window a deployment paced to the minute only learns first."""
MAX_PAD = 0.25
"""Learning doubles a short window's pad up to this share of the window."""


def tightened(window: float, pad: float) -> tuple[float, float]:
    """The stricter (window, pad) after a 429 that the limiter did not predict.

    Paced to the minute only, the deployment learns the 1-s window providers document.
    Already paced to a window, the 429 says entries left our window before the provider's:
    requests reached it later than we thought, so each is held longer (the pad doubles).
    Halving the window instead would shrink the absolute pad and make things worse.
    """
    if not window:
        return DEFAULT_WINDOW_S, pad
    return window, min(MAX_PAD, max(2 * pad, 0.01))


@dataclass(slots=True)
class _State:
    """One deployment's buckets. ``nan`` levels are buckets not yet seen (start full).

    Until the provider has answered (reconcile, release or headers ``confirmed`` it), we
    cannot know when its bucket started refilling — a burst's first request may reach it
    long after we reserved it — and crediting refill from our own first reservation would
    run ahead of the provider. So an unconfirmed bucket credits no refill for
    :data:`UNCONFIRMED_GRACE_S` after its ``origin``; the first answer ends the grace.
    """

    levels: list[float] = field(default_factory=lambda: [math.nan] * 4)
    stamp: float = 0.0
    learned_caps: list[float] = field(default_factory=lambda: [0.0] * 5)
    learned_rates: list[float] = field(default_factory=lambda: [0.0] * 4)
    day: int = 0
    day_used: float = 0.0
    blocked_until: float = 0.0
    confirmed: bool = False
    origin: float = 0.0
    effective: tuple[Plan, Amounts, tuple[float, float, float, float]] | None = None
    """Caps and rates in force for a plan (learned ones win), kept until either changes."""
    entries: dict[str, list[float]] = field(default_factory=dict)
    """The short window's log: reservation id → [time taken, amount of each rolling limit]."""
    learned_window: float = 0.0
    """A short window learned from an unpredicted 429 (0: the plan's)."""
    learned_pad: float = 0.0
    """A longer pad learned from an unpredicted 429 (0: the plan's)."""
    used: list[float] = field(default_factory=lambda: [0.0] * 4)
    """What the entries of the short window's log add up to, per rolling limit."""

    def _effective(self, plan: Plan) -> tuple[Plan, Amounts, tuple[float, float, float, float]]:
        found = self.effective
        if found is None or found[0] is not plan:
            c = [self.learned_caps[i] or plan.caps[i] for i in range(5)]
            r = [self.learned_rates[i] or plan.rates[i] for i in range(4)]
            found = self.effective = (
                plan,
                (c[0], c[1], c[2], c[3], c[4]),
                (r[0], r[1], r[2], r[3]),
            )
        return found

    def caps(self, plan: Plan) -> Amounts:
        return self._effective(plan)[1]

    def rates(self, plan: Plan) -> tuple[float, float, float, float]:
        return self._effective(plan)[2]

    def refill(self, plan: Plan, now: float, day: int) -> None:
        caps, rates = self.caps(plan), self.rates(plan)
        start = self.stamp if self.confirmed else max(self.stamp, self.origin + UNCONFIRMED_GRACE_S)
        elapsed = max(0.0, now - start)
        for i in ROLLING:
            level = self.levels[i]
            if not caps[i]:
                self.levels[i] = math.nan
            elif math.isnan(level):
                self.levels[i] = caps[i]
            else:
                self.levels[i] = min(caps[i], level + elapsed * rates[i])
        self.stamp = now
        if day != self.day:
            self.day, self.day_used = day, 0.0

    def window(self, plan: Plan) -> float:
        return self.learned_window or plan.window

    def pad(self, plan: Plan) -> float:
        return self.learned_pad or plan.pad

    def has_room(self, plan: Plan, amounts: Amounts, now: float) -> bool:
        """Whether ``amounts`` surely fit the short window now (the cheap test; when it says
        no, :meth:`snapshot` works out the exact wait).

        The log's head is pruned while it has left the window, and what remains is summed;
        an entry that has left but sits behind one that has not is still counted, so a yes
        is always right.
        """
        window = self.window(plan)
        if not window:
            return True
        caps, rates = self.caps(plan), self.rates(plan)
        shorts = short_caps(plan, caps, rates, window)
        padded = window * (1 + self.pad(plan))
        gone = []
        for ident, entry in self.entries.items():
            if any(
                shorts[i] and entry[i + 1] > 0
                and entry[0] + occupies(entry[i + 1], shorts[i], padded) > now
                for i in ROLLING
            ):  # fmt: skip
                break
            gone.append(ident)
        for ident in gone:
            self._drop(ident)
        used = self.used
        return all(
            not shorts[i] or amounts[i] <= 0 or used[i] + amounts[i] <= shorts[i] + 1e-9
            for i in ROLLING
        )

    def _drop(self, ident: str) -> None:
        entry = self.entries.pop(ident)
        for i in ROLLING:
            self.used[i] -= entry[i + 1]

    def snapshot(
        self, plan: Plan, now: float, day_left: float, *, window_checked: bool = False
    ) -> Snapshot:
        """The state now; ``window_checked``: the short window is known to have room, so its
        occupancy is not worked out (and not checked again)."""
        levels = (self.levels[0], self.levels[1], self.levels[2], self.levels[3])
        caps, rates = self.caps(plan), self.rates(plan)
        window = 0.0 if window_checked else self.window(plan)
        shorts = short_caps(plan, caps, rates, window)
        padded = window * (1 + self.pad(plan))
        return Snapshot(
            levels=levels,
            caps=caps,
            rates=rates,
            day_used=self.day_used,
            day_left_s=day_left,
            blocked_for=max(0.0, self.blocked_until - now),
            window=padded,
            short_caps=shorts,
            occupancy=self._occupancy(shorts, padded, now) if window else ((), (), (), ()),
        )

    def _occupancy(
        self, shorts: tuple[float, float, float, float], window: float, now: float
    ) -> tuple[Occupancy, Occupancy, Occupancy, Occupancy]:
        """What occupies each short window now; entries that left every window are dropped."""
        out: list[list[tuple[float, float]]] = [[], [], [], []]
        gone = []
        for ident, entry in self.entries.items():
            present = False
            for i in ROLLING:
                amount = entry[i + 1]
                if shorts[i] and amount > 0:
                    left = entry[0] + occupies(amount, shorts[i], window) - now
                    if left > 0:
                        out[i].append((left, amount))
                        present = True
            if not present:
                gone.append(ident)
        for ident in gone:
            del self.entries[ident]
        self.used = [sum(entry[i + 1] for entry in self.entries.values()) for i in ROLLING]
        occ = [tuple(sorted(o)) for o in out]
        return (occ[0], occ[1], occ[2], occ[3])

    def take(self, amounts: Amounts, ident: str, now: float, plan: Plan) -> None:
        for i in ROLLING:
            self.levels[i] -= amounts[i]
        self.day_used += amounts[RPD]
        if self.window(plan):
            self.entries[ident] = [now, amounts[0], amounts[1], amounts[2], amounts[3]]
            for i in ROLLING:
                self.used[i] += amounts[i]

    def give(self, plan: Plan, amounts: Amounts, ident: str) -> None:
        self.confirmed = True
        caps = self.caps(plan)
        for i in ROLLING:
            self.levels[i] = min(caps[i], self.levels[i] + amounts[i])
        self.day_used = max(0.0, self.day_used - amounts[RPD])
        entry = self.entries.get(ident)
        if entry is not None:
            for i in ROLLING:
                kept = max(0.0, entry[i + 1] - amounts[i])
                self.used[i] += kept - entry[i + 1]
                entry[i + 1] = kept

    def observe(self, plan: Plan, info: RateLimitInfo) -> None:
        """Adopt the limits a provider reports, and never believe in more room than it has."""
        self.confirmed = True
        margin = float(plan.margin)
        if info.requests_limit:
            # A configured capacity of 1 (min_spacing) stays 1: only the rate is learned.
            spaced = plan.caps[RPM] == 1.0
            cap = 1.0 if spaced else max(1.0, info.requests_limit - margin)
            self._learn(plan, RPM, cap, info.requests_limit / 60.0)
        if info.requests_remaining is not None:
            self._lower(RPM, info.requests_remaining - margin)
        for i, limit, remaining in _token_figures(plan, info):
            if limit:
                self._learn(plan, i, math.floor(limit * (1 - plan.token_margin)), limit / 60.0)
            if remaining is not None:
                cap = self.caps(plan)[i]
                held = cap / (1 - plan.token_margin) * plan.token_margin if cap else 0.0
                self._lower(i, remaining - held)

    def _learn(self, plan: Plan, i: int, cap: float, rate: float) -> None:
        """Adopt a reported limit; the caps in force are worked out again only if it is new."""
        if self.learned_caps[i] != cap or self.learned_rates[i] != rate:
            self.learned_caps[i], self.learned_rates[i] = cap, rate
            self.effective = None
        level = self.levels[i]
        if not math.isnan(level):
            self.levels[i] = min(level, self.caps(plan)[i])

    def _lower(self, i: int, remaining: float) -> None:
        level = self.levels[i]
        self.levels[i] = remaining if math.isnan(level) else min(level, remaining)


def _token_figures(plan: Plan, info: RateLimitInfo) -> list[tuple[int, int | None, int | None]]:
    """Which bucket each reported token figure governs: (dimension, limit, remaining).

    Anthropic reports input and output tokens apart (ITPM, OTPM) and their sum as "tokens";
    the sum governs TPM only. Where only input tokens are limited and no separate figure
    came, a combined figure governs that bucket instead.
    """
    figures = [
        (ITPM, info.input_tokens_limit, info.input_tokens_remaining),
        (OTPM, info.output_tokens_limit, info.output_tokens_remaining),
    ]
    separate = info.input_tokens_limit is not None or info.input_tokens_remaining is not None
    if not separate:
        combined = ITPM if not plan.caps[TPM] and plan.caps[ITPM] else TPM
        figures = [(combined, info.tokens_limit, info.tokens_remaining)]
    elif plan.caps[TPM]:
        figures.append((TPM, info.tokens_limit, info.tokens_remaining))
    return figures


class MemoryBackend:
    """Limiter state in this process (``clock``: monotonic seconds; ``wall``: epoch seconds)."""

    shared = False

    def __init__(self, clock: Clock = time.monotonic, wall: Clock = time.time) -> None:
        self._clock = clock
        self._wall = wall
        self._states: dict[str, _State] = {}
        self._days = Days()

    def _state(self, key: str, plan: Plan) -> tuple[_State, float, float]:
        now = self._clock()
        day, day_left = self._days(plan, self._wall())
        state = self._states.get(key)
        if state is None:
            state = self._states[key] = _State(stamp=now, day=day, origin=now)
        state.refill(plan, now, day)
        return state, now, day_left

    async def reserve(self, key: str, plan: Plan, amounts: Amounts, ident: str) -> float:
        """Take ``amounts`` as reservation ``ident`` and return 0, or return the seconds until
        they would fit."""
        state, now, day_left = self._state(key, plan)
        room = state.has_room(plan, amounts, now)
        wait = state.snapshot(plan, now, day_left, window_checked=room).wait_for(amounts)
        if wait <= 0:
            state.take(amounts, ident, now, plan)
        return wait

    async def give(
        self,
        key: str,
        plan: Plan,
        amounts: Amounts,
        ident: str,
        info: RateLimitInfo | None = None,
    ) -> None:
        """Return units of reservation ``ident`` (negative units take more: usage above the
        reservation), then adopt what the answer's headers report, if any."""
        state, _, _ = self._state(key, plan)
        state.give(plan, amounts, ident)
        if info is not None:
            state.observe(plan, info)

    async def stamp(self, key: str, plan: Plan, ident: str) -> None:
        """Restart reservation ``ident``'s short-window occupancy now (it is being sent)."""
        state = self._states.get(key)
        entry = state.entries.get(ident) if state is not None else None
        if entry is not None:
            entry[0] = self._clock()

    async def tighten(self, key: str, plan: Plan) -> float:
        """Pace to a stricter short window from now on; return how long an entry now
        occupies it (seconds, padded)."""
        state, _, _ = self._state(key, plan)
        state.learned_window, state.learned_pad = tightened(state.window(plan), state.pad(plan))
        return state.learned_window * (1 + state.learned_pad)

    async def observe(self, key: str, plan: Plan, info: RateLimitInfo) -> None:
        state, _, _ = self._state(key, plan)
        state.observe(plan, info)

    async def block(self, key: str, plan: Plan, seconds: float) -> None:
        state, now, _ = self._state(key, plan)
        state.blocked_until = max(state.blocked_until, now + seconds)

    async def snapshot(self, key: str, plan: Plan) -> Snapshot:
        state, now, day_left = self._state(key, plan)
        return state.snapshot(plan, now, day_left)

    async def aclose(self) -> None:
        self._states.clear()


__all__ = ["DEFAULT_WINDOW_S", "MAX_PAD", "UNCONFIRMED_GRACE_S", "Clock", "MemoryBackend",
           "tightened"]  # fmt: skip
