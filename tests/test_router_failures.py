"""The router's one failure path, against the simulator over real HTTP.

Each test counts upstream sends in the simulator's ledger rather than timing anything: a
deployment that is left at once was sent to once.
"""

from __future__ import annotations

from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import BadRequest, StreamInterrupted
from llmrelay.providers import Deployment, default_registry
from llmrelay.testing import SimulatorHandle
from llmrelay.types import ChatRequest, Message, ResponseFormat

SIM = {"context_window": 16000, "max_output_tokens": 4096}


def openai(sim: SimulatorHandle, model: str = "sim-openai", **kw: Any) -> dict[str, Any]:
    return {"base_url": sim.url + "/v1", "api_key": "sk-a", **SIM, **kw, "model": model}


def anthropic(sim: SimulatorHandle, **kw: Any) -> dict[str, Any]:
    return {"base_url": sim.url, "api_key": "sk-b", **SIM, **kw, "model": "sim-anthropic"}


def primary_and_fallback(
    primary: tuple[str, dict[str, Any]], fallback: tuple[str, dict[str, Any]], **routing: Any
) -> SmartLLM:
    builder = LLMBuilder().with_primary(primary[0], **primary[1])
    builder.with_fallback(fallback[0], **fallback[1])
    if routing:
        builder.with_routing(**routing)
    return builder.build()


async def test_an_overloaded_primary_is_left_at_once_for_a_healthy_fallback(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A 529 with another deployment free now: one send to the primary, then the fallback."""
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    llm = primary_and_fallback(("anthropic", anthropic(simulator)), ("openai", openai(simulator)))
    closing.append(llm)
    response = await llm.ainvoke("hello")
    assert response.deployment == "openai/sim-openai"
    assert [(a.deployment, a.error, a.status_code) for a in response.attempts] == [
        ("anthropic/sim-anthropic", "Overloaded", 529),
        ("openai/sim-openai", None, 200),
    ]
    assert simulator.usage("sk-b", "sim-anthropic")["refused"] == {"fault:overloaded": 1}


async def test_a_long_retry_after_sends_to_the_fallback_not_the_waiting_primary(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A 429 with Retry-After 30: the fallback answers now; the primary was sent to once."""
    simulator.set_model("sim-openai", rpm=2, short_window_s=0)
    drain = default_registry().create(
        Deployment(
            provider="openai", model="sim-openai", api_key="sk-a", base_url=simulator.url + "/v1"
        )
    )
    for _ in range(2):
        await drain.send(ChatRequest(messages=[Message(role="user", content="x")]))
    await drain.aclose()
    llm = primary_and_fallback(("openai", openai(simulator)), ("anthropic", anthropic(simulator)))
    closing.append(llm)
    response = await llm.ainvoke("hello")
    assert response.deployment == "anthropic/sim-anthropic"
    first = response.attempts[0]
    assert (first.error, first.status_code) == ("RateLimited", 429)
    assert len(response.attempts) == 2
    assert simulator.usage("sk-a", "sim-openai")["refused"] == {"429": 1}
    again = await llm.ainvoke("hello again")  # blocked for 30 s: not even tried
    assert again.deployment == "anthropic/sim-anthropic"
    assert simulator.usage("sk-a", "sim-openai")["refused"] == {"429": 1}


async def test_a_short_retry_after_is_waited_out_on_the_same_deployment(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A 429 whose Retry-After is within stay_within_s is retried where it was sent."""
    simulator.set_faults("sim-openai", {"rate_limit": 0.5})
    simulator.configure({"seed": 3})
    llm = primary_and_fallback(
        ("openai", openai(simulator)), ("anthropic", anthropic(simulator)), retries=4
    )
    closing.append(llm)
    responses = [await llm.ainvoke(f"hi {n}") for n in range(4)]
    assert all(r.deployment == "openai/sim-openai" for r in responses)
    retried = [r for r in responses if len(r.attempts) > 1]
    assert retried and all(a.status_code == 429 for r in retried for a in r.attempts[:-1])
    assert simulator.usage("sk-b", "sim-anthropic")["requests"] == 0


async def test_stats_count_every_routed_request_whatever_its_outcome(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Answered, refused as a bad request, interrupted mid-stream: three requests, three counted."""
    llm = LLMBuilder().with_primary("openai", **openai(simulator)).build()
    closing.append(llm)
    await llm.ainvoke("hello")
    with pytest.raises(BadRequest):
        await llm.ainvoke("hello", max_tokens=-1)
    simulator.set_faults("sim-openai", {"stream_cut": 1.0})
    with pytest.raises(StreamInterrupted):
        async for _ in llm.astream("one two three four five six"):
            pass
    stats = llm.get_stats()
    assert stats["requests"] == 3


async def test_json_mode_skips_a_primary_that_cannot_do_it(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """JSON-object mode on an Anthropic primary goes to the fallback that can, unsent there."""
    llm = primary_and_fallback(("anthropic", anthropic(simulator)), ("openai", openai(simulator)))
    closing.append(llm)
    response = await llm.ainvoke(
        "give me a JSON object", response_format=ResponseFormat(type="json_object")
    )
    assert response.deployment == "openai/sim-openai"
    assert response.attempts[0].error == "BadRequest"
    assert "not sent" in response.attempts[0].message
    assert simulator.usage("sk-b", "sim-anthropic")["requests"] == 0


async def test_a_request_no_candidate_can_serve_is_a_bad_request(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """When no deployment can serve the request, BadRequest says why; nothing is sent."""
    llm = LLMBuilder().with_primary("anthropic", **anthropic(simulator)).build()
    closing.append(llm)
    with pytest.raises(BadRequest, match="JSON"):
        await llm.ainvoke("x", response_format=ResponseFormat(type="json_object"))
    assert simulator.ledger()["totals"]["requests"] == 0


async def test_a_context_error_during_a_hedge_follows_the_fallback_policy(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """Hedging on, the primary's window too small: the next tried is the smallest larger one."""
    simulator.configure({"models": [
        {"name": "sim-huge", "api": "openai", "context_window": 500000, "max_output_tokens": 4096},
        {"name": "sim-mid", "api": "openai", "context_window": 50000, "max_output_tokens": 4096},
    ]})  # fmt: skip
    simulator.set_model("sim-openai", context_window=2000)
    llm = (
        LLMBuilder()
        .with_primary("openai", **openai(simulator))
        .with_fallback("openai", **openai(simulator, "sim-huge", context_window=500000))
        .with_fallback("openai", **openai(simulator, "sim-mid", context_window=50000))
        .with_hedging(hedge_after_s=30.0)
        .build()
    )
    closing.append(llm)
    response = await llm.ainvoke("word " * 5_000, max_tokens=10)
    assert response.deployment == "openai/sim-mid"
    assert simulator.usage("sk-a", "sim-huge")["requests"] == 0


async def test_a_model_missing_from_the_catalog_learns_its_window_from_the_error(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """No window configured or reported: the provider's context error teaches it, and the
    next long prompt goes straight to the larger deployment."""
    simulator.configure({"models": [
        {"name": "my-finetune", "api": "openai", "context_window": 2000, "max_output_tokens": 512},
        {"name": "sim-huge", "api": "openai", "context_window": 500000, "max_output_tokens": 4096},
    ]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_primary("openai", model="my-finetune", base_url=simulator.url + "/v1", api_key="sk-a")
        .with_fallback("openai", **openai(simulator, "sim-huge", context_window=500000))
        .build()
    )
    closing.append(llm)
    first = await llm.ainvoke("word " * 5_000, max_tokens=10)
    assert first.deployment == "openai/sim-huge"
    assert first.attempts[0].error == "ContextWindowExceeded"
    second = await llm.ainvoke("word " * 5_000, max_tokens=10)
    assert second.attempts[0].message.endswith("not sent")
    assert simulator.usage("sk-a", "my-finetune")["refused"] == {"400": 1}


async def test_ollama_llama32_works_with_no_extra_settings(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """`ollama/llama3.2` with only a base URL: answered, its window as the server reports it."""
    simulator.configure({"models": [
        {"name": "llama3.2", "api": "ollama", "context_window": 131072, "max_output_tokens": 8192},
    ]})  # fmt: skip
    llm = LLMBuilder().with_primary("ollama", "llama3.2", base_url=simulator.url).build()
    closing.append(llm)
    response = await llm.ainvoke("hello")
    assert response.content == "Echo: hello"
    assert llm.router.group("default").primary[0].context_window == 131072


async def test_a_made_up_openai_compatible_model_learns_its_window_from_the_server(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """A fine-tuned name on a vLLM server: its max_model_len is asked, then a prompt too long
    for it goes to the fallback without being sent."""
    simulator.configure({"models": [
        {"name": "acme/support-ft-v3", "api": "vllm", "context_window": 4096,
         "max_output_tokens": 1024},
    ]})  # fmt: skip
    llm = (
        LLMBuilder()
        .with_primary("openai_compatible", "acme/support-ft-v3", base_url=simulator.url + "/v1")
        .with_fallback("openai", **openai(simulator))
        .build()
    )
    closing.append(llm)
    assert (await llm.ainvoke("hello")).deployment == "openai_compatible/acme/support-ft-v3"
    assert llm.router.group("default").primary[0].context_window == 4096
    long = await llm.ainvoke("word " * 6_000, max_tokens=10)
    assert long.deployment == "openai/sim-openai"
    assert long.attempts[0].message.endswith("not sent")
