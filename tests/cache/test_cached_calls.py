"""SmartLLM with the exact response cache: hits, streams replayed, what is never cached."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import AllModelsExhausted, BadRequest, ProviderUnavailable
from llmrelay.events import Event, EventKind
from llmrelay.testing import SimulatorHandle
from llmrelay.types import StreamAccumulator, StreamEnd, StreamEvent, TextDelta

PRICED = {
    "openai/sim-openai": {
        "price": {"input": 1000.0, "output": 1000.0},
        "context_window": 16000,
        "max_output_tokens": 4096,
    }
}


def priced(simulator: SimulatorHandle) -> LLMBuilder:
    """The simulator's OpenAI model, priced, as the one deployment."""
    return (
        LLMBuilder()
        .with_catalog(PRICED)
        .with_primary("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-c1")
    )


@pytest.fixture
async def llm(simulator: SimulatorHandle) -> AsyncIterator[SmartLLM]:
    built = (
        priced(simulator)
        .with_cache("memory", ttl_s=600)
        .with_ledger("sqlite", path=":memory:")
        .with_retries(0)
        .with_circuit_breaker(failure_threshold=100)
        .build()
    )
    yield built
    await built.aclose()


def served(simulator: SimulatorHandle) -> int:
    return int(simulator.usage("sk-c1", "sim-openai")["requests"])


async def collect(stream: AsyncIterator[StreamEvent]) -> list[StreamEvent]:
    return [event async for event in stream]


async def test_a_repeated_deterministic_request_is_answered_from_the_cache(
    llm: SmartLLM, simulator: SimulatorHandle
) -> None:
    seen: list[Event] = []
    llm.router.events.subscribe(seen.append)
    first = await llm.ainvoke("What is the capital of France?", temperature=0)
    again = await llm.ainvoke("What is the capital of France?  ", temperature=0)
    assert served(simulator) == 1
    assert again.content == first.content and again.usage == first.usage
    assert (first.cached, again.cached) == (None, "exact")
    assert again.cost_micros == 0 and again.saved_micros == first.cost_micros > 0
    assert again.request_id and again.request_id != first.request_id
    hits = [e for e in seen if e.kind is EventKind.CACHE_HIT]
    assert [(e.message, e.cost_micros) for e in hits] == [("exact", first.cost_micros)]
    stats = llm.get_stats()
    assert stats["cache_hits"] == {"exact": 1}
    assert stats["saved_usd"] == first.cost_micros / 1e6


async def test_a_streamed_hit_replays_the_same_events(
    llm: SmartLLM, simulator: SimulatorHandle
) -> None:
    first = await collect(llm.astream("Tell me a story", temperature=0))
    again = await collect(llm.astream("Tell me a story", temperature=0))
    assert served(simulator) == 1
    assert again == first
    assert isinstance(first[-1], StreamEnd) and any(isinstance(e, TextDelta) for e in first)
    plain = await llm.ainvoke("Tell me a story", temperature=0)  # a stream's answer, whole
    folded = StreamAccumulator()
    for event in first:
        folded.add(event)
    assert plain.cached == "exact" and plain.content == folded.response().content


async def test_only_deterministic_requests_are_cached_unless_asked(
    llm: SmartLLM, simulator: SimulatorHandle
) -> None:
    await llm.ainvoke("a poem", temperature=0.7)
    await llm.ainvoke("a poem", temperature=0.7)
    assert served(simulator) == 2
    await llm.ainvoke("a poem", temperature=0.7, cache=True)
    hit = await llm.ainvoke("a poem", temperature=0.7, cache=True)
    assert served(simulator) == 3 and hit.cached == "exact"
    skipped = await llm.ainvoke("a poem", temperature=0.7, cache=False)
    assert skipped.cached is None and served(simulator) == 4


async def test_an_error_is_never_cached(llm: SmartLLM, simulator: SimulatorHandle) -> None:
    simulator.set_faults("sim-openai", {"500": 1.0})
    for _ in range(2):
        with pytest.raises((ProviderUnavailable, AllModelsExhausted)):
            await llm.ainvoke("broken", temperature=0)
    simulator.set_faults("sim-openai", {})
    answer = await llm.ainvoke("broken", temperature=0)
    assert answer.cached is None


async def test_an_answer_expires_after_its_ttl(
    llm: SmartLLM, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert llm.cache is not None and llm.cache.exact is not None
    exact: Any = llm.cache.exact
    store = exact.store
    now = [1_000_000.0]
    monkeypatch.setattr(store, "_clock", lambda: now[0])
    monkeypatch.setattr(exact, "_clock", lambda: now[0])
    await llm.ainvoke("ttl", temperature=0, cache_ttl=30)
    now[0] += 29
    assert (await llm.ainvoke("ttl", temperature=0)).cached == "exact"
    now[0] += 2
    assert (await llm.ainvoke("ttl", temperature=0)).cached is None
    assert served(simulator) == 2


async def test_a_bad_cache_option_is_a_bad_request(llm: SmartLLM) -> None:
    with pytest.raises(BadRequest, match="cache_ttl"):
        await llm.ainvoke("x", cache_ttl=-1)
    with pytest.raises(BadRequest, match="cache: expected true or false"):
        await llm.ainvoke("x", cache="yes")  # type: ignore[arg-type]


async def test_a_cache_that_cannot_be_reached_lets_calls_through(
    simulator: SimulatorHandle, caplog: pytest.LogCaptureFixture
) -> None:
    llm = priced(simulator).with_cache("redis", redis_url="redis://127.0.0.1:1/0").build()
    try:
        with caplog.at_level(logging.WARNING, logger="llmrelay.cache"):
            for _ in range(3):
                answer = await llm.ainvoke("still answered", temperature=0)
                assert answer.content and answer.cached is None
        warnings = [r for r in caplog.records if r.name == "llmrelay.cache"]
        assert len(warnings) == 1
        stats = llm.get_stats()["cache"]["exact"]
        assert stats["errors"] >= 1
    finally:
        await llm.aclose()


async def test_the_ledger_records_calls_and_hits(llm: SmartLLM) -> None:
    first = await llm.ainvoke("ledger", temperature=0, user="ann", tags=["docs"])
    await llm.ainvoke("ledger", temperature=0, user="ann", tags=["docs"])
    assert llm.spending is not None and llm.spending.ledger is not None
    totals = await llm.spending.ledger.totals("deployment")
    row = totals["openai/sim-openai"]
    assert row["calls"] == 2 and row["cost_micros"] == first.cost_micros
    assert row["saved_micros"] == first.cost_micros
    assert (await llm.spending.ledger.totals("user"))["ann"]["calls"] == 2


async def test_a_paraphrase_is_answered_by_the_semantic_cache(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """Through SmartLLM: a paraphrase hits, a question with another number does not."""
    pytest.importorskip("sentence_transformers")
    llm = (
        priced(simulator)
        .with_semantic_cache("sqlite", path=str(tmp_path / "semantic.sqlite"))
        .build()
    )
    try:
        first = await llm.ainvoke("How do I reverse a list in Python?", temperature=0)
        again = await llm.ainvoke("How can I reverse a list in Python?", temperature=0)
        other = await llm.ainvoke("What is 2+2?", temperature=0)
        sum_ = await llm.ainvoke("What is 2+3?", temperature=0)
        assert (first.cached, again.cached) == (None, "semantic")
        assert again.content == first.content
        assert other.cached is None and sum_.cached is None
        assert served(simulator) == 3
    finally:
        await llm.aclose()
