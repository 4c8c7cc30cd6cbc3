"""Cost truth: what llmrelay records equals what the providers bill, to the micro-dollar.

The simulator serves three models under their real names, priced as the catalog prices
them, caching prompts as each provider does, and bills every call in its own ledger. A
mixed workload — plain and streamed calls, tool calls, OpenAI's automatic prefix caching,
Anthropic's cache writes and reads, a Gemini prompt past its long-context threshold —
must leave llmrelay's spend ledger equal to the simulator's, per deployment.
"""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path
from typing import Any

import pytest

from llmrelay import LLMBuilder
from llmrelay.catalog import Catalog
from llmrelay.cost import Ledger, PostgresLedger, SqliteLedger, record_of
from llmrelay.testing import SimulatorHandle
from llmrelay.types import ChatRequest, StreamEnd, Usage
from services import database_url

MODELS = {
    "openai": "gpt-4o-mini",
    "anthropic": "claude-sonnet-4-5",
    "gemini": "gemini-2.5-pro",
}
KEYS = {"openai": "sk-cost-o", "anthropic": "sk-cost-a", "gemini": "sk-cost-g"}
ROOMY = {  # limits far above the workload, so the scheduler does not pace it
    "openai": {"rpm": 100_000, "tpm": 100_000_000},
    "anthropic": {"rpm": 100_000, "itpm": 100_000_000, "otpm": 100_000_000},
    "gemini": {"rpm": 100_000, "tpm": 100_000_000},
}


def sim_model(provider: str) -> dict[str, Any]:
    """The simulator's model, priced exactly as the catalog prices it."""
    info = Catalog.default().require(provider, MODELS[provider])
    assert info.price is not None
    price = info.price
    spec: dict[str, Any] = {
        "name": MODELS[provider],
        "api": provider,
        "context_window": info.context_window,
        "max_output_tokens": info.max_output_tokens,
        "input_price_per_mtok": price.input,
        "output_price_per_mtok": price.output,
        "cached_input_price_per_mtok": price.cached_input,
        "scripts": [
            {
                "pattern": "weather in (\\w+)",
                "tool_call": "get_weather",
                "arguments": {"city": "Paris"},
            }
        ],
    }
    if price.cache_write is not None:
        spec["cache_write_price_per_mtok"] = price.cache_write
    if price.long_context is not None:
        tier = price.long_context
        spec["long_context"] = {
            "above": tier.above,
            "input_price_per_mtok": tier.input,
            "output_price_per_mtok": tier.output,
            "cached_input_price_per_mtok": tier.cached_input,
        }
    return spec


def words(n: int, seed: str) -> str:
    return " ".join(f"{seed}{i % 97}" for i in range(n))


WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


async def test_the_ledger_matches_the_providers_bill_to_the_micro_dollar(
    simulator: SimulatorHandle,
) -> None:
    simulator.configure({"models": [sim_model(p) for p in MODELS]})
    builder = LLMBuilder().with_ledger("sqlite", path=":memory:")
    for provider, model in MODELS.items():
        base = simulator.url + ("/v1" if provider == "openai" else "")
        builder.with_primary(provider, model, group=provider, base_url=base,
                             api_key=KEYS[provider], **ROOMY[provider])  # fmt: skip
    llm = builder.build()
    try:
        shared_prefix = words(1500, "ctx")  # ≥ 1,024 tokens: OpenAI caches it on its own
        for i in range(3):
            await llm.ainvoke([{"role": "system", "content": shared_prefix},
                               {"role": "user", "content": f"question {i}"}],
                              model="openai", max_tokens=50)  # fmt: skip
        events = [e async for e in llm.astream("stream me a line", model="openai")]
        assert isinstance(events[-1], StreamEnd) and events[-1].usage is not None
        called = await llm.ainvoke("what is the weather in Paris", model="openai",
                                   tools=[WEATHER_TOOL])  # fmt: skip
        assert called.tool_calls

        marked: list[dict[str, Any]] = [{"type": "text", "text": words(2500, "doc"),
                                         "cache_control": {"type": "ephemeral"}}]  # fmt: skip

        def prompt(question: str) -> list[dict[str, Any]]:
            return [{"role": "system", "content": marked}, {"role": "user", "content": question}]

        anthropic_answers = []
        for i in range(3):  # the first writes the cache, the next two read it
            anthropic_answers.append(
                await llm.ainvoke(prompt(f"q{i}"), model="anthropic", max_tokens=40)
            )
        usage = [a.usage for a in anthropic_answers]
        assert usage[0].cache_write_input_tokens > 0 and usage[0].cached_input_tokens == 0
        assert usage[1].cached_input_tokens == usage[0].cache_write_input_tokens
        streamed = [e async for e in llm.astream(prompt("s"), model="anthropic", max_tokens=40)]
        end = streamed[-1]
        assert isinstance(end, StreamEnd) and end.usage and end.usage.cached_input_tokens > 0

        long_prompt = words(210_000, "w")  # past Gemini 2.5 Pro's 200k-token tier
        long_answer = await llm.ainvoke(long_prompt, model="gemini", max_tokens=20)
        assert long_answer.usage.input_tokens > 200_000
        await asyncio.gather(*(llm.ainvoke(f"short {i}", model="gemini") for i in range(3)))

        assert llm.spending is not None and llm.spending.ledger is not None
        recorded = await llm.spending.ledger.totals("deployment")
        billed = simulator.ledger()["keys"]
        for provider, model in MODELS.items():
            ours = recorded[f"{provider}/{model}"]
            theirs = billed[KEYS[provider]][model]
            assert ours["cost_micros"] == theirs["cost_micros"], provider
            assert ours["calls"] == theirs["requests"], provider
            assert ours["input_tokens"] == theirs["input_tokens"], provider
            assert ours["output_tokens"] == theirs["output_tokens"], provider
        assert recorded["openai/gpt-4o-mini"]["cached_input_tokens"] > 0
        assert recorded["anthropic/claude-sonnet-4-5"]["cache_write_input_tokens"] > 0
    finally:
        await llm.aclose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
async def test_the_ledger_keeps_every_row_and_sums_them(backend: str, tmp_path: Path) -> None:
    """Rows queued before close are written; sums per deployment and per user."""
    if backend == "postgres":
        url = database_url()
        store: Any = PostgresLedger(url)
        try:
            await store.totals()
        except (OSError, ConnectionError) as exc:
            pytest.skip(f"no PostgreSQL at {url} ({exc}): start one or set DATABASE_URL")
    else:
        store = SqliteLedger(tmp_path / "spend.sqlite")
    deployment = f"test/{uuid.uuid4().hex}"  # this run's rows only
    ledger = Ledger(store, flush_s=3600)
    usage = Usage(input_tokens=2_000, cached_input_tokens=1_024, output_tokens=50)
    request = ChatRequest(messages=[], user="ann", tags=["a", "b"])
    for i in range(3):
        ledger.record(record_of(request, f"r{i}", "g", deployment, usage, 123, at=float(i)))
    totals = (await ledger.totals("deployment"))[deployment]
    assert totals == {"calls": 3, "input_tokens": 6_000, "cached_input_tokens": 3_072,
                      "cache_write_input_tokens": 0, "output_tokens": 150, "cost_micros": 369,
                      "saved_micros": 0}  # fmt: skip
    ledger.record(record_of(request, "r3", "g", deployment, usage, 1, at=3.0))
    await ledger.aclose()  # the queued row is written on close
    if backend == "sqlite":
        reopened = SqliteLedger(tmp_path / "spend.sqlite")
        assert (await reopened.totals("deployment"))[deployment]["calls"] == 4
        assert (await reopened.totals("user"))["ann"]["cost_micros"] == 370
        await reopened.aclose()
