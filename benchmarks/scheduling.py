"""Proactive scheduling vs retrying after 429s, against one rate-limited simulator model.

Three clients send the same burst to the same simulator deployment (each with its own API
key, so each starts from a full bucket): llmrelay's ScheduledProvider, the official openai
SDK with its default retries, and LiteLLM's Router with the same rpm/tpm configured (in
its own venv, ``.bench-venv``). The simulator's ledger counts the 429s each one received.

Goodput is the share of the binding limit used: tokens served ÷ (one minute's TPM plus
what the bucket refilled during the run). The simulator's buckets start full and refill
continuously, as OpenAI's and Anthropic's do.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from llmrelay.limits import Limits
from llmrelay.providers import Deployment, HttpClient, default_registry
from llmrelay.scheduling import ScheduledProvider
from llmrelay.testing import SimulatorHandle
from llmrelay.types import ChatRequest, Message

MODEL = "bench-limited"
RPM = int(os.environ.get("BENCH_RPM", "300"))
TPM = int(os.environ.get("BENCH_TPM", "20000"))
BURST = int(os.environ.get("BENCH_BURST", "250"))
MAX_TOKENS = 50
PROMPT = "Please list the steps to brew a good cup of coffee at home. " * 4
ROOT = Path(__file__).parents[1]
LITELLM_PYTHON = ROOT / ".bench-venv" / "bin" / "python"

MODEL_SPEC: dict[str, Any] = {
    "name": MODEL,
    "api": "openai",
    "context_window": 128000,
    "max_output_tokens": 4096,
    "rpm": RPM,
    "tpm": TPM,
    "ttft_ms": 300,
    "tokens_per_s": 200,
}


@dataclass
class Outcome:
    name: str
    makespan: float
    latencies: list[float]
    failures: list[str]
    tokens: int = 0
    upstream_429: int = 0
    overhead_us: tuple[float, float] | None = None

    def goodput(self) -> float:
        return self.tokens / (TPM + TPM / 60 * self.makespan)

    def row(self) -> str:
        lat = sorted(self.latencies) or [float("nan")]
        p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        over = f"{self.overhead_us[0]:.0f} / {self.overhead_us[1]:.0f}" if self.overhead_us else "—"
        return (
            f"| {self.name:<38} | {self.upstream_429:>12} | {len(self.latencies):>8} | "
            f"{len(self.failures):>6} | {self.goodput():>7.1%} | {p50:>6.2f} | {p99:>6.2f} | "
            f"{over:>13} |"
        )


HEADER = (
    f"| {'client':<38} | upstream 429 | answered | failed | goodput | p50 s  | p99 s  "
    "| overhead µs p50 / p99 |\n"
    f"|{'-' * 40}|-------------:|---------:|-------:|--------:|-------:|-------:|--------------:|"
)


def request() -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=PROMPT)], max_tokens=MAX_TOKENS)


async def _burst(name: str, call: Callable[[], Awaitable[int]]) -> Outcome:
    """``BURST`` calls at once; ``call`` returns the tokens one answer used. Any failure is
    counted by its type."""
    latencies: list[float] = []
    failures: list[str] = []
    tokens = 0

    async def one() -> None:
        nonlocal tokens
        start = time.perf_counter()
        try:
            used = await call()
        except Exception as exc:  # counted, by type
            failures.append(type(exc).__name__)
            return
        latencies.append(time.perf_counter() - start)
        tokens += used

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(BURST)))
    return Outcome(name, time.perf_counter() - started, latencies, failures, tokens)


async def run_llmrelay(sim: SimulatorHandle, key: str) -> Outcome:
    deployment = Deployment(provider="openai", model=MODEL, api_key=key, base_url=sim.url + "/v1")
    async with HttpClient() as client:
        provider = ScheduledProvider(
            default_registry().create(deployment, client), Limits(rpm=RPM, tpm=TPM)
        )

        async def call() -> int:
            return (await provider.send(request())).usage.total_tokens

        outcome = await _burst("llmrelay ScheduledProvider", call)
        await provider.scheduler.aclose()
    return outcome


async def run_openai_sdk(sim: SimulatorHandle, key: str) -> Outcome:
    client = openai.AsyncOpenAI(base_url=sim.url + "/v1", api_key=key)  # default: 2 retries

    async def call() -> int:
        response = await client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": PROMPT}],
            max_tokens=MAX_TOKENS,
        )
        assert response.usage is not None
        return response.usage.total_tokens

    outcome = await _burst("openai SDK (max_retries=2)", call)
    await client.close()
    return outcome


def run_litellm(sim: SimulatorHandle, key: str) -> Outcome | None:
    if not LITELLM_PYTHON.exists():
        print("LiteLLM is not installed in .bench-venv (make bench creates it); skipped")
        return None
    args = ["load", sim.url, key, MODEL, str(BURST), str(RPM), str(TPM), str(MAX_TOKENS), PROMPT]
    data = _litellm(args)
    outcome = Outcome(
        f"LiteLLM Router {data['version']} (rpm/tpm set)",
        data["makespan"],
        data["latencies"],
        data["failures"],
        data["tokens"],
    )
    overhead = _litellm(["overhead", sim.url, key + "-overhead", "sim-openai", "1000"])
    outcome.overhead_us = (
        (overhead["router"][0] - overhead["sdk"][0]) * 1e6,
        (overhead["router"][1] - overhead["sdk"][1]) * 1e6,
    )
    return outcome


def _litellm(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(LITELLM_PYTHON), str(ROOT / "benchmarks" / "litellm_contender.py"), *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"LiteLLM contender failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


async def scheduler_overhead(sim: SimulatorHandle, rounds: int) -> tuple[float, float]:
    """ScheduledProvider.send minus the bare adapter's send, interleaved, zero-latency model."""
    deployment = Deployment(
        provider="openai", model="sim-openai", api_key="sk-overhead", base_url=sim.url + "/v1"
    )
    async with HttpClient() as client:
        bare = default_registry().create(deployment, client)
        scheduled = ScheduledProvider(
            default_registry().create(deployment, client), Limits(rpm=10**7, tpm=10**10)
        )
        req = ChatRequest(
            messages=[Message(role="user", content="Summarise a heist film in one sentence.")],
            max_tokens=64,
        )
        times: dict[str, list[float]] = {"bare": [], "scheduled": []}
        for _ in range(100):
            await bare.send(req)
            await scheduled.send(req)
        for _ in range(rounds):
            for name, call in (("bare", bare.send), ("scheduled", scheduled.send)):
                start = time.perf_counter()
                await call(req)
                times[name].append(time.perf_counter() - start)
        await scheduled.scheduler.aclose()
    p50 = (statistics.median(times["scheduled"]) - statistics.median(times["bare"])) * 1e6
    at99 = int(0.99 * rounds)
    p99 = (sorted(times["scheduled"])[at99] - sorted(times["bare"])[at99]) * 1e6
    return p50, p99


def run(sim: SimulatorHandle, rounds: int) -> None:
    print(
        f"deployment: rpm {RPM}, tpm {TPM}, ttft 300 ms, 200 tokens/s; burst of {BURST} "
        f"requests at once, max_tokens {MAX_TOKENS}\n"
    )
    outcomes: list[Outcome] = []
    for name, runner in (("llmrelay", run_llmrelay), ("openai", run_openai_sdk)):
        key = f"sk-bench-{name}"
        outcome = asyncio.run(runner(sim, key))
        outcome.upstream_429 = sim.usage(key, MODEL)["refused"].get("429", 0)
        outcomes.append(outcome)
        print(f"  {outcome.name}: done in {outcome.makespan:.1f}s", flush=True)
    outcomes[0].overhead_us = asyncio.run(scheduler_overhead(sim, rounds))
    litellm = run_litellm(sim, "sk-bench-litellm")
    if litellm is not None:
        litellm.upstream_429 = sim.usage("sk-bench-litellm", MODEL)["refused"].get("429", 0)
        outcomes.append(litellm)
        print(f"  {litellm.name}: done in {litellm.makespan:.1f}s", flush=True)
    print()
    print(HEADER)
    for outcome in outcomes:
        print(outcome.row())
    for outcome in outcomes:
        if outcome.failures:
            kinds = {k: outcome.failures.count(k) for k in sorted(set(outcome.failures))}
            print(f"\n{outcome.name} failures: {kinds}")
    print(
        "\noverhead: added per call by the scheduling layer on a zero-latency, never-binding "
        "deployment\n(llmrelay: ScheduledProvider.send minus the adapter's send; LiteLLM: "
        "Router.acompletion minus the openai SDK's create). target: 0 upstream 429s, "
        "0 failures, goodput >= 97%",
        flush=True,
    )


__all__ = ["MODEL_SPEC", "run"]


if __name__ == "__main__":  # pragma: no cover - run through `python -m benchmarks`
    sys.exit("run `python -m benchmarks`")
