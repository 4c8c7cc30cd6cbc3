"""A load balancer that learns from analytics which deployment of a group serves best.

Each deployment gets a utility in [0, 1] from its recorded figures over a recent window::

    utility = (1 - error_rate) * (wq * quality + wc * cheapness + ws * speed) / (wq + wc + ws)

where ``quality`` is its mean quality (0.5 when unscored); ``cheapness`` is
``1 / (1 + log2(its mean cost / the cheapest))``, 1 for the cheapest, 1/2 for twice its
cost, and ``speed`` the same of its median answer time against the fastest. Costs and
times span orders of magnitude, hence the logarithm; the cheapest and fastest are taken
among deployments with at least 10 answers, so that a few lucky ones set no bar. Missing
figures count 0.5. Each request then orders the deployments by Thompson sampling:
a draw from Beta(1 + n·utility, 1 + n·(1 - utility)) each, highest first, with ``n`` its
answered requests capped at ``memory`` so that the evidence never grows so certain that a
deployment stops being tried. With probability ``explore`` the order is a plain shuffle
instead; a deployment with no history draws from Beta(1, 1) and so is tried often.

The figures are read again every ``refresh_s`` seconds on a thread of the balancer's own,
never on the request's path: :meth:`LearnedBalancer.order` only reads what is loaded.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, TypeVar

import msgspec

from llmrelay.analytics.queries import Analytics, DeploymentStats

if TYPE_CHECKING:
    from llmrelay.routing.candidate import Candidate

log = logging.getLogger("llmrelay.analytics")
C = TypeVar("C", bound="Candidate")
TRUSTED = 10
"""Answers a deployment needs before its cost or speed can be the bar others are held to."""


class LearnedSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``load_balancing: learned`` — how a group's deployments are weighed."""

    quality: float = 1.0
    """Weight of mean quality in a deployment's utility."""
    cost: float = 1.0
    """Weight of cheapness (the cheapest mean cost over its own)."""
    speed: float = 1.0
    """Weight of speed (the fastest median answer time over its own)."""
    explore: float = 0.05
    """Share of requests given a uniformly random order."""
    memory: int = 200
    """Answered requests counted as evidence at most, per deployment."""
    window_s: float = 7 * 86400.0
    """How far back the figures are read."""
    refresh_s: float = 60.0
    """How often the figures are read again."""
    task: str | None = None
    """Only requests of this task count (``None``: every request of the group)."""

    def __post_init__(self) -> None:
        if min(self.quality, self.cost, self.speed) < 0 or not (
            self.quality + self.cost + self.speed > 0
        ):
            raise ValueError("quality, cost and speed weights must be >= 0, not all 0")
        if not 0 <= self.explore <= 1:
            raise ValueError(f"explore must be in [0, 1], got {self.explore}")
        if self.memory < 1 or not self.window_s > 0 or not self.refresh_s > 0:
            raise ValueError("memory must be >= 1, window_s and refresh_s > 0")


class Arm(msgspec.Struct, frozen=True, kw_only=True):
    """What is believed of one deployment: its utility and how much evidence backs it."""

    utility: float
    evidence: float

    def draw(self, rng: random.Random) -> float:
        return rng.betavariate(1 + self.evidence * self.utility,
                               1 + self.evidence * (1 - self.utility))  # fmt: skip


def relative(value: float, best: float) -> float:
    """``1 / (1 + log2(value / best))``: 1 at or below ``best``, 1/2 at twice it."""
    return 1.0 / (1.0 + math.log2(max(value, best) / best))


def arms(stats: Sequence[DeploymentStats], settings: LearnedSettings) -> dict[str, Arm]:
    """Each deployment's :class:`Arm` from its figures (see the module's formula)."""
    trusted = [s for s in stats if s.answered >= TRUSTED] or list(stats)
    costs = [s.mean_cost_micros + 1 for s in trusted if s.mean_cost_micros is not None]
    times = [s.latency_p50_s for s in trusted if s.latency_p50_s]
    total = settings.quality + settings.cost + settings.speed
    out = {}
    for s in stats:
        quality = s.quality_mean if s.quality_mean is not None else 0.5
        cheap = 0.5
        if s.mean_cost_micros is not None and costs:
            cheap = relative(s.mean_cost_micros + 1, min(costs))
        fast = relative(s.latency_p50_s, min(times)) if s.latency_p50_s and times else 0.5
        mix = (settings.quality * quality + settings.cost * cheap + settings.speed * fast) / total
        success = 1 - s.error_rate if s.error_rate is not None else 1.0
        utility = min(1.0, max(0.0, success * mix))
        out[s.deployment] = Arm(utility=utility, evidence=float(min(s.answered, settings.memory)))
    return out


class LearnedBalancer:
    """Orders a group's deployments by what analytics says of them (see the module)."""

    def __init__(
        self,
        analytics: Analytics,
        *,
        group: str | None = None,
        settings: LearnedSettings | None = None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.analytics = analytics
        self.group = group
        self.settings = settings or LearnedSettings()
        self._rng = rng or random.Random()
        self._clock = clock
        self._arms: dict[str, Arm] = {}
        self._next = -math.inf
        self._refreshing: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def arms(self) -> dict[str, Arm]:
        """What is believed of each deployment now."""
        return dict(self._arms)

    def refresh(self) -> None:
        """Read the figures again, now, on the calling thread."""
        s = self.settings
        stats = self.analytics.stats(timedelta(seconds=s.window_s), task=s.task,
                                     group=self.group, by=("deployment",))  # fmt: skip
        self._arms = arms(stats, s)
        self._next = self._clock() + s.refresh_s

    def _refresh_quietly(self) -> None:
        try:
            self.refresh()
        except Exception:
            self._next = self._clock() + self.settings.refresh_s
            log.warning("learned balancer: could not read analytics", exc_info=True)

    def _maybe_refresh(self) -> None:
        if self._clock() < self._next:
            return
        with self._lock:
            if self._refreshing is not None and self._refreshing.is_alive():
                return
            self._next = self._clock() + self.settings.refresh_s  # one refresh at a time
            self._refreshing = threading.Thread(target=self._refresh_quietly, daemon=True,
                                                name="llmrelay-learned-balancer")  # fmt: skip
            self._refreshing.start()

    def order(self, candidates: Sequence[C]) -> list[C]:
        self._maybe_refresh()
        if self._rng.random() < self.settings.explore:
            shuffled = list(candidates)
            self._rng.shuffle(shuffled)
            return shuffled
        unknown = Arm(utility=0.5, evidence=0.0)
        known = self._arms
        draws = {id(c): known.get(c.id, unknown).draw(self._rng) for c in candidates}
        return sorted(candidates, key=lambda c: -draws[id(c)])

    def close(self) -> None:
        """Wait for a refresh under way and close the analytics this balancer reads."""
        thread = self._refreshing
        if thread is not None:
            thread.join()
        self.analytics.close()


__all__ = ["TRUSTED", "Arm", "LearnedBalancer", "LearnedSettings", "arms", "relative"]
