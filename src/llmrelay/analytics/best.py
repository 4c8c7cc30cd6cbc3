"""Choosing the best deployment for a task from its recorded figures.

A deployment qualifies when, in the window asked about, it

- answered at least ``min_calls`` requests;
- failed at most ``max_error_rate`` of the calls sent to it (fallbacks from it count);
- if ``min_quality`` is given: has at least ``min_scored`` scored answers and a mean
  quality of at least ``min_quality``.

Among those that qualify, the objective ranks:

- ``cost``: lowest mean cost per answered request; ties: higher mean quality, then lower
  median answer time;
- ``speed``: lowest median (p50) answer time; ties: lower mean cost;
- ``quality``: highest mean quality, among those with at least ``min_scored`` scored
  answers; ties: lower mean cost, then lower median answer time.

Any tie left is broken by the deployment's name, so the choice is deterministic.
"""

from __future__ import annotations

import math

from llmrelay.analytics.queries import Choice, DeploymentStats, Objective

_OBJECTIVES = ("cost", "speed", "quality")


def _rejection(
    s: DeploymentStats,
    objective: Objective,
    min_quality: float | None,
    min_calls: int,
    max_error_rate: float,
    min_scored: int,
) -> str | None:
    """Why ``s`` does not qualify (``None``: it does)."""
    if s.answered < min_calls:
        return f"{s.answered} answered requests, fewer than min_calls={min_calls}"
    if s.error_rate is not None and s.error_rate > max_error_rate:
        return f"error rate {s.error_rate:.1%} above max_error_rate={max_error_rate:.1%}"
    if (min_quality is not None or objective == "quality") and s.quality_n < min_scored:
        return f"{s.quality_n} scored answers, fewer than min_scored={min_scored}"
    if min_quality is not None and (s.quality_mean or 0.0) < min_quality:
        return f"mean quality {s.quality_mean:.3f} below min_quality={min_quality}"
    if objective == "speed" and s.latency_p50_s is None:
        return "no answer time recorded"
    return None


def _rank(s: DeploymentStats, objective: Objective) -> tuple[float, ...]:
    cost = s.mean_cost_micros if s.mean_cost_micros is not None else math.inf
    p50 = s.latency_p50_s if s.latency_p50_s is not None else math.inf
    quality = s.quality_mean if s.quality_mean is not None else -math.inf
    if objective == "cost":
        return (cost, -quality, p50)
    if objective == "speed":
        return (p50, cost)
    return (-quality, cost, p50)


def _why(s: DeploymentStats, objective: Objective, others: int) -> str:
    among = f"among {others + 1} qualifying deployments" if others else "the only one qualifying"
    if objective == "cost":
        figure = f"lowest mean cost, ${(s.mean_cost_micros or 0) / 1e6:.6f} a request"
    elif objective == "speed":
        figure = f"lowest median answer time, {(s.latency_p50_s or 0) * 1000:.0f} ms"
    else:
        figure = f"highest mean quality, {s.quality_mean:.3f} over {s.quality_n} scores"
    return f"{s.deployment}: {figure} ({among})"


def choose(
    stats: list[DeploymentStats],
    optimize_for: Objective = "cost",
    *,
    task: str | None = None,
    min_quality: float | None = None,
    min_calls: int = 10,
    max_error_rate: float = 0.2,
    min_scored: int = 5,
) -> Choice | None:
    """The best of ``stats`` (one entry per deployment) by the rules of this module."""
    if optimize_for not in _OBJECTIVES:
        raise ValueError(f"optimize_for: expected cost, speed or quality; got {optimize_for!r}")
    if min_quality is not None and not 0 <= min_quality <= 1:
        raise ValueError(f"min_quality: expected a number in [0, 1], got {min_quality!r}")
    rejected: dict[str, str] = {}
    qualified: list[DeploymentStats] = []
    for s in stats:
        reason = _rejection(s, optimize_for, min_quality, min_calls, max_error_rate, min_scored)
        if reason is None:
            qualified.append(s)
        else:
            rejected[s.deployment] = reason
    if not qualified:
        return None
    qualified.sort(key=lambda s: (*_rank(s, optimize_for), s.deployment))
    best = qualified[0]
    return Choice(
        deployment=best.deployment,
        task=task,
        optimize_for=optimize_for,
        figures=best,
        why=_why(best, optimize_for, len(qualified) - 1),
        ranking=tuple(s.deployment for s in qualified),
        rejected=rejected,
    )


__all__ = ["choose"]
