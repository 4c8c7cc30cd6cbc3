"""The Prometheus sink: what a scrape shows equals what the router did.

A scripted run on the simulator (a 429 storm, an outage that opens a breaker, a stream,
cache hits, a bad request) is scraped and parsed with prometheus-client's own parser; the
counts are asserted exactly. Hand-made events cover what a script cannot make on demand.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import BadRequest
from llmrelay.events import Event, EventKind
from llmrelay.observe import DeploymentNow
from llmrelay.observe.prometheus import PrometheusSettings, PrometheusSink, open_sink
from llmrelay.testing import SimulatorHandle
from llmrelay.types import Attempt, ChatRequest, ChatResponse, Message, RoutedResponse, Usage

A, B, C = "openai/sim-openai", "anthropic/sim-anthropic", "gemini/sim-gemini"
PRICE = {"input": 3000.0, "output": 4000.0}  # $ per million tokens: micro-dollars per token
CATALOG = {
    name: {"price": PRICE, "context_window": 16000, "max_output_tokens": 4096} for name in (A, B, C)
}


class Scrape:
    """One scrape of a sink, parsed: sample values by name and labels."""

    def __init__(self, sink: PrometheusSink) -> None:
        text = sink.render().decode()
        self.samples = [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]

    def total(self, name: str, **labels: str) -> float:
        """The sum of the samples of ``name`` whose labels include ``labels``."""
        return sum(
            value
            for found, have, value in self.samples
            if found == name and labels.items() <= have.items()
        )

    def series(self, name: str) -> dict[tuple[tuple[str, str], ...], float]:
        return {tuple(sorted(have.items())): v for found, have, v in self.samples if found == name}

    def names(self) -> set[str]:
        return {name for name, _, _ in self.samples}


def relay(simulator: SimulatorHandle, sink: PrometheusSink) -> SmartLLM:
    """``default``: OpenAI, then Anthropic; ``steady``: Gemini, then Anthropic. No retries,
    a breaker that opens after two outages and stays open, the exact cache."""

    def at(provider: str) -> dict[str, Any]:
        base = simulator.url + ("/v1" if provider == "openai" else "")
        return {"base_url": base, "api_key": f"sk-prom-{provider}"}

    return (
        LLMBuilder()
        .with_catalog(CATALOG)
        .with_primary("openai", "sim-openai", **at("openai"))
        .with_fallback("anthropic", "sim-anthropic", **at("anthropic"))
        .with_primary("gemini", "sim-gemini", group="steady", **at("gemini"))
        .with_fallback("anthropic", "sim-anthropic", group="steady", **at("anthropic"))
        .with_retries(0)
        .with_circuit_breaker(failure_threshold=2, cooldown_s=3600)
        .with_cache("memory")
        .with_observer(sink)
        .build()
    )


async def test_a_scripted_run_is_counted_exactly(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """429s, fallbacks by reason, a breaker opening, cache hits, tokens and cost: exact."""
    simulator.set_model("sim-anthropic", input_price_per_mtok=3000.0, output_price_per_mtok=4000.0)
    sink = PrometheusSink()
    llm = relay(simulator, sink)
    closing.append(llm)
    answers: list[RoutedResponse] = []

    simulator.set_faults("sim-openai", {"rate_limit": 1.0})  # the storm: every call a 429
    for n in range(3):
        answers.append(await llm.ainvoke(f"storm {n}", temperature=0))
    simulator.set_faults("sim-gemini", {"500": 1.0})  # the outage: two 500s open the breaker
    for n in range(3):
        answers.append(await llm.ainvoke(f"outage {n}", model="steady", temperature=0))
    request = ChatRequest(messages=[Message(role="user", content="a stream")])
    async for _ in llm.router.stream(request, "steady", on_answer=answers.append):
        pass
    hits = [
        await llm.ainvoke("storm 0", temperature=0),
        await llm.ainvoke("storm 1", temperature=0),
        await llm.ainvoke("outage 0", model="steady", temperature=0),
    ]
    with pytest.raises(BadRequest):
        await llm.ainvoke("no room", max_tokens=-1)
    assert llm.observer is not None and llm.observer.flush(10)

    assert all(a.deployment == B and a.cached is None for a in answers)
    assert all(hit.cached == "exact" for hit in hits)
    scrape = Scrape(sink)
    requests = scrape.series("llmrelay_requests_total")
    assert requests == {
        (("deployment", B), ("group", "default"), ("outcome", "ok")): 3,
        (("deployment", B), ("group", "steady"), ("outcome", "ok")): 4,
        (("deployment", B), ("group", "default"), ("outcome", "cache_hit")): 2,
        (("deployment", B), ("group", "steady"), ("outcome", "cache_hit")): 1,
        (("deployment", ""), ("group", "default"), ("outcome", "BadRequest")): 1,
    }
    assert scrape.series("llmrelay_rate_limits_received_total") == {(("deployment", A),): 3}
    assert scrape.total("llmrelay_attempt_errors_total", error="RateLimited") == 3
    assert scrape.total("llmrelay_attempt_errors_total", deployment=C) == 2
    assert scrape.series("llmrelay_fallbacks_total") == {
        (("deployment", B), ("group", "default"), ("reason", "RateLimited")): 3,
        (("deployment", B), ("group", "steady"), ("reason", "ProviderUnavailable")): 2,
        (("deployment", B), ("group", "steady"), ("reason", "CircuitOpen")): 2,
    }
    assert scrape.series("llmrelay_breaker_transitions_total") == {
        (("deployment", C), ("state", "open")): 1
    }
    assert scrape.total("llmrelay_breaker_state", deployment=C, state="open") == 1
    assert scrape.total("llmrelay_breaker_state", deployment=C, state="closed") == 0
    assert scrape.total("llmrelay_skipped_total", deployment=C, reason="CircuitOpen") == 2
    assert scrape.total("llmrelay_retries_total") == 0
    assert scrape.series("llmrelay_cache_hits_total") == {
        (("group", "default"), ("kind", "exact")): 2,
        (("group", "steady"), ("kind", "exact")): 1,
    }
    saved = scrape.total("llmrelay_cache_saved_usd_total")
    assert round(saved * 1e6) == sum(hit.saved_micros for hit in hits) > 0

    for kind, field in [("input", "input_tokens"), ("output", "output_tokens"),
                        ("cached_input", "cached_input_tokens"), ("reasoning", "reasoning_tokens"),
                        ("cache_write_input", "cache_write_input_tokens")]:  # fmt: skip
        expected = sum(getattr(a.usage, field) for a in answers)
        assert scrape.total("llmrelay_tokens_total", kind=kind) == expected, kind
    assert scrape.total("llmrelay_tokens_total", kind="output") > 0
    billed = simulator.usage("sk-prom-anthropic", "sim-anthropic")
    assert scrape.total("llmrelay_tokens_total", kind="input") == billed["input_tokens"]
    cost = scrape.total("llmrelay_cost_usd_total", deployment=B, group="default") + scrape.total(
        "llmrelay_cost_usd_total", deployment=B, group="steady"
    )
    assert round(cost * 1e6) == sum(a.cost_micros for a in answers) == billed["cost_micros"]
    assert scrape.total("llmrelay_cost_usd_total") == cost

    assert scrape.total("llmrelay_request_duration_seconds_count") == 8  # cache hits: none
    assert scrape.total("llmrelay_attempt_duration_seconds_count", deployment=B) == 7
    assert scrape.total("llmrelay_time_to_first_token_seconds_count", deployment=B) == 1
    assert scrape.total("llmrelay_queue_wait_seconds_count", deployment=B) == 7
    assert scrape.total("llmrelay_in_flight_requests") == 0
    assert scrape.total("llmrelay_queue_depth") == 0


def finished(*attempts: Attempt, group: str = "g", answered: bool = True, **kw: Any) -> Event:
    """A ``finished`` event for ``attempts``: answered by the last one, or failed."""
    response = None
    if answered:
        usage = Usage(input_tokens=10, output_tokens=4, cached_input_tokens=6)
        response = ChatResponse(content="ok", usage=usage, deployment=attempts[-1].deployment,
                                cost_micros=1234, ttft_s=kw.pop("ttft_s", None))  # fmt: skip
    return Event(kind=EventKind.FINISHED, group=group, attempts=attempts, response=response,
                 deployment=response.deployment if response else "", latency_s=0.5,
                 error=None if answered else "AllModelsExhausted", **kw)  # fmt: skip


def ok(deployment: str, wait_s: float = 0.0) -> Attempt:
    return Attempt(deployment=deployment, status_code=200, wait_s=wait_s, latency_s=0.2)


def failed(deployment: str, error: str, status: int | None) -> Attempt:
    return Attempt(deployment=deployment, error=error, status_code=status, latency_s=0.1)


def test_retries_and_queued_sends_are_read_from_each_requests_attempts() -> None:
    """A retry is a try of the deployment tried just before; a skip or a hedge's loser is
    not. A send that waited in the queue is a 429 avoided; one that did not wait is not."""
    sink = PrometheusSink()
    sink.handle(finished(failed("a", "ProviderUnavailable", 500),
                         failed("a", "ProviderUnavailable", 500), ok("a", wait_s=0.5)))  # fmt: skip
    sink.handle(finished(failed("a", "RateLimited", 429), failed("a", "WaitTooLong", None),
                         ok("b", wait_s=0.0002)))  # fmt: skip
    sink.handle(finished(failed("a", "CircuitOpen", None), ok("a")))
    sink.handle(finished(failed("a", "Cancelled", None), ok("b", wait_s=2.0)))
    sink.handle(finished(failed("b", "ContextWindowExceeded", None),
                         failed("b", "ContextWindowExceeded", 400),
                         failed("b", "ProviderUnavailable", 503),
                         failed("b", "BudgetExceeded", None), answered=False))  # fmt: skip
    sink.handle(finished(ok("b"), streamed=True, ttft_s=0.3))
    scrape = Scrape(sink)
    assert scrape.series("llmrelay_retries_total") == {
        (("deployment", "a"), ("group", "g")): 3,
        (("deployment", "b"), ("group", "g")): 1,
    }
    assert scrape.series("llmrelay_rate_limits_avoided_total") == {
        (("deployment", "a"),): 1,
        (("deployment", "b"),): 1,
    }
    assert scrape.total("llmrelay_queue_wait_seconds_count") == 5
    assert scrape.total("llmrelay_queue_wait_seconds_bucket", deployment="b", le="0.01") == 2
    assert scrape.total("llmrelay_requests_total", outcome="ok") == 5
    assert scrape.total("llmrelay_requests_total", outcome="AllModelsExhausted") == 1
    assert scrape.total("llmrelay_tokens_total", kind="cached_input") == 30
    assert round(scrape.total("llmrelay_cost_usd_total") * 1e6) == 5 * 1234
    assert scrape.total("llmrelay_time_to_first_token_seconds_count") == 1
    assert scrape.total("llmrelay_time_to_first_token_seconds_sum") == 0.3


def test_other_events_are_counted_with_low_cardinality_labels() -> None:
    """Breakers by state entered, budgets by scope rather than key, hedges, cache savings."""
    sink = open_sink(PrometheusSettings(namespace="relay"))
    for event in [
        Event(kind=EventKind.BREAKER_CHANGED, deployment="a", message="closed -> open"),
        Event(kind=EventKind.BREAKER_CHANGED, deployment="a", message="open -> half_open"),
        Event(kind=EventKind.BUDGET_THRESHOLD, budget="key:sk-secret/day", share=0.8),
        Event(kind=EventKind.BUDGET_THRESHOLD, budget="team", share=0.5),
        Event(kind=EventKind.BUDGET_REFUSED, group="g", deployment="a", error="BudgetExceeded"),
        Event(kind=EventKind.DOWNGRADED, group="g", deployment="cheap"),
        Event(kind=EventKind.HEDGED, group="g", deployment="a"),
        Event(kind=EventKind.LIMIT_LEARNED, deployment="a"),
    ]:
        sink.handle(event)
    hit = Event(kind=EventKind.CACHE_HIT, group="g", deployment="a", message="semantic",
                cost_micros=2_500_000, request_id="r-1")  # fmt: skip
    sink.handle(hit)
    scrape = Scrape(sink)
    assert scrape.series("relay_breaker_transitions_total") == {
        (("deployment", "a"), ("state", "open")): 1,
        (("deployment", "a"), ("state", "half_open")): 1,
    }
    assert scrape.series("relay_budget_thresholds_total") == {
        (("budget", "key/day"), ("threshold", "0.8")): 1,
        (("budget", "team"), ("threshold", "0.5")): 1,
    }
    assert scrape.total("relay_budget_refusals_total", deployment="a") == 1
    assert scrape.total("relay_downgrades_total", deployment="cheap") == 1
    assert scrape.total("relay_hedges_total", deployment="a") == 1
    assert scrape.total("relay_limits_learned_total", deployment="a") == 1
    assert scrape.total("relay_cache_hits_total", kind="semantic") == 1
    assert scrape.total("relay_cache_saved_usd_total", kind="semantic") == 2.5
    assert scrape.total("relay_requests_total", outcome="cache_hit") == 1
    assert "sk-secret" not in sink.render().decode() and "r-1" not in sink.render().decode()


class FakeLive:
    """The router's live state, as a scrape reads it; ``failures`` reads fail first."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures

    def deployments(self) -> list[DeploymentNow]:
        if self.failures:
            self.failures -= 1
            raise RuntimeError("dictionary changed size during iteration")
        return [
            DeploymentNow(deployment="a", provider="openai", model="m", groups=("g",),
                          breaker="half_open", in_flight=3, queued=5, headroom=0.25),
            DeploymentNow(deployment="b", provider="anthropic", model="n", groups=("g",),
                          breaker="closed", in_flight=0, queued=0, headroom=1.0),
        ]  # fmt: skip

    def budgets(self) -> list[dict[str, Any]]:
        return [
            {"budget": "global/day", "spent_usd": 1.5, "limit_usd": 10.0},
            {"budget": "user:alice/month", "spent_usd": 0.5, "limit_usd": 2.0},
        ]


def test_gauges_are_read_from_the_live_state_at_each_scrape() -> None:
    """Nothing before attach; then queue depth, in flight, headroom, a one-hot breaker state
    and budgets (not per user); a read that fails once is retried, twice is left out."""
    sink = PrometheusSink()
    assert not {"llmrelay_queue_depth", "llmrelay_breaker_state"} & Scrape(sink).names()
    live = FakeLive(failures=1)
    sink.attach(live)
    scrape = Scrape(sink)
    assert scrape.series("llmrelay_queue_depth") == {(("deployment", "a"),): 5,
                                                     (("deployment", "b"),): 0}  # fmt: skip
    assert scrape.total("llmrelay_in_flight_requests", deployment="a") == 3
    assert scrape.total("llmrelay_rate_limit_headroom_ratio", deployment="a") == 0.25
    assert scrape.series("llmrelay_breaker_state") == {
        (("deployment", "a"), ("state", "closed")): 0,
        (("deployment", "a"), ("state", "open")): 0,
        (("deployment", "a"), ("state", "half_open")): 1,
        (("deployment", "b"), ("state", "closed")): 1,
        (("deployment", "b"), ("state", "open")): 0,
        (("deployment", "b"), ("state", "half_open")): 0,
    }
    assert scrape.series("llmrelay_budget_spent_usd") == {(("budget", "global/day"),): 1.5}
    assert scrape.series("llmrelay_budget_limit_usd") == {(("budget", "global/day"),): 10.0}
    live.failures = 2
    scrape = Scrape(sink)
    assert "llmrelay_queue_depth" not in scrape.names()
    assert scrape.total("llmrelay_budget_spent_usd") == 1.5


def test_two_sinks_keep_apart_and_a_given_registry_is_used() -> None:
    """Each sink has a registry of its own unless given one; none uses the global one."""
    first, second = PrometheusSink(), PrometheusSink()
    first.handle(finished(ok("a")))
    assert Scrape(second).total("llmrelay_requests_total") == 0
    registry = CollectorRegistry()
    given = PrometheusSink(registry=registry)
    assert given.registry is registry and first.registry is not second.registry
    given.handle(finished(ok("a")))
    labels = {"group": "g", "deployment": "a", "outcome": "ok"}
    assert registry.get_sample_value("llmrelay_requests_total", labels) == 1


@pytest.fixture
def served() -> Iterator[PrometheusSink]:
    sink = PrometheusSink(PrometheusSettings(port=0))
    yield sink
    sink.close()


def test_the_metrics_are_served_over_http_until_closed(served: PrometheusSink) -> None:
    """With a port, ``/metrics`` serves the registry; ``close`` stops the server."""
    served.handle(finished(ok("a")))
    port = served.port
    assert port
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=10) as reply:
        body = reply.read()
    assert body == served.render()
    assert b'llmrelay_requests_total{deployment="a",group="g",outcome="ok"} 1.0' in body
    served.close()
    assert served.port is None
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(url, timeout=10)
    served.close()  # twice: nothing more to do
