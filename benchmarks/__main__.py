"""``make bench``: every figure next to its baseline, measured in this one run.

1. The simulator's own throughput (it must never be the bottleneck of other benchmarks).
2. Per-request client overhead of each provider adapter vs a bare aiohttp call.
3. aiohttp vs httpx under concurrency (the choice in docs/decisions/0001-http-client.md).
4. A burst against 1-s limit enforcement: llmrelay (one process and three sharing Redis) vs
   the openai SDK's retries vs LiteLLM's Router.
5. Token estimators: time and error of the heuristic against cl100k.
6. Router overhead per call vs LiteLLM's Router.
7. Hedging on a heavy latency tail: p99 with and without, and what it cost.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time

import aiohttp
import msgspec

from benchmarks import hedging, router, scheduling, tokens
from benchmarks.http_clients import compare
from benchmarks.loadgen import run_load
from llmrelay.providers import Deployment, HttpClient, HttpProvider, default_registry
from llmrelay.testing import TEST_MODELS, make_config, start_simulator_process
from llmrelay.types import ChatRequest, Message

SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2000"))
PROMPT = "Summarise the plot of a film about a heist in one sentence."

ENDPOINTS = {
    "openai": (
        "/v1/chat/completions",
        {"authorization": "Bearer sk-bench"},
        {"model": "sim-openai", "messages": [{"role": "user", "content": PROMPT}]},
    ),
    "anthropic": (
        "/v1/messages",
        {"x-api-key": "sk-bench", "anthropic-version": "2023-06-01"},
        {
            "model": "sim-anthropic",
            "max_tokens": 256,
            "messages": [{"role": "user", "content": PROMPT}],
        },
    ),
    "gemini": (
        "/v1beta/models/sim-gemini:generateContent",
        {"x-goog-api-key": "sk-bench"},
        {"contents": [{"role": "user", "parts": [{"text": PROMPT}]}]},
    ),
    "ollama": (
        "/api/chat",
        {},
        {"model": "sim-ollama", "stream": False, "messages": [{"role": "user", "content": PROMPT}]},
    ),
}
ADAPTERS = [
    ("openai", "sim-openai", "/v1"),
    ("anthropic", "sim-anthropic", ""),
    ("gemini", "sim-gemini", ""),
    ("ollama", "sim-ollama", ""),
]


def section(title: str) -> None:
    print(f"\n## {title}\n", flush=True)


def simulator_throughput(host: str, port: int) -> None:
    section(f"Simulator throughput (latency 0, 32 keep-alive connections, {SECONDS:.0f} s each)")
    print(f"{'API':<10} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | statuses")
    for api, (path, headers, payload) in ENDPOINTS.items():
        body = msgspec.json.encode(payload)
        result = run_load(
            host,
            port,
            path,
            body,
            {**headers, "content-type": "application/json"},
            connections=32,
            seconds=SECONDS,
        )
        print(
            f"{api:<10} | {result.rps:>7.0f} | {result.p50_ms:>7.2f} | {result.p99_ms:>7.2f} | "
            f"{result.statuses}",
            flush=True,
        )
    print("\ntarget: >= 3000 non-streamed req/s")


async def adapter_overhead(url: str) -> None:
    section(f"Adapter overhead per request ({ROUNDS} sequential calls each, interleaved)")
    print(
        f"{'adapter':<10} | {'bare p50 µs':>11} | {'adapter p50 µs':>14} | {'overhead p50 µs':>15} "
        f"| {'bare p99 µs':>11} | {'adapter p99 µs':>14}"
    )
    request = ChatRequest(messages=[Message(role="user", content=PROMPT)], max_tokens=256)
    registry = default_registry()
    async with HttpClient() as client, aiohttp.ClientSession() as bare:
        for provider_name, model, suffix in ADAPTERS:
            provider = registry.create(
                Deployment(
                    provider=provider_name, model=model, api_key="sk-bench", base_url=url + suffix
                ),
                client,
            )
            assert isinstance(provider, HttpProvider)
            wire = provider.encode(request)

            async def bare_call() -> None:
                async with bare.post(wire.url, data=wire.body, headers=wire.headers) as response:  # noqa: B023 - used within the iteration
                    await response.read()
                    assert response.status == 200

            async def adapter_call() -> None:
                await provider.send(request)  # noqa: B023 - used within the iteration

            times: dict[str, list[float]] = {"bare": [], "adapter": []}
            for _ in range(100):  # warm both pools
                await bare_call()
                await adapter_call()
            for _ in range(ROUNDS):
                for name, call in (("bare", bare_call), ("adapter", adapter_call)):
                    start = time.perf_counter()
                    await call()
                    times[name].append(time.perf_counter() - start)
            b50, a50 = (statistics.median(times[k]) * 1e6 for k in ("bare", "adapter"))
            b99, a99 = (sorted(times[k])[int(0.99 * ROUNDS)] * 1e6 for k in ("bare", "adapter"))
            print(
                f"{provider_name:<10} | {b50:>11.0f} | {a50:>14.0f} | {a50 - b50:>15.0f} | "
                f"{b99:>11.0f} | {a99:>14.0f}",
                flush=True,
            )


def main() -> int:
    print("# llmrelay benchmarks")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    only = os.environ.get("BENCH_ONLY", "")
    if only == "tokens":
        section("Token estimation (median of 200 counts per sample)")
        tokens.run()
        return 0
    config = make_config(
        models=[*TEST_MODELS, scheduling.MODEL_SPEC, hedging.MODEL_SPEC], slow_s=hedging.SLOW_S
    )
    with start_simulator_process(config) as sim:
        if only == "hedging":
            section("Hedging on a heavy latency tail (2 % of answers 1 s late)")
            hedging.run(sim)
            return 0
        if only == "router":
            section("Router overhead per call (zero-latency deployment, interleaved)")
            router.run(sim, ROUNDS)
            return 0
        if only == "scheduling":
            section("Scheduling: a burst against 1-s enforcement (RPM-bound and TPM-bound)")
            scheduling.run(sim)
            return 0
        host, port = sim.url.removeprefix("http://").rsplit(":", 1)
        simulator_throughput(host, int(port))
        asyncio.run(adapter_overhead(sim.url))
        section("HTTP client under concurrency: aiohttp vs httpx (2000 requests per cell)")
        path, headers, payload = ENDPOINTS["openai"]
        rows = asyncio.run(
            compare(
                sim.url + path,
                msgspec.json.encode(payload),
                {**headers, "content-type": "application/json"},
                2000,
            )
        )
        print("\n".join(rows))
        section("Scheduling: a burst against 1-s enforcement (RPM-bound and TPM-bound)")
        scheduling.run(sim)
        section("Router overhead per call (zero-latency deployment, interleaved)")
        router.run(sim, ROUNDS)
        section("Hedging on a heavy latency tail (2 % of answers 1 s late)")
        hedging.run(sim)
    section("Token estimation (median of 200 counts per sample)")
    tokens.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
