"""Hedging on a heavy latency tail: p99 with and without, and the extra requests it cost.

One simulator model answers in 20 ms, except 2 % of its answers which come 1 s late
(the ``slow`` fault). Two deployments of it (two API keys) form one group; 400 requests,
8 at a time, are sent without hedging and then with hedging at the deployment's observed
p95 (budget 10 %). The extra requests are the hedges the router sent.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.testing import SimulatorHandle

MODEL = "bench-tail"
MODEL_SPEC: dict[str, Any] = {
    "name": MODEL,
    "api": "openai",
    "context_window": 16000,
    "max_output_tokens": 4096,
    "ttft_ms": 20,
    "faults": {"slow": 0.02},
}
SLOW_S = 1.0
REQUESTS, CONCURRENCY = 400, 8


def _client(sim: SimulatorHandle, tag: str, hedged: bool) -> SmartLLM:
    common: dict[str, Any] = {
        "base_url": sim.url + "/v1",
        "context_window": 16000,
        "max_output_tokens": 4096,
    }
    builder = (
        LLMBuilder()
        .with_primary("openai", MODEL, api_key=f"sk-{tag}-a", name="a", **common)
        .with_primary("openai", MODEL, api_key=f"sk-{tag}-b", name="b", **common)
    )
    if hedged:
        builder.with_hedging(hedge_quantile=0.95, hedge_budget=0.10)
    return builder.build()


async def _drive(llm: SmartLLM) -> tuple[list[float], int]:
    latencies: list[float] = []
    left = REQUESTS

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            start = time.perf_counter()
            await llm.ainvoke("hello", max_tokens=16)
            latencies.append(time.perf_counter() - start)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    await llm.aclose()
    return latencies, llm.router.hedged


def run(sim: SimulatorHandle) -> None:
    print("| mode | p50 ms | p99 ms | max ms | extra requests sent | answered upstream |")
    print("|---|---:|---:|---:|---:|---:|")
    for tag, hedged in (("plain", False), ("hedged", True)):
        latencies, hedges = asyncio.run(_drive(_client(sim, tag, hedged)))
        latencies.sort()
        upstream = sum(sim.usage(f"sk-{tag}-{k}", MODEL)["requests"] for k in "ab")
        p50 = statistics.median(latencies) * 1e3
        p99 = latencies[int(0.99 * len(latencies))] * 1e3
        name = "hedging at p95, budget 10 %" if hedged else "no hedging"
        print(f"| {name} | {p50:,.0f} | {p99:,.0f} | {latencies[-1] * 1e3:,.0f} | "
              f"{hedges} ({hedges / REQUESTS:.1%}) | {upstream} |", flush=True)  # fmt: skip
    print(
        "\nA cancelled loser is dropped by the simulator before it answers, so 'answered "
        "upstream'\ncounts fewer than were sent; a real provider may bill the loser's input."
    )
