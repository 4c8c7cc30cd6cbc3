"""Router overhead: ``SmartLLM.ainvoke`` minus a direct adapter call, vs LiteLLM's Router.

Both against the zero-latency simulator model, interleaved call by call, limits set but
never binding. LiteLLM's figure is ``Router.acompletion`` minus the openai SDK's
``create``, measured the same way in its own venv.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from benchmarks.scheduling import LITELLM_PYTHON, _litellm
from llmrelay import LLMBuilder
from llmrelay.providers import Deployment, HttpClient, default_registry
from llmrelay.testing import SimulatorHandle
from llmrelay.types import ChatRequest, Message

PROMPT = "Summarise a heist film in one sentence."


async def llmrelay_overhead(sim: SimulatorHandle, rounds: int) -> tuple[float, float]:
    deployment: dict[str, Any] = {
        "base_url": sim.url + "/v1",
        "api_key": "sk-router",
        "context_window": 16000,
        "max_output_tokens": 4096,
        "rpm": 10**7,
        "tpm": 10**10,
    }
    llm = LLMBuilder().with_primary("openai", "sim-openai", **deployment).build()
    request = ChatRequest(messages=[Message(role="user", content=PROMPT)], max_tokens=64)
    async with HttpClient() as client:
        bare = default_registry().create(
            Deployment(provider="openai", model="sim-openai", api_key="sk-router",
                       base_url=sim.url + "/v1"),
            client,
        )  # fmt: skip
        times: dict[str, list[float]] = {"bare": [], "router": []}
        for _ in range(100):
            await bare.send(request)
            await llm.ainvoke(request)
        for _ in range(rounds):
            for name in ("bare", "router"):
                start = time.perf_counter()
                if name == "bare":
                    await bare.send(request)
                else:
                    await llm.ainvoke(request)
                times[name].append(time.perf_counter() - start)
    await llm.aclose()
    at99 = int(0.99 * rounds)
    p50 = (statistics.median(times["router"]) - statistics.median(times["bare"])) * 1e6
    p99 = (sorted(times["router"])[at99] - sorted(times["bare"])[at99]) * 1e6
    return p50, p99


def run(sim: SimulatorHandle, rounds: int) -> None:
    p50, p99 = asyncio.run(llmrelay_overhead(sim, rounds))
    print("| router | overhead p50 µs | overhead p99 µs |")
    print("|---|---:|---:|")
    print(f"| llmrelay SmartLLM.ainvoke (vs the adapter alone) | {p50:,.0f} | {p99:,.0f} |")
    if LITELLM_PYTHON.exists():
        data = _litellm(["overhead", sim.url, "sk-router-litellm", "sim-openai", str(rounds)])
        l50 = (data["router"][0] - data["sdk"][0]) * 1e6
        l99 = (data["router"][1] - data["sdk"][1]) * 1e6
        name = f"LiteLLM {data['version']} Router.acompletion (vs the openai SDK)"
        print(f"| {name} | {l50:,.0f} | {l99:,.0f} |")
        print(f"\nllmrelay's p50 overhead is {p50 / l50:.1%} of LiteLLM's. target: p50 <= 100 µs")
    else:
        print("LiteLLM is not installed in .bench-venv; its row is skipped")
