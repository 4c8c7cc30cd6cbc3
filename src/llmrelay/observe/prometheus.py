"""Prometheus metrics from the router's events (``prometheus-client``).

Counters and histograms are updated from events, on the sink's own thread; gauges are read
from the router's live state when scraped (once :meth:`PrometheusSink.attach` gave the sink
a :class:`~llmrelay.observe.Live`). Every name below is prefixed with the namespace
(``llmrelay_`` by default). Labels stay few: model group, deployment, outcome, error,
reason, kind — never a request id, an API key or a user.

Counters:

- ``requests_total{group,deployment,outcome}`` — every request once: ``ok``,
  ``cache_hit``, or the error class of a failure (``AllModelsExhausted``, ``BadRequest``,
  ``Cancelled``…); ``deployment`` is the one that answered (empty when none did).
- ``attempt_errors_total{group,deployment,error}`` — failed sends, by error class.
- ``rate_limits_received_total{deployment}`` — 429s a provider answered (``RateLimited``).
- ``rate_limits_avoided_total{deployment}`` — answered sends the scheduler held in its
  queue (at least :data:`QUEUED_S`) rather than send them into a 429.
- ``retries_total{group,deployment}`` — tries of the deployment the request's previous
  attempt tried (the router going round its retry loop; a wait the scheduler refused is a
  try). A deployment passed over — for context, capability, breaker or budget, or a
  hedge's cancelled loser — was not tried: neither a retry nor a try to retry.
- ``fallbacks_total{group,deployment,reason}`` — requests answered by another deployment
  than their first choice: ``deployment`` answered, ``reason`` is the first attempt's error.
- ``hedges_total{group,deployment}`` — ``deployment`` was slow and another was raced.
- ``skipped_total{group,deployment,reason}`` — deployments passed over without a send.
- ``limits_learned_total{deployment}`` — unpredicted 429s that made the scheduler stricter.
- ``breaker_transitions_total{deployment,state}`` — the state a breaker entered.
- ``tokens_total{group,deployment,kind}`` — usage of provider answers: ``input``,
  ``output``, and the subsets ``cached_input``, ``cache_write_input``, ``reasoning``.
- ``cost_usd_total{group,deployment}`` — what answers cost, in US dollars.
- ``cache_hits_total{group,kind}`` and ``cache_saved_usd_total{group,kind}`` — answers
  from the response cache (``exact``, ``semantic``) and what they cost when first made.
- ``budget_thresholds_total{budget,threshold}`` — a budget's spend crossed a share.
- ``budget_refusals_total{group,deployment}`` — a budget kept a request off a deployment.
- ``downgrades_total{group,deployment}`` — cheaper ``deployment`` put first by a budget.

A budget counted per key, user or tag is labelled by its scope and period (``key/day``),
never by the key or user; name a budget to see its name.

Histograms (seconds): ``request_duration_seconds{group,outcome}`` (routed requests),
``attempt_duration_seconds{deployment}`` (answered sends),
``time_to_first_token_seconds{deployment}`` (streams),
``queue_wait_seconds{deployment}`` (the answering send's wait in the scheduler's queue).

Gauges, read at scrape time: ``queue_depth{deployment}``,
``in_flight_requests{deployment}``, ``rate_limit_headroom_ratio{deployment}`` (share of
the tighter limit left), ``breaker_state{deployment,state}`` (one series per state, 1 for
the current one: alert on ``breaker_state{state="open"} == 1``), ``budget_spent_usd{budget}``
and ``budget_limit_usd{budget}`` (budgets not counted per key, user or tag).
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

import msgspec

from llmrelay.events import Event, EventKind

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry
    from prometheus_client.metrics_core import Metric

    from llmrelay.observe.sink import Live
    from llmrelay.types import Attempt

log = logging.getLogger("llmrelay.observe.prometheus")
T = TypeVar("T")

QUEUED_S = 0.01
"""A send counts as held in the scheduler's queue when it waited at least this long:
below it, ``wait_s`` is the bookkeeping between the scheduler and the send."""
LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0)
TTFT_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0, 30.0, 60.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 90.0, 300.0)
"""Up to the scheduler's bounds: 90 s before falling back, 300 s with nowhere to go."""
BREAKER_STATES = ("closed", "open", "half_open")
_PASSED_OVER = frozenset({"CircuitOpen", "BudgetExceeded", "Cancelled"})
_REFUSED_BEFORE_SENDING = frozenset({"ContextWindowExceeded", "BadRequest"})
_PER_SUBJECT = re.compile(r"^(key|user|tag):.*/(day|month)$")
_TOKEN_KINDS = ("input", "output", "cached_input", "cache_write_input", "reasoning")


class PrometheusSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.prometheus:`` — metrics in Prometheus's text format."""

    port: int | None = None
    """Serve ``/metrics`` on this port from a thread of its own (off when unset: the
    gateway serves ``/metrics``, or the application exposes the registry)."""
    addr: str = "127.0.0.1"
    """The address that server listens on."""
    namespace: str = "llmrelay"
    """The prefix of every metric name."""

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")


_DEFAULTS = PrometheusSettings()
_G, _D = "group", "deployment"
COUNTERS: dict[str, tuple[str, tuple[str, ...]]] = {
    "requests_total": ("Requests by outcome.", (_G, _D, "outcome")),
    "attempt_errors_total": ("Failed sends by error.", (_G, _D, "error")),
    "rate_limits_received_total": ("429s answered by a provider.", (_D,)),
    "rate_limits_avoided_total": ("Sends held in the scheduler's queue, not refused.", (_D,)),
    "retries_total": ("Sends repeated on the same deployment.", (_G, _D)),
    "fallbacks_total": ("Requests answered past their first choice.", (_G, _D, "reason")),
    "hedges_total": ("Slow sends raced by another deployment.", (_G, _D)),
    "skipped_total": ("Deployments passed over without a send.", (_G, _D, "reason")),
    "limits_learned_total": ("Unpredicted 429s that made pacing stricter.", (_D,)),
    "breaker_transitions_total": ("Circuit breaker transitions by state entered.", (_D, "state")),
    "tokens_total": ("Tokens of provider answers by kind.", (_G, _D, "kind")),
    "cost_usd_total": ("Cost of answers in US dollars.", (_G, _D)),
    "cache_hits_total": ("Answers from the response cache.", (_G, "kind")),
    "cache_saved_usd_total": ("What cached answers cost when made, in US dollars.", (_G, "kind")),
    "budget_thresholds_total": ("Budget thresholds crossed.", ("budget", "threshold")),
    "budget_refusals_total": ("Deployments a budget could not afford.", (_G, _D)),
    "downgrades_total": ("Cheaper deployments put first by a budget.", (_G, _D)),
}
HISTOGRAMS: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "request_duration_seconds": ("Whole request time.", (_G, "outcome"), LATENCY_BUCKETS),
    "attempt_duration_seconds": ("Answered send time.", (_D,), LATENCY_BUCKETS),
    "time_to_first_token_seconds": ("Time to a stream's first token.", (_D,), TTFT_BUCKETS),
    "queue_wait_seconds": ("Wait in the scheduler's queue.", (_D,), WAIT_BUCKETS),
}


class PrometheusSink:
    """Keeps the router's metrics in a registry of its own (never the global default, so
    two routers in one process do not collide); serves it when ``settings.port`` is set."""

    name = "prometheus"

    def __init__(
        self, settings: PrometheusSettings = _DEFAULTS, *, registry: CollectorRegistry | None = None
    ) -> None:
        from prometheus_client import CollectorRegistry, Counter, Histogram

        self.settings = settings
        self._registry = registry if registry is not None else CollectorRegistry()
        self._live = _LiveCollector(settings.namespace)
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None
        ns, reg = settings.namespace, self._registry
        self._counters = {
            name: Counter(name, doc, labels, namespace=ns, registry=reg)
            for name, (doc, labels) in COUNTERS.items()
        }
        self._histograms = {
            name: Histogram(name, doc, labels, namespace=ns, registry=reg, buckets=buckets)
            for name, (doc, labels, buckets) in HISTOGRAMS.items()
        }
        reg.register(self._live)
        if settings.port is not None:
            from prometheus_client import start_http_server

            self._server, self._thread = start_http_server(
                settings.port, settings.addr, registry=reg
            )

    def _count(self, name: str, *labels: str, amount: float = 1.0) -> None:
        self._counters[name].labels(*labels).inc(amount)

    def _observe(self, name: str, value: float, *labels: str) -> None:
        self._histograms[name].labels(*labels).observe(value)

    @property
    def registry(self) -> CollectorRegistry:
        return self._registry

    @property
    def port(self) -> int | None:
        """The port the metrics server listens on (the one chosen when asked for 0)."""
        return None if self._server is None else int(self._server.server_address[1])

    def attach(self, live: Live) -> None:
        """Read gauges from ``live`` at each scrape from now on."""
        self._live.live = live

    def render(self) -> bytes:
        """The registry in Prometheus's text format (what ``/metrics`` serves)."""
        from prometheus_client import generate_latest

        return generate_latest(self._registry)

    def handle(self, event: Event) -> None:
        kind, group, deployment, error = event.kind, event.group, event.deployment, event.error
        if kind is EventKind.FINISHED:
            self._finished(event)
        elif kind is EventKind.CACHE_HIT:
            self._count("requests_total", group, deployment, "cache_hit")
            self._count("cache_hits_total", group, event.message)
            self._count("cache_saved_usd_total", group, event.message, amount=event.cost_usd)
        elif kind is EventKind.ATTEMPT_SUCCEEDED:
            self._observe("attempt_duration_seconds", event.latency_s, deployment)
        elif kind is EventKind.ATTEMPT_FAILED:
            self._count("attempt_errors_total", group, deployment, error or "unknown")
            if error == "RateLimited":
                self._count("rate_limits_received_total", deployment)
        elif kind is EventKind.FELL_BACK:
            self._count("fallbacks_total", group, deployment, error or "unknown")
        elif kind is EventKind.HEDGED:
            self._count("hedges_total", group, deployment)
        elif kind is EventKind.SKIPPED:
            self._count("skipped_total", group, deployment, error or "unknown")
        elif kind is EventKind.LIMIT_LEARNED:
            self._count("limits_learned_total", deployment)
        elif kind is EventKind.BREAKER_CHANGED:  # message: "closed -> open"
            state = event.message.rpartition("->")[2].strip() or "unknown"
            self._count("breaker_transitions_total", deployment, state)
        elif kind is EventKind.BUDGET_THRESHOLD:
            budget = budget_label(event.budget)
            self._count("budget_thresholds_total", budget, f"{event.share:g}")
        elif kind is EventKind.BUDGET_REFUSED:
            self._count("budget_refusals_total", group, deployment)
        elif kind is EventKind.DOWNGRADED:
            self._count("downgrades_total", group, deployment)

    def _finished(self, event: Event) -> None:
        group, deployment, response = event.group, event.deployment, event.response
        outcome = event.error or "ok"
        self._count("requests_total", group, deployment, outcome)
        self._observe("request_duration_seconds", event.latency_s, group, outcome)
        previous = None  # the deployment the attempt before tried, if it tried one
        for attempt in event.attempts:
            tried = not _passed_over(attempt)
            if tried and attempt.deployment == previous:
                self._count("retries_total", group, attempt.deployment)
            previous = attempt.deployment if tried else None
            if attempt.error is None:  # the router measures the answering send's wait
                self._observe("queue_wait_seconds", attempt.wait_s, attempt.deployment)
                if attempt.wait_s >= QUEUED_S:
                    self._count("rate_limits_avoided_total", attempt.deployment)
        if response is None:
            return
        usage = response.usage
        counts = (usage.input_tokens, usage.output_tokens, usage.cached_input_tokens,
                  usage.cache_write_input_tokens, usage.reasoning_tokens)  # fmt: skip
        for token_kind, count in zip(_TOKEN_KINDS, counts, strict=True):
            self._count("tokens_total", group, deployment, token_kind, amount=count)
        self._count("cost_usd_total", group, deployment, amount=response.cost_micros / 1e6)
        if event.streamed and response.ttft_s is not None:
            self._observe("time_to_first_token_seconds", response.ttft_s, deployment)

    def close(self) -> None:
        """Stop the metrics server, if this sink started one."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join()


def budget_label(label: str) -> str:
    """A budget's metric label: a budget counted per key, user or tag becomes its scope
    and period (``key:k-123/day`` → ``key/day``), so no key or user becomes a series."""
    per_subject = _PER_SUBJECT.match(label)
    return f"{per_subject[1]}/{per_subject[2]}" if per_subject else label


def _passed_over(attempt: Attempt) -> bool:
    """Whether the router left a deployment without trying it (such attempts carry no
    status code, where a provider's own refusal does)."""
    if attempt.error in _PASSED_OVER:
        return True
    return attempt.error in _REFUSED_BEFORE_SENDING and attempt.status_code is None


class _LiveCollector:
    """Gauges read from the router's state at each scrape; nothing before ``live`` is set.

    A scrape runs on the server's thread while the router changes what it reads: a read
    that fails is tried once more, then its gauges are left out of that scrape.
    """

    def __init__(self, namespace: str) -> None:
        self.prefix = f"{namespace}_" if namespace else ""
        self.live: Live | None = None

    def describe(self) -> Iterator[Metric]:
        return iter(self._families())

    def collect(self) -> Iterator[Metric]:
        live = self.live
        if live is None:
            return iter(())
        try:
            return iter(self._gauges(live))
        except Exception:  # a scrape must get the other metrics whatever happens here
            log.warning("reading the router's live state failed", exc_info=True)
            return iter(())

    def _gauges(self, live: Live) -> list[Any]:
        families = self._families()
        queued, in_flight, headroom, breaker, spent, limit = families
        for d in _read(live.deployments) or ():
            queued.add_metric([d.deployment], d.queued)
            in_flight.add_metric([d.deployment], d.in_flight)
            headroom.add_metric([d.deployment], d.headroom)
            for state in BREAKER_STATES:
                breaker.add_metric([d.deployment, state], 1.0 if d.breaker == state else 0.0)
        for row in _read(live.budgets) or ():
            name = str(row.get("budget", ""))
            if budget_label(name) != name:
                continue  # one budget per key or user: not a series each
            spent.add_metric([name], float(row.get("spent_usd", 0.0)))
            limit.add_metric([name], float(row.get("limit_usd", 0.0)))
        return families

    def _families(self) -> list[Any]:
        from prometheus_client.core import GaugeMetricFamily

        def gauge(name: str, doc: str, *labels: str) -> GaugeMetricFamily:
            return GaugeMetricFamily(self.prefix + name, doc, labels=labels)

        return [
            gauge("queue_depth", "Requests waiting in the scheduler's queue.", "deployment"),
            gauge("in_flight_requests", "Sends under way.", "deployment"),
            gauge("rate_limit_headroom_ratio", "Share of the rate limit left.", "deployment"),
            gauge("breaker_state", "1 for the breaker's current state.", "deployment", "state"),
            gauge("budget_spent_usd", "Spent in the budget's current period.", "budget"),
            gauge("budget_limit_usd", "The budget's limit per period.", "budget"),
        ]


def _read(read: Callable[[], list[T]]) -> list[T] | None:
    """``read()``, tried twice; ``None`` when both tries failed."""
    for _ in range(2):
        try:
            return read()
        except Exception:
            log.debug("reading the router's live state failed", exc_info=True)
    return None


def open_sink(settings: PrometheusSettings) -> PrometheusSink:
    """The sink ``observe.prometheus:`` describes."""
    return PrometheusSink(settings)


__all__ = ["PrometheusSettings", "PrometheusSink", "budget_label", "open_sink"]
