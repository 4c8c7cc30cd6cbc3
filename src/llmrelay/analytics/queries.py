"""Asking the analytics store: figures per deployment, series over time, feedback.

:class:`Analytics` is synchronous on purpose: each call is one or two short queries (a
local SQLite read, or one round trip to PostgreSQL), and its callers are threads — the
report command, the sink's own thread, a learned balancer refreshing its weights. From
async code run it in a thread (``await asyncio.to_thread(analytics.feedback, …)``).

Figures of one deployment (:class:`DeploymentStats`) come from three kinds of rows:

- *requests* it answered, or that failed with it as the last deployment tried;
- *calls*: attempts sent to it — a request that failed there and fell back elsewhere
  counts here, so ``error_rate`` is the share of its calls that failed;
- *cache hits*: answers it once made, replayed from the response cache.

A request's quality is the mean of the feedback scores it was given, else the
evaluator's score; requests with neither are left out of ``quality_mean``.

Sums and counts are SQL aggregates; percentiles are computed here from the answer times
of the window (SQLite has no percentile function), so both stores give the same figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any, Literal, Self

import msgspec

from llmrelay.analytics.records import FeedbackRow
from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.analytics.store import Store, open_store
from llmrelay.errors import BadRequest

Key = Literal["group", "deployment", "task"]
When = float | datetime | timedelta | None
"""A moment: Unix time, a datetime, or a timedelta meaning that long ago."""
Objective = Literal["cost", "speed", "quality"]


class DeploymentStats(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment's figures over a window (for one group and task when grouped so)."""

    group: str | None
    """The model group (``None`` when not grouped by group)."""
    deployment: str
    task: str | None
    """The task (``None`` when not grouped by task, or for requests naming none)."""
    requests: int
    """Routed requests it answered or was the last tried for."""
    answered: int
    failed: int
    """Requests whose caller got an error, this being the last deployment tried."""
    calls: int
    """Attempts sent to it, including those that failed and fell back elsewhere."""
    errors: int
    """Calls that failed."""
    error_rate: float | None
    """``errors / calls`` (``None`` without calls)."""
    latency_p50_s: float | None
    """Percentiles of its answer time (sending to answer, without queueing or earlier
    attempts) over the requests it answered."""
    latency_p95_s: float | None
    latency_p99_s: float | None
    ttft_p50_s: float | None
    """Median time to first token of its streamed answers."""
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    reasoning_tokens: int
    cost_micros: int
    mean_cost_micros: float | None
    """``cost_micros / answered``."""
    fallbacks: int
    """Requests it answered after another deployment failed or was skipped."""
    cache_hits: int
    saved_micros: int
    """What its cached answers cost when made: saved by each replay."""
    quality_mean: float | None
    quality_n: int
    """Requests with a quality (feedback or evaluator score)."""


class SeriesPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment over one time bucket."""

    start: float
    """The bucket's start (Unix time); buckets are ``bucket_s`` long."""
    deployment: str
    requests: int
    cost_micros: int
    latency_p50_s: float | None
    latency_p95_s: float | None


def quantile(ordered: Sequence[float], q: float) -> float | None:
    """The ``q`` quantile of sorted values, linearly interpolated between closest ranks."""
    if not ordered:
        return None
    position = q * (len(ordered) - 1)
    low = math.floor(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def moment(value: When, now: float) -> float | None:
    """``value`` as Unix time (``None`` stays ``None``: no bound)."""
    if value is None or isinstance(value, int | float):
        return value
    if isinstance(value, timedelta):
        return now - value.total_seconds()
    return value.timestamp()


_COLUMN = {"group": 'r."group"', "deployment": "r.deployment", "task": "r.task"}
_ANSWERED = "r.cached IS NULL AND r.error IS NULL"
_REQUEST_SUMS = (
    "SUM(CASE WHEN r.cached IS NULL THEN 1 ELSE 0 END)",
    f"SUM(CASE WHEN {_ANSWERED} THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN r.cached IS NULL AND r.error IS NOT NULL THEN 1 ELSE 0 END)",
    "SUM(r.input_tokens)",
    "SUM(r.output_tokens)",
    "SUM(r.cached_input_tokens)",
    "SUM(r.reasoning_tokens)",
    "SUM(r.cost_micros)",
    "SUM(CASE WHEN r.cached IS NULL AND r.fell_back = 1 THEN 1 ELSE 0 END)",
    "SUM(CASE WHEN r.cached IS NOT NULL THEN 1 ELSE 0 END)",
    "SUM(r.saved_micros)",
    "AVG(COALESCE(f.score, r.quality))",
    "COUNT(COALESCE(f.score, r.quality))",
)
_REQUEST_NAMES = ("requests", "answered", "failed", "input_tokens", "output_tokens",
                  "cached_input_tokens", "reasoning_tokens", "cost_micros", "fallbacks",
                  "cache_hits", "saved_micros")  # fmt: skip
_FEEDBACK = (
    "LEFT JOIN (SELECT request_id, AVG(score) AS score FROM analytics_feedback "
    "GROUP BY request_id) f ON f.request_id = r.request_id"
)


class Analytics:
    """Queries over an analytics store, and feedback on the answers it recorded."""

    def __init__(
        self,
        store: Store,
        settings: AnalyticsSettings | None = None,
        *,
        owned: bool = True,
        flush: Callable[[], object] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.settings = settings or AnalyticsSettings()
        self._owned = owned
        self._flush = flush
        self._clock = clock

    @classmethod
    def open(cls, settings: AnalyticsSettings, *, create: bool = True) -> Self:
        """Over the store ``settings`` name (``create=False``: a missing SQLite file is a
        :class:`~llmrelay.errors.ConfigError` rather than a new empty store)."""
        return cls(open_store(settings, create=create), settings)

    def close(self) -> None:
        """Close the store, if this object opened it."""
        if self._owned:
            self.store.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- feedback -------------------------------------------------------------------------

    def feedback(self, request_id: str, score: float, comment: str | None = None) -> None:
        """Score the answer to ``request_id`` (its ``response.request_id``) in [0, 1].

        Several scores for one request are averaged. A :class:`~llmrelay.errors.BadRequest`
        names the field when a value is invalid or no such request was recorded.
        """
        if not isinstance(request_id, str) or not request_id:
            raise BadRequest(f"request_id: expected a request id, got {request_id!r}")
        if (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
            or not 0 <= score <= 1
        ):
            raise BadRequest(f"score: expected a number in [0, 1], got {score!r}")
        if comment is not None and not isinstance(comment, str):
            raise BadRequest(f"comment: expected text or None, got {comment!r}")
        row = FeedbackRow(request_id=request_id, score=float(score), comment=comment,
                          at=self._clock())  # fmt: skip
        if self.store.add_feedback(row):
            return
        if self._flush is not None:
            self._flush()  # the request may still be queued to be written
            if self.store.add_feedback(row):
                return
        raise BadRequest(f"request_id: no request {request_id!r} is recorded in analytics")

    # -- figures --------------------------------------------------------------------------

    def _where(
        self, since: When, until: When, task: str | None, group: str | None
    ) -> tuple[str, list[Any]]:
        now = self._clock()
        clauses: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("r.at >= ?", moment(since, now)),
            ("r.at < ?", moment(until, now)),
            ("r.task = ?", task),
            ('r."group" = ?', group),
        ):
            if value is not None:
                clauses.append(clause)
                params.append(value)
        return (" WHERE " + " AND ".join(clauses)) if clauses else "", params

    def stats(
        self,
        since: When = None,
        until: When = None,
        task: str | None = None,
        group: str | None = None,
        *,
        by: Sequence[Key] = ("deployment", "task"),
    ) -> list[DeploymentStats]:
        """Figures per deployment (and per group and task when ``by`` names them) for the
        requests started in [``since``, ``until``), sorted by group, deployment, task."""
        keys = tuple(dict.fromkeys(["deployment", *by]))
        if any(k not in _COLUMN for k in keys):
            raise ValueError(f"by: expected some of group, deployment, task; got {by!r}")
        where, params = self._where(since, until, task, group)
        columns = ", ".join(_COLUMN[k] for k in keys)
        totals = {
            tuple(row[: len(keys)]): row[len(keys) :]
            for row in self.store.fetch(
                f"SELECT {columns}, {', '.join(_REQUEST_SUMS)} FROM analytics_requests r "
                f"{_FEEDBACK}{where} GROUP BY {columns}",
                params,
            )
        }
        tried = ", ".join("a.deployment" if k == "deployment" else _COLUMN[k] for k in keys)
        sent = " AND a.sent = 1" if where else " WHERE a.sent = 1"
        calls = {
            tuple(row[: len(keys)]): (int(row[-2]), int(row[-1]))
            for row in self.store.fetch(
                f"SELECT {tried}, COUNT(*), SUM(CASE WHEN a.error IS NOT NULL THEN 1 ELSE 0 "
                "END) FROM analytics_attempts a JOIN analytics_requests r ON r.request_id = "
                f"a.request_id{where}{sent} GROUP BY {tried}",
                params,
            )
        }
        latencies: dict[tuple[Any, ...], tuple[list[float], list[float]]] = {}
        for row in self.store.fetch(
            f"SELECT {columns}, r.deployment_latency_s, r.ttft_s FROM analytics_requests r"
            f"{where}{' AND ' if where else ' WHERE '}{_ANSWERED}",
            params,
        ):
            answer, first = latencies.setdefault(tuple(row[: len(keys)]), ([], []))
            if row[-2] is not None:
                answer.append(float(row[-2]))
            if row[-1] is not None:
                first.append(float(row[-1]))
        out = [
            _figures(
                dict(zip(keys, key, strict=True)),
                totals.get(key),
                calls.get(key, (0, 0)),
                latencies.get(key, ([], [])),
            )
            for key in {*totals, *calls}
        ]
        return sorted(out, key=lambda s: (s.group or "", s.deployment, s.task or ""))

    def series(
        self,
        since: When = None,
        until: When = None,
        *,
        bucket_s: float = 3600.0,
        task: str | None = None,
        group: str | None = None,
    ) -> list[SeriesPoint]:
        """Requests, cost and answer-time percentiles per deployment per ``bucket_s``
        (cache hits left out), in time order."""
        if not bucket_s > 0:
            raise ValueError(f"bucket_s must be > 0, got {bucket_s}")
        where, params = self._where(since, until, task, group)
        buckets: dict[tuple[float, str], tuple[list[int], list[float]]] = {}
        for at, deployment, cost, latency, error in self.store.fetch(
            "SELECT r.at, r.deployment, r.cost_micros, r.deployment_latency_s, r.error "
            f"FROM analytics_requests r{where}{' AND ' if where else ' WHERE '}"
            "r.cached IS NULL",
            params,
        ):
            start = math.floor(at / bucket_s) * bucket_s
            costs, times = buckets.setdefault((start, deployment), ([], []))
            costs.append(int(cost))
            if error is None and latency is not None:
                times.append(float(latency))
        points = []
        for (start, deployment), (costs, times) in sorted(buckets.items()):
            times.sort()
            points.append(SeriesPoint(start=start, deployment=deployment, requests=len(costs),
                                      cost_micros=sum(costs),
                                      latency_p50_s=quantile(times, 0.5),
                                      latency_p95_s=quantile(times, 0.95)))  # fmt: skip
        return points

    def span(self) -> tuple[float, float, int] | None:
        """The first and last request's start and how many rows there are (``None``: none)."""
        first, last, count = self.store.fetch(
            "SELECT MIN(at), MAX(at), COUNT(*) FROM analytics_requests"
        )[0]
        return None if not count else (float(first), float(last), int(count))

    def best_model_for(
        self,
        task: str | None,
        optimize_for: Objective = "cost",
        *,
        min_quality: float | None = None,
        min_calls: int = 10,
        max_error_rate: float = 0.2,
        min_scored: int = 5,
        since: When = None,
        until: When = None,
        group: str | None = None,
    ) -> Choice | None:
        """The deployment that best serves ``task`` (``None``: every request) by
        ``optimize_for``, or ``None`` when none qualifies; see
        :func:`llmrelay.analytics.best.choose` for the rules."""
        from llmrelay.analytics.best import choose

        stats = self.stats(since, until, task=task, group=group, by=("deployment",))
        return choose(stats, optimize_for, task=task, min_quality=min_quality,
                      min_calls=min_calls, max_error_rate=max_error_rate,
                      min_scored=min_scored)  # fmt: skip


class Choice(msgspec.Struct, frozen=True, kw_only=True):
    """What :meth:`Analytics.best_model_for` chose, and why."""

    deployment: str
    task: str | None
    optimize_for: Objective
    figures: DeploymentStats
    """The chosen deployment's figures."""
    why: str
    """One sentence saying what decided it."""
    ranking: tuple[str, ...]
    """Every deployment that qualified, best first."""
    rejected: dict[str, str]
    """Deployments that did not qualify, each with the reason."""


def _figures(
    keys: dict[str, Any],
    sums: Iterable[Any] | None,
    calls: tuple[int, int],
    latencies: tuple[list[float], list[float]],
) -> DeploymentStats:
    values = list(sums) if sums is not None else [0] * len(_REQUEST_NAMES) + [None, 0]
    counts = {n: int(v or 0) for n, v in zip(_REQUEST_NAMES, values, strict=False)}
    quality, scored = values[-2], int(values[-1] or 0)
    answer, first = (sorted(x) for x in latencies)
    answered, (tries, errors) = counts["answered"], calls
    return DeploymentStats(
        group=keys.get("group"),
        deployment=str(keys["deployment"]),
        task=keys.get("task"),
        calls=tries,
        errors=errors,
        error_rate=errors / tries if tries else None,
        latency_p50_s=quantile(answer, 0.5),
        latency_p95_s=quantile(answer, 0.95),
        latency_p99_s=quantile(answer, 0.99),
        ttft_p50_s=quantile(first, 0.5),
        mean_cost_micros=counts["cost_micros"] / answered if answered else None,
        quality_mean=float(quality) if quality is not None else None,
        quality_n=scored,
        **counts,
    )


__all__ = ["Analytics", "Choice", "DeploymentStats", "SeriesPoint", "When", "moment", "quantile"]
