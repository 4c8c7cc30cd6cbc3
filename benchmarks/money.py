"""Money: what pricing, budgets, the spend ledger and the response caches add to a call.

``python -m benchmarks.money`` (or ``BENCH_ONLY=money make bench``). Every figure has its
baseline measured in the same block of the same run:

- **Overhead of cost and budgets.** A bare router (``SmartLLM`` with neither budget nor
  ledger; it still prices each answer) and a metered one alternate call by call
  (``benchmarks.bare.paired``: which goes first alternates too), ``BENCH_ROUNDS`` pairs
  per variant: a budget on memory counters, on SQLite counters, on Redis counters, and the
  SQLite spend ledger alone. "added" is the median of the per-pair differences, the ratio
  the median of the per-pair ratios; p99s are shown per column, never subtracted.
- **Exact cache.** A lookup per backend (``benchmarks.cache_exact``), then whole calls
  through ``SmartLLM.ainvoke``: a hit against a miss (the lookup, the routed call, the
  store), paired the same way.
- **Semantic cache.** ``benchmarks.semantic``'s own figures, when that module exists.

The upstream is the simulator in a process of its own, at zero latency, on the
unlimited ``sim-openai`` model; the deployment is given huge ``rpm`` / ``tpm`` / ``rpd`` so
that the scheduler's accounting runs but never paces, and gpt-4o-mini's prices so that
every call costs something. Budgets are large enough never to refuse and are named per
run, so the Redis counters (which expire on their own) are this run's alone. The CPU that
other processes used during each block is read from ``/proc`` and reported (as in
``benchmarks.hotpath``): a busy machine moves these figures.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.util
import inspect
import os
import statistics
import tempfile
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis

from benchmarks import cache_exact
from benchmarks.bare import paired
from benchmarks.hotpath import NOISE, CpuWatch
from llmrelay import LLMBuilder, SmartLLM
from llmrelay.testing import SimulatorHandle, make_config, start_simulator_process

ROUNDS = int(os.environ.get("BENCH_ROUNDS", "2000"))
WARMUP = 100
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
MODEL = "sim-openai"
KEY = "sk-money"
PROMPT = "Summarise a heist film in one sentence."
CATALOG = {
    f"openai/{MODEL}": {
        "context_window": 16000,
        "max_output_tokens": 4096,
        "price": {"input": 0.15, "output": 0.60, "cached_input": 0.075},
    }
}
"""gpt-4o-mini's prices on the simulator's unlimited model: every call costs something."""
ROOMY: dict[str, Any] = {"rpm": 10**7, "tpm": 10**10, "rpd": 10**9}

Figures = dict[str, Any]


def priced(sim: SimulatorHandle) -> LLMBuilder:
    return (
        LLMBuilder()
        .with_catalog(CATALOG)
        .with_primary("openai", MODEL, base_url=sim.openai_base_url, api_key=KEY, **ROOMY)
    )


async def _redis_missing() -> str | None:
    """Why Redis cannot be used here, or ``None`` when it answers."""
    client = aioredis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        await client.ping()
    except Exception as exc:  # whatever stops it, the row says why
        return f"skipped: no Redis at {REDIS_URL} ({type(exc).__name__})"
    finally:
        await client.aclose()
    return None


def _p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


def compare(base: list[float], other: list[float]) -> Figures:
    """Paired figures in µs: medians and p99s of each, the median difference and ratio."""
    pairs = list(zip(base, other, strict=True))
    return {
        "base_p50_us": round(statistics.median(base) * 1e6, 1),
        "base_p99_us": round(_p99(base) * 1e6, 1),
        "p50_us": round(statistics.median(other) * 1e6, 1),
        "p99_us": round(_p99(other) * 1e6, 1),
        "diff_us": round(statistics.median(o - b for b, o in pairs) * 1e6, 1),
        "ratio": round(statistics.median(o / b for b, o in pairs), 3),
    }


async def overhead(sim: SimulatorHandle, tmp: Path, redis_missing: str | None) -> Figures:
    """Each metered variant against the bare router, call by call."""
    run = uuid.uuid4().hex[:8]
    budget: dict[str, Any] = {"usd": 1e9, "name": f"bench-money-{run}", "downgrade_at": None}
    variants: dict[str, LLMBuilder | str] = {
        "budget, memory counters": priced(sim).with_budget(**budget, store="memory"),
        "budget, SQLite counters": priced(sim).with_budget(
            **budget, store="sqlite", path=str(tmp / "budget.sqlite3")
        ),
        "budget, Redis counters": redis_missing
        or priced(sim).with_budget(**budget, store="redis", redis_url=REDIS_URL),
        "spend ledger, SQLite": priced(sim).with_ledger("sqlite", path=str(tmp / "spend.sqlite3")),
    }
    results: Figures = {}
    async with priced(sim).build() as bare:
        for name, variant in variants.items():
            if isinstance(variant, str):
                results[name] = {"note": variant}
                continue
            async with variant.build() as metered:
                base, other = await paired(
                    lambda: bare.ainvoke(PROMPT),
                    lambda: metered.ainvoke(PROMPT),
                    ROUNDS,
                    WARMUP,
                )
                results[name] = compare(base, other)
    return results


async def cached_calls(sim: SimulatorHandle, tmp: Path, redis_missing: str | None) -> Figures:
    """A hit through ``SmartLLM.ainvoke`` against a miss (lookup, routed call, store)."""
    run = uuid.uuid4().hex[:8]
    backends: dict[str, dict[str, Any] | str] = {
        "memory": {},
        "sqlite": {"path": str(tmp / "cache.sqlite3")},
        "redis": redis_missing or {"redis_url": REDIS_URL},
    }
    results: Figures = {}
    for backend, options in backends.items():
        if isinstance(options, str):
            results[backend] = {"note": options}
            continue
        prompt = f"{PROMPT} ({run})"  # this run's own keys, on a shared Redis too
        count = 0

        async def miss(llm: SmartLLM) -> None:
            nonlocal count
            count += 1
            answer = await llm.ainvoke(f"{prompt} #{count}", temperature=0)  # noqa: B023 - used within the iteration
            assert answer.cached is None

        async def hit(llm: SmartLLM) -> None:
            answer = await llm.ainvoke(prompt, temperature=0)  # noqa: B023 - used within the iteration
            assert answer.cached == "exact"

        builder = priced(sim).with_cache(backend, ttl_s=600, **options)
        async with builder.build() as llm:
            await llm.ainvoke(prompt, temperature=0)
            misses, hits = await paired(lambda: miss(llm), lambda: hit(llm), ROUNDS, WARMUP)
            results[backend] = compare(misses, hits)
    return results


async def semantic() -> Figures:
    """``benchmarks.semantic``'s figures, or why there are none."""
    if importlib.util.find_spec("benchmarks.semantic") is None:
        return {"note": "absent: benchmarks/semantic.py is not in this tree"}
    module = importlib.import_module("benchmarks.semantic")
    figures = module.run()
    if inspect.isawaitable(figures):
        figures = await figures
    return figures if isinstance(figures, dict) else {"figures": figures}


async def quietest(watch: CpuWatch, block: Callable[[], Awaitable[Figures]]) -> Figures:
    """Run a block until other processes stay under NOISE of a core (at most 3 tries);
    keep the quietest run, with the share of a core they used during it."""
    best: Figures | None = None
    for _ in range(3):
        with watch.block():
            figures = await block()
        figures["others_cpu"] = round(watch.others, 3)
        if best is None or watch.others < best["others_cpu"]:
            best = figures
        if watch.others <= NOISE:
            break
    assert best is not None
    return best


async def _measure(sim: SimulatorHandle) -> Figures:
    watch = CpuWatch(sim.pid or os.getpid())
    redis_missing = await _redis_missing()
    with tempfile.TemporaryDirectory() as name:
        tmp = Path(name)

        async def caches() -> Figures:
            return {
                "lookup": await cache_exact.run(),
                "calls": await cached_calls(sim, tmp, redis_missing),
            }

        return {
            "rounds": ROUNDS,
            "overhead": await quietest(watch, lambda: overhead(sim, tmp, redis_missing)),
            "cache": await quietest(watch, caches),
            "semantic": await quietest(watch, semantic),
        }


async def run(sim: SimulatorHandle | None = None) -> Figures:
    """Every figure of this section (µs); starts its own simulator unless given one."""
    if sim is not None:
        return await _measure(sim)
    with start_simulator_process(make_config()) as own:
        return await _measure(own)


# -- reporting -------------------------------------------------------------------------------


def table(*columns: str) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))


def row(name: str, f: Figures) -> str:
    if "note" in f:
        return f"| {name} | {f['note']} |"
    return (f"| {name} | {f['base_p50_us']:,.0f} | {f['p50_us']:,.0f} | {f['diff_us']:+,.0f} | "
            f"{f['ratio']:.3f} | {f['base_p99_us']:,.0f} | {f['p99_us']:,.0f} |")  # fmt: skip


def others(figures: Figures) -> str:
    return f"(other processes used {figures['others_cpu']:.0%} of a core during the kept run)"


def report(results: Figures) -> None:
    overhead, cache, sem = results["overhead"], results["cache"], results["semantic"]
    print(f"{results['rounds']} pairs per row, alternating; µs; zero-latency simulator in its "
          "own process")  # fmt: skip
    print(others(overhead) + "\n")
    table("metered call vs bare router", "bare p50", "metered p50",
           "added (median of paired differences)", "ratio (median of paired ratios)",
           "bare p99", "metered p99")  # fmt: skip
    for name, figures in overhead.items():
        if name != "others_cpu":
            print(row(name, figures))
    print("\n" + others(cache) + "\n")
    table("exact cache, one lookup (ExactCache.get)", "median", "p99",
           "store's share (median of hit - decode alone)")  # fmt: skip
    for backend, f in cache["lookup"].items():
        if "note" in f:
            print(f"| {backend} | {f['note']} | | |")
        else:
            print(f"| {backend} | {f['median_us']} | {f['p99_us']} | {f['store_median_us']} |")
    print()
    table("exact cache through SmartLLM.ainvoke", "miss p50", "hit p50",
           "hit - miss (median of paired differences)", "hit / miss (median of paired ratios)",
           "miss p99", "hit p99")  # fmt: skip
    for backend, figures in cache["calls"].items():
        print(row(backend, figures))
    print("\nsemantic cache " + others(sem) + ":")
    for name, value in sem.items():
        if name != "others_cpu":
            print(f"- {name}: {value}")


if __name__ == "__main__":
    report(asyncio.run(run()))
