"""Load balancing among the deployments of one model group: the order to try them in."""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Protocol

from llmrelay.routing.candidate import Candidate


class Balancer(Protocol):
    """Orders a group's deployments for one request (the first is tried first)."""

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]: ...


class RoundRobin:
    """Each request starts one deployment further along."""

    def __init__(self) -> None:
        self._turn = itertools.count()

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        if not candidates:
            return []
        start = next(self._turn) % len(candidates)
        return [*candidates[start:], *candidates[:start]]


class LeastLoaded:
    """Fewest requests in flight first (ties: round-robin)."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return sorted(self._tie.order(candidates), key=lambda c: c.in_flight)


class Weighted:
    """A random order in which each deployment leads in proportion to its weight."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        # Efraimidis-Spirakis: sort by u^(1/w); the first is drawn with probability w/Σw.
        def key(c: Candidate) -> float:
            return math.log(self._rng.random() or 1e-300) / c.weight if c.weight > 0 else -math.inf

        return sorted(candidates, key=key, reverse=True)


class Latency:
    """Lowest moving average of time to first token first; unmeasured ones get tried."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return sorted(
            self._tie.order(candidates),
            key=lambda c: -1.0 if c.ttft_ewma is None else c.ttft_ewma,
        )


class Headroom:
    """Most remaining rate limit (as the provider last reported it) first."""

    def __init__(self) -> None:
        self._tie = RoundRobin()

    def order(self, candidates: Sequence[Candidate]) -> list[Candidate]:
        return sorted(self._tie.order(candidates), key=lambda c: -c.headroom)


BALANCERS: Mapping[str, Callable[[], Balancer]] = MappingProxyType(
    {
        "round_robin": RoundRobin,
        "least_loaded": LeastLoaded,
        "weighted": Weighted,
        "latency": Latency,
        "headroom": Headroom,
    }
)
"""Balancer factories by the name config uses (``-`` and ``_`` are interchangeable)."""


def balancer(name: str) -> Balancer:
    key = name.strip().lower().replace("-", "_")
    if key not in BALANCERS:
        known = ", ".join(BALANCERS)
        raise ValueError(f"unknown load-balancing strategy {name!r} (known: {known})")
    return BALANCERS[key]()


__all__ = [
    "BALANCERS",
    "Balancer",
    "Headroom",
    "Latency",
    "LeastLoaded",
    "RoundRobin",
    "Weighted",
    "balancer",
]
