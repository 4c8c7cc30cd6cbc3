"""A real SmartLLM run against the simulator is recorded row by row; feedback finds its row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmrelay import ChatRequest, ChatResponse, LLMBuilder
from llmrelay.analytics import Analytics, AnalyticsSettings, AnalyticsSink
from llmrelay.errors import AllModelsExhausted, BadRequest
from llmrelay.testing import SimulatorHandle

ANTHROPIC, OPENAI = "anthropic/sim-anthropic", "openai/sim-openai"
PRICE = {"price": {"input": 1000.0, "output": 1000.0}, "context_window": 16000,
         "max_output_tokens": 4096}  # fmt: skip


def scored(request: ChatRequest, response: ChatResponse) -> float | None:
    """The evaluator: any answer with text is a good one."""
    return 1.0 if response.content else 0.0


async def test_every_request_of_a_run_is_one_row(
    settings: AnalyticsSettings, simulator: SimulatorHandle
) -> None:
    """Answered, streamed, fell back, failed and cached requests each leave the row their
    answer describes; feedback lands on the request it names."""
    sink = AnalyticsSink(settings, evaluator=scored)
    llm = (
        LLMBuilder()
        .with_catalog({ANTHROPIC: PRICE, OPENAI: PRICE})
        .with_primary("anthropic", "sim-anthropic", base_url=simulator.url, api_key="sk-r1")
        .with_fallback("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-r2")
        .with_routing(retries=0)
        .with_cache("memory")
        .with_observer(sink)
        .build()
    )
    try:
        plain = await llm.ainvoke("first question", metadata={"task": "summarize"},
                                  user="ana", tags=["search", "web"])  # fmt: skip
        async for _ in llm.astream("tell me a story", metadata={"task": "chat"}):
            pass
        simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
        fell = await llm.ainvoke("second question", metadata={"task": "summarize"})
        simulator.set_faults("sim-openai", {"500": 1.0})
        with pytest.raises(AllModelsExhausted):
            await llm.ainvoke("third question", metadata={"task": "summarize"})
        simulator.set_faults("sim-anthropic", {})
        simulator.set_faults("sim-openai", {})
        first = await llm.ainvoke("a cached question", temperature=0)
        hit = await llm.ainvoke("a cached question", temperature=0)
        assert hit.cached == "exact"
        assert llm.observer is not None and llm.observer.flush(timeout=30)

        analytics = sink.analytics()  # rows may still be queued: feedback writes them first
        analytics.feedback(fell.request_id, 0.25, "too terse")
        with pytest.raises(BadRequest, match="request_id"):
            analytics.feedback("not-a-request", 0.5)
        columns = ("request_id", "deployment", "task", "tags", '"user"', "error", "cached",
                   "attempts", "fell_back", "streamed", "cost_micros", "saved_micros",
                   "input_tokens", "output_tokens", "quality")  # fmt: skip
        rows: dict[str, dict[str, Any]] = {
            row[0]: dict(zip((c.strip('"') for c in columns), row, strict=True))
            for row in analytics.store.fetch(f"SELECT {', '.join(columns)} FROM analytics_requests")
        }
        assert len(rows) == 6
        row = rows[plain.request_id]
        assert (row["deployment"], row["task"], row["tags"], row["user"]) == (
            ANTHROPIC, "summarize", "search,web", "ana")  # fmt: skip
        assert (row["error"], row["attempts"], row["fell_back"], row["quality"]) == (
            None, 1, 0, 1.0)  # fmt: skip
        assert row["cost_micros"] == plain.cost_micros > 0
        assert (row["input_tokens"], row["output_tokens"]) == (
            plain.usage.input_tokens, plain.usage.output_tokens)  # fmt: skip
        (stream,) = [r for r in rows.values() if r["streamed"]]
        assert (stream["task"], stream["deployment"], stream["error"]) == ("chat", ANTHROPIC, None)
        row = rows[fell.request_id]
        assert (row["deployment"], row["attempts"], row["fell_back"]) == (OPENAI, 2, 1)
        assert row["cost_micros"] == fell.cost_micros > 0
        (failure,) = [r for r in rows.values() if r["error"]]
        assert (failure["error"], failure["deployment"], failure["attempts"]) == (
            "AllModelsExhausted", OPENAI, 2)  # fmt: skip
        assert (failure["cost_micros"], failure["quality"]) == (0, None)
        row = rows[hit.request_id]
        assert (row["cached"], row["deployment"], row["cost_micros"]) == ("exact", ANTHROPIC, 0)
        assert row["saved_micros"] == first.cost_micros > 0

        feedback = analytics.store.fetch("SELECT request_id, score, comment FROM "
                                         "analytics_feedback")  # fmt: skip
        assert feedback == [(fell.request_id, 0.25, "too terse")]
        by_deployment = {s.deployment: s for s in analytics.stats(by=("deployment",))}
        on_openai = by_deployment[OPENAI]
        assert (on_openai.requests, on_openai.answered, on_openai.failed) == (2, 1, 1)
        assert (on_openai.quality_mean, on_openai.quality_n) == (0.25, 1)  # feedback wins
        on_anthropic = by_deployment[ANTHROPIC]
        assert (on_anthropic.calls, on_anthropic.errors) == (5, 2)
        assert (on_anthropic.cache_hits, on_anthropic.saved_micros) == (1, first.cost_micros)
        assert on_anthropic.ttft_p50_s is not None
    finally:
        await llm.aclose()
    assert sink.written == 6 and sink.write_errors == 0


async def test_the_sink_is_configured_by_name(tmp_path: Path, simulator: SimulatorHandle) -> None:
    """``with_observer("analytics", …)`` opens the sink from its settings; closing the
    client writes what is queued."""
    path = tmp_path / "named.sqlite"
    llm = (
        LLMBuilder()
        .with_primary("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-n1")
        .with_observer("analytics", path=str(path), flush_s=3600, task_key="job")
        .build()
    )
    try:
        answer = await llm.ainvoke("hello", metadata={"job": "greet"})
    finally:
        await llm.aclose()
    with Analytics.open(AnalyticsSettings(path=str(path)), create=False) as analytics:
        rows = analytics.store.fetch("SELECT request_id, task FROM analytics_requests")
    assert rows == [(answer.request_id, "greet")]
