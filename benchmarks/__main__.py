"""``make bench``: every figure next to its baseline, measured in this one run.

Sections (``BENCH_ONLY=hotpath,tokens make bench`` runs some of them):

- simulator: the simulator's own throughput (it must never be the bottleneck elsewhere);
- adapters: per-request overhead of each provider adapter over a bare aiohttp call;
- http: aiohttp vs httpx under concurrency (docs/decisions/0001-http-client.md);
- scheduling: a burst against 1-s limit enforcement: llmrelay (one process, and three
  sharing Redis) vs the openai SDK's retries vs LiteLLM's Router;
- hotpath: a routed call vs a bare call, sequential, under load, streamed, and start-up;
  llmrelay, the openai SDK and LiteLLM side by side;
- hedging: p99 with and without hedging on a heavy latency tail, and what it cost;
- tokens: time and error of the heuristic estimator against cl100k;
- media: the file-name parser against guessit alone, its cache, LLM batching and accuracy;
- agents: plans run as a DAG against their critical path and serial time; 200 runs at once;
- money: what budgets (memory, SQLite, Redis counters) and the spend ledger add to a call,
  exact-cache lookups and hits against misses, and the semantic cache's figures;
- observe: what each observability sink, and all of them together, add to a call;
- gateway: direct to the simulator vs through ``llmrelay serve`` vs through LiteLLM's
  proxy: saturation, added latency at 200 / 500 / 1,000 req/s (paired), RSS, a soak.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp
import msgspec

from benchmarks import (
    agents,
    gateway,
    hedging,
    hotpath,
    media,
    money,
    observe,
    scheduling,
    tokens,
)
from benchmarks.bare import paired
from benchmarks.http_clients import compare
from benchmarks.loadgen import run_load
from llmrelay.providers import Deployment, HttpClient, HttpProvider, default_registry
from llmrelay.testing import TEST_MODELS, SimulatorHandle, make_config, start_simulator_process
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


def simulator_throughput(sim: SimulatorHandle) -> None:
    host, port = sim.url.removeprefix("http://").rsplit(":", 1)
    print(f"{'API':<10} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7} | statuses")
    for api, (path, headers, payload) in ENDPOINTS.items():
        body = msgspec.json.encode(payload)
        result = run_load(
            host,
            int(port),
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
    print(f"{ROUNDS} sequential calls each, alternating with a bare aiohttp call of the same bytes")
    print("\n| adapter | bare p50 µs | adapter p50 µs | added µs (median of paired differences) "
          "| bare p99 µs | adapter p99 µs |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|")
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

            base, adapter = await paired(bare_call, adapter_call, ROUNDS, 100)
            added = statistics.median(a - b for b, a in zip(base, adapter, strict=True))
            p99 = int(0.99 * (ROUNDS - 1))
            print(
                f"| {provider_name} | {statistics.median(base) * 1e6:,.0f} | "
                f"{statistics.median(adapter) * 1e6:,.0f} | +{added * 1e6:,.0f} | "
                f"{sorted(base)[p99] * 1e6:,.0f} | {sorted(adapter)[p99] * 1e6:,.0f} |",
                flush=True,
            )


def http_clients(url: str) -> None:
    path, headers, payload = ENDPOINTS["openai"]
    rows = asyncio.run(
        compare(
            url + path,
            msgspec.json.encode(payload),
            {**headers, "content-type": "application/json"},
            2000,
        )
    )
    print("\n".join(rows))


@dataclass(frozen=True)
class Section:
    title: str
    run: Callable[[SimulatorHandle], None]


SECTIONS: dict[str, Section] = {
    "simulator": Section(
        f"Simulator throughput (latency 0, 32 keep-alive connections, {SECONDS:.0f} s each)",
        simulator_throughput,
    ),
    "adapters": Section(
        "Adapter overhead per request", lambda sim: asyncio.run(adapter_overhead(sim.url))
    ),
    "http": Section(
        "HTTP client under concurrency: aiohttp vs httpx (2000 requests per cell)",
        lambda sim: http_clients(sim.url),
    ),
    "scheduling": Section(
        "Scheduling: a burst against 1-s enforcement (RPM-bound and TPM-bound)", scheduling.run
    ),
    "hotpath": Section(
        "The hot path: a routed call vs a bare aiohttp call (upstream and client on their own "
        "cores)",
        lambda sim: hotpath.run(sim, sim.pid or 0),
    ),
    "hedging": Section("Hedging on a heavy latency tail (2 % of answers 1 s late)", hedging.run),
    "tokens": Section(
        "Token estimation (median of 200 counts per sample)", lambda sim: tokens.run()
    ),
    "media": Section(
        "media: file names, the deterministic path, the cache, LLM batching and accuracy",
        lambda sim: media.run(),
    ),
    "agents": Section(
        "agents: parallel steps against the critical path, and 200 runs at once",
        lambda sim: agents.run(),
    ),
    "money": Section(
        "money: budgets and the ledger against the bare router, the exact and semantic caches",
        lambda sim: money.report(asyncio.run(money.run(sim))),
    ),
    "gateway": Section(
        "gateway: direct vs llmrelay serve vs the LiteLLM proxy",
        lambda sim: gateway.report(gateway.run(sim)),
    ),
    "observe": Section(
        "observe: each sink, and all of them, against the bare router",
        lambda sim: observe.report(asyncio.run(observe.run(sim))),
    ),
}


def main() -> int:
    """Every section, or those named in ``BENCH_ONLY`` (comma-separated)."""
    print("# llmrelay benchmarks")
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores")
    only = [name for name in os.environ.get("BENCH_ONLY", "").split(",") if name]
    unknown = sorted(set(only) - SECTIONS.keys())
    if unknown:
        print(f"unknown BENCH_ONLY section(s) {unknown}; known: {', '.join(SECTIONS)}")
        return 2
    config = make_config(
        models=[*TEST_MODELS, scheduling.MODEL_SPEC, hedging.MODEL_SPEC],
        slow_s=hedging.SLOW_S,
        scripts=hotpath.SCRIPTS,
    )
    with start_simulator_process(config) as sim:
        for name, part in SECTIONS.items():
            if not only or name in only:
                section(part.title)
                part.run(sim)
    return 0


if __name__ == "__main__":
    sys.exit(main())
