"""Proactive scheduling vs retrying after 429s, against providers' sub-minute enforcement.

OpenAI and Anthropic say a minute's limit may be enforced per second; the simulator does
exactly that here (``short_window_s: 1``: at most limit/60 in any 1-s window). One burst of
``BENCH_BURST`` (300) requests goes, all at once, to one limited deployment, twice: bound by
requests (RPM 600, i.e. 10 a second) and bound by tokens (TPM 60,000, 1,000 a second).
Each client has its own API key, so each starts from empty windows:

- llmrelay ``SmartLLM`` with default settings (only the deployment's rpm/tpm given);
- the same burst from 3 processes, 100 requests each, sharing limits through Redis;
- the official openai SDK with its default retries (``max_retries=2``);
- LiteLLM's Router with the same rpm/tpm (in its own venv, ``.bench-venv``).

The simulator's ledger counts the 429s each one received. "ideal" is the shortest time the
window allows: a window holds a whole number of requests, so the last of them can start
only after ceil(burst / per window) - 1 windows, then takes one answer's latency.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import openai

from llmrelay import LLMBuilder
from llmrelay.testing import SimulatorHandle

MODEL = "bench-limited"
BURST = int(os.environ.get("BENCH_BURST", "300"))
PROCESSES = 3
MAX_TOKENS = 50
PROMPT = "Please list the steps to brew a good cup of coffee at home. " * 4
TTFT_S, TOKENS_PER_S = 0.3, 200.0
ROOT = Path(__file__).parents[1]
LITELLM_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

MODEL_SPEC: dict[str, Any] = {
    "name": MODEL,
    "api": "openai",
    "context_window": 128000,
    "max_output_tokens": 4096,
    "ttft_ms": TTFT_S * 1000,
    "tokens_per_s": TOKENS_PER_S,
    "short_window_s": 1.0,
}


@dataclass(frozen=True)
class Bound:
    """One scenario: which limit binds."""

    name: str
    rpm: int | None
    tpm: int | None

    def ideal(self, tokens_per_request: float) -> float:
        """Seconds the 1-s window needs for the burst, plus one answer's latency: whole
        requests fit a window (1,000 tokens hold 8 requests of 113, not 8.85)."""
        latency = TTFT_S + MAX_TOKENS / TOKENS_PER_S
        if self.rpm:
            per_window = math.floor(self.rpm / 60)
        else:
            assert self.tpm is not None
            per_window = math.floor(self.tpm / 60 / tokens_per_request)
        return math.ceil(BURST / per_window) - 1 + latency


BOUNDS = (Bound("requests (RPM 600)", 600, None), Bound("tokens (TPM 60,000)", None, 60_000))


@dataclass
class Outcome:
    name: str
    makespan: float
    latencies: list[float]
    failures: list[str]
    tokens: int = 0
    upstream_429: int = 0

    def row(self, ideal: float) -> str:
        lat = sorted(self.latencies) or [math.nan]
        p50, p99 = statistics.median(lat), lat[min(len(lat) - 1, int(0.99 * len(lat)))]
        return (
            f"| {self.name:<36} | {self.upstream_429:>8} | {len(self.latencies):>8} | "
            f"{len(self.failures):>6} | {self.makespan:>6.1f} | {ideal:>5.1f} | "
            f"{self.makespan / ideal:>5.2f}x | {p50:>6.2f} | {p99:>6.2f} |"
        )


HEADER = (
    f"| {'client':<36} | 429s up | answered | failed | time s | ideal | ratio  "
    "| p50 s  | p99 s  |\n"
    f"|{'-' * 38}|--------:|---------:|-------:|-------:|------:|-------:|-------:|-------:|"
)


async def burst(name: str, n: int, call: Callable[[], Awaitable[int]]) -> Outcome:
    """``n`` calls at once; ``call`` returns the tokens one answer used. Failures are counted
    by type."""
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
    await asyncio.gather(*(one() for _ in range(n)))
    return Outcome(name, time.perf_counter() - started, latencies, failures, tokens)


async def run_llmrelay(
    url: str, key: str, bound: Bound, n: int = BURST, redis_url: str | None = None
) -> Outcome:
    builder = LLMBuilder().with_primary(
        "openai", model=MODEL, base_url=url + "/v1", api_key=key, rpm=bound.rpm, tpm=bound.tpm
    )
    if redis_url:
        builder.with_redis(redis_url)
    async with builder.build() as llm:

        async def call() -> int:
            return (await llm.ainvoke(PROMPT, max_tokens=MAX_TOKENS)).usage.total_tokens

        return await burst("llmrelay SmartLLM (defaults)", n, call)


async def run_openai_sdk(url: str, key: str, bound: Bound) -> Outcome:
    client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=key)  # default: 2 retries

    async def call() -> int:
        response = await client.chat.completions.create(
            model=MODEL, messages=[{"role": "user", "content": PROMPT}], max_tokens=MAX_TOKENS
        )
        assert response.usage is not None
        return response.usage.total_tokens

    outcome = await burst("openai SDK (max_retries=2)", BURST, call)
    await client.close()
    return outcome


def run_processes(url: str, key: str, bound: Bound) -> Outcome:
    """The burst split over ``PROCESSES`` processes that share limits through Redis."""
    share = BURST // PROCESSES
    command = [sys.executable, "-m", "benchmarks.scheduling", "worker", url, key,
               str(share), str(bound.rpm or 0), str(bound.tpm or 0)]  # fmt: skip
    started = time.perf_counter()
    workers = [
        subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        for _ in range(PROCESSES)
    ]
    results = [json.loads(w.communicate(timeout=900)[0].strip().splitlines()[-1]) for w in workers]
    outcome = Outcome(
        f"llmrelay x {PROCESSES} processes, Redis",
        time.perf_counter() - started,
        [lat for r in results for lat in r["latencies"]],
        [f for r in results for f in r["failures"]],
        sum(r["tokens"] for r in results),
    )
    return outcome


def worker(url: str, key: str, n: int, rpm: int, tpm: int) -> None:
    """One of the processes of :func:`run_processes`; prints its outcome as JSON."""
    bound = Bound("worker", rpm or None, tpm or None)
    outcome = asyncio.run(run_llmrelay(url, key, bound, n, redis_url=REDIS_URL))
    print(json.dumps({"latencies": outcome.latencies, "failures": outcome.failures,
                      "tokens": outcome.tokens}))  # fmt: skip


def run_litellm(url: str, key: str, bound: Bound) -> Outcome | None:
    if not LITELLM_PYTHON.exists():
        print("LiteLLM is not installed in .bench-venv (make bench creates it); skipped")
        return None
    args = ["load", url, key, MODEL, str(BURST), str(bound.rpm or 0), str(bound.tpm or 0),
            str(MAX_TOKENS), PROMPT]  # fmt: skip
    data = _litellm(args)
    return Outcome(
        f"LiteLLM Router {data['version']} (rpm/tpm set)",
        data["makespan"],
        data["latencies"],
        data["failures"],
        data["tokens"],
    )


def _litellm(args: list[str]) -> dict[str, Any]:
    done = subprocess.run(
        [str(LITELLM_PYTHON), "-m", "benchmarks.litellm_contender", *args],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
        cwd=ROOT,
    )
    if done.returncode != 0:
        raise RuntimeError(f"LiteLLM contender failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def run(sim: SimulatorHandle) -> None:
    print(
        f"deployment: 1-s window enforcement, ttft {TTFT_S * 1000:.0f} ms, "
        f"{TOKENS_PER_S:.0f} tokens/s; a burst of {BURST} requests at once, max_tokens "
        f"{MAX_TOKENS}\n"
    )
    for bound in BOUNDS:
        simulator_limits = {"name": MODEL, "rpm": bound.rpm, "tpm": bound.tpm}
        sim.configure({"models": [simulator_limits]})
        outcomes: list[Outcome] = []
        runners: list[tuple[str, Callable[[str, str, Bound], Outcome | None]]] = [
            ("llmrelay", lambda u, k, b: asyncio.run(run_llmrelay(u, k, b))),
            ("redis", run_processes),
            ("openai", lambda u, k, b: asyncio.run(run_openai_sdk(u, k, b))),
            ("litellm", run_litellm),
        ]
        run_id = uuid.uuid4().hex[:8]  # fresh keys: fresh limits here and in Redis
        for name, runner in runners:
            key = f"sk-bench-{name}-{run_id}"
            outcome = runner(sim.url, key, bound)
            if outcome is None:
                continue
            outcome.upstream_429 = sim.usage(key, MODEL)["refused"].get("429", 0)
            outcomes.append(outcome)
            print(f"  {bound.name}: {outcome.name} done in {outcome.makespan:.1f}s", flush=True)
        served = sim.usage(f"sk-bench-llmrelay-{run_id}", MODEL)
        per_request = (served["input_tokens"] + served["output_tokens"]) / max(
            1, served["requests"]
        )
        ideal = bound.ideal(per_request)
        print(f"\n### bound by {bound.name}\n\n{HEADER}")
        for outcome in outcomes:
            print(outcome.row(ideal))
        for outcome in outcomes:
            if outcome.failures:
                kinds = {k: outcome.failures.count(k) for k in sorted(set(outcome.failures))}
                print(f"\n{outcome.name} failures: {kinds}")
        print()
    print(
        "target: 0 upstream 429s, every request answered, time within 10 % of the ideal "
        "(ratio <= 1.10x)",
        flush=True,
    )


__all__ = ["MODEL_SPEC", "run"]


if __name__ == "__main__":
    if sys.argv[1:2] == ["worker"]:
        url, key, n, rpm, tpm = sys.argv[2:7]
        worker(url, key, int(n), int(rpm), int(tpm))
    else:  # pragma: no cover - run through `python -m benchmarks`
        sys.exit("run `python -m benchmarks`")
