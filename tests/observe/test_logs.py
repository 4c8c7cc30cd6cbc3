"""The log sink: one JSON line per request, with its request id and route; no secrets."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import AllModelsExhausted
from llmrelay.events import Event, EventKind
from llmrelay.observe.logs import LogSettings, LogSink, redact
from llmrelay.testing import SimulatorHandle


def lines(out: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def two_deployments(simulator: SimulatorHandle, sink: LogSink) -> SmartLLM:
    return (
        LLMBuilder()
        .with_primary("anthropic", "sim-anthropic", base_url=simulator.url, api_key="sk-l1")
        .with_fallback("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-l2")
        .with_routing(retries=0)
        .with_cache("memory")
        .with_observer(sink)
        .build()
    )


async def test_each_request_is_one_line_with_its_id_route_and_figures(
    simulator: SimulatorHandle,
) -> None:
    """An answer, a fallback, a failure and a cache hit: four ``request`` lines, at the
    levels the docs give, each naming its request id and the route it took."""
    out = io.StringIO()
    llm = two_deployments(simulator, LogSink(LogSettings(level="info"), file=out))
    try:
        plain = await llm.ainvoke("first question", user="ana", tags=["search"])
        simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
        fell = await llm.ainvoke("second question", metadata={"task": "summarize"})
        simulator.set_faults("sim-openai", {"500": 1.0})
        with contextlib.suppress(AllModelsExhausted):
            await llm.ainvoke("third question")
        simulator.set_faults("sim-anthropic", {})
        hit = await llm.ainvoke("first question", user="ana", tags=["search"], temperature=0)
        hit = await llm.ainvoke("first question", user="ana", tags=["search"], temperature=0)
    finally:
        await llm.aclose()
    logged = [entry for entry in lines(out) if entry["event"] == "request"]
    assert [(e["level"], e["outcome"]) for e in logged] == [
        ("info", "ok"),
        ("info", "ok"),
        ("error", "AllModelsExhausted"),
        ("info", "ok"),
        ("info", "cache_hit"),
    ]
    first, second, failed, _, cached = logged
    assert first["request_id"] == plain.request_id
    assert first["route"] == ["anthropic/sim-anthropic: ok"]
    assert first["user"] == "ana" and first["tags"] == ["search"]
    assert first["input_tokens"] == plain.usage.input_tokens
    assert first["cost_usd"] == plain.cost_usd
    assert second["request_id"] == fell.request_id and second["fell_back"] is True
    assert second["task"] == "summarize"
    assert second["route"] == ["anthropic/sim-anthropic: Overloaded", "openai/sim-openai: ok"]
    assert failed["route"] == ["anthropic/sim-anthropic: Overloaded",
                               "openai/sim-openai: ProviderUnavailable"]  # fmt: skip
    assert cached["request_id"] == hit.request_id and cached["cache"] == "exact"
    assert all("timestamp" in e for e in logged)
    assert "sk-l1" not in out.getvalue() and "sk-l2" not in out.getvalue()


def test_failed_attempts_log_at_debug_only_when_asked() -> None:
    attempt = Event(kind=EventKind.ATTEMPT_FAILED, deployment="a", error="Timeout", request_id="r")
    quiet, loud = io.StringIO(), io.StringIO()
    LogSink(LogSettings(level="info"), file=quiet).handle(attempt)
    LogSink(LogSettings(level="debug"), file=loud).handle(attempt)
    assert quiet.getvalue() == ""
    assert lines(loud)[0] | {"timestamp": None} == {
        "event": "attempt failed", "level": "debug", "timestamp": None, "request_id": "r",
        "group": "", "deployment": "a", "error": "Timeout", "message": "", "attempt": 0,
        "latency_ms": 0.0, "logger": "llmrelay",
    }  # fmt: skip


def test_a_breaker_opening_is_a_warning_and_closing_is_info() -> None:
    out = io.StringIO()
    sink = LogSink(file=out)
    for change in (
        "closed -> open",
        "half_open -> open",
        "open -> half_open",
        "half_open -> closed",
    ):
        sink.handle(Event(kind=EventKind.BREAKER_CHANGED, deployment="d", message=change))
    assert [e["level"] for e in lines(out)] == ["warning", "warning", "info", "info"]


def test_keys_and_tokens_in_messages_are_masked() -> None:
    """An error message quoting a key or a bearer token is written with the secret masked."""
    out = io.StringIO()
    message = "bad key sk-proj-abcdef123456 and Bearer eyJhbGciOi.J9x; AIzaSyA1234567890abcdef"
    LogSink(LogSettings(level="debug"), file=out).handle(
        Event(kind=EventKind.ATTEMPT_FAILED, deployment="d", error="Auth", message=message)
    )
    written = lines(out)[0]["message"]
    assert written == "bad key sk-proj-*** and Bearer ***; AIza***"
    assert redact("sk-ant-api03-XYZxyz0123") == "sk-ant-***"
    assert redact("no secret here, sk-1") == "no secret here, sk-1"


def test_console_format_writes_readable_lines() -> None:
    out = io.StringIO()
    LogSink(LogSettings(format="console"), file=out).handle(
        Event(kind=EventKind.BUDGET_THRESHOLD, budget="daily", share=0.8)
    )
    assert "budget threshold" in out.getvalue() and "daily" in out.getvalue()
