"""Exact-cache lookups: a hit's latency per backend, beside decoding the entry alone.

Every backend holds the same ``BENCH_CACHE_KEYS`` answers (1 KB of text each, as a short
chat answer is); each hit is timed through :class:`ExactCache` (store, then decode) and
paired with decoding the same bytes alone, the floor any backend pays. Reported per
backend: the median and p99 of a hit, and the median of the paired differences — what
the store itself adds. Redis is skipped when none answers at ``REDIS_URL``.

Run alone: ``.venv/bin/python -m benchmarks.cache_exact``.
"""

from __future__ import annotations

import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

from llmrelay.cache.entry import CachedAnswer, decode, encode
from llmrelay.cache.exact import ExactCache
from llmrelay.cache.stores import CacheStore, MemoryStore, RedisStore, SqliteStore
from llmrelay.types import ChatResponse, Usage

KEYS = int(os.environ.get("BENCH_CACHE_KEYS", "1000"))
ROUNDS = int(os.environ.get("BENCH_CACHE_ROUNDS", "5"))
REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")

Figures = dict[str, float | int | str]


def _answer(i: int) -> CachedAnswer:
    text = f"Answer {i}: " + "the quick brown fox jumps over the lazy dog. " * 23
    return CachedAnswer(
        response=ChatResponse(
            content=text,
            usage=Usage(input_tokens=420, output_tokens=230),
            model="gpt-4o-mini",
            provider="openai",
            deployment="openai/gpt-4o-mini",
            id=f"resp-{i}",
            group="default",
            cost_micros=201,
        )
    )


def _p99(samples: list[float]) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


async def _measure(store: CacheStore) -> Figures:
    cache = ExactCache(store, ttl_s=None)
    keys = [f"{uuid.uuid4().hex}{i}" for i in range(KEYS)]
    data = {}
    for i, key in enumerate(keys):
        await cache.put(key, _answer(i))
        data[key] = encode(_answer(i))
    hits, extra = [], []
    clock: Callable[[], int] = time.perf_counter_ns
    order = keys * ROUNDS
    random.Random(7).shuffle(order)
    for key in order:
        start = clock()
        found = await cache.get(key)
        middle = clock()
        decode(data[key])
        end = clock()
        assert found is not None, "every key was stored: a miss means the bench is wrong"
        hit_us, decode_us = (middle - start) / 1000, (end - middle) / 1000
        hits.append(hit_us)
        extra.append(hit_us - decode_us)
    await store.clear()
    await cache.aclose()
    return {
        "samples": len(hits),
        "median_us": round(statistics.median(hits), 1),
        "p99_us": round(_p99(hits), 1),
        "store_median_us": round(statistics.median(extra), 1),
    }


async def _redis_answers(store: RedisStore) -> str | None:
    try:
        await store.get("ping")
    except Exception as exc:  # whatever stops it, the row says why
        return f"skipped: no Redis at {REDIS_URL} ({exc})"
    return None


async def run() -> dict[str, Figures]:
    """Figures per backend (``memory``, ``sqlite``, ``redis``), lookups in µs."""
    results: dict[str, Figures] = {}
    results["memory"] = await _measure(MemoryStore(256 * 2**20))
    with tempfile.TemporaryDirectory() as tmp:
        results["sqlite"] = await _measure(SqliteStore(Path(tmp) / "bench.sqlite3"))
    redis = RedisStore(REDIS_URL, f"llmrelay:bench:{uuid.uuid4().hex}:")
    why_not = await _redis_answers(redis)
    if why_not is None:
        results["redis"] = await _measure(redis)
    else:
        await redis.aclose()
        results["redis"] = {"note": why_not}
    return results


def _print(results: dict[str, Figures]) -> None:
    print(f"exact cache, a hit through ExactCache.get ({KEYS} keys x {ROUNDS} rounds, µs)")
    print("| backend | median | p99 | store's share (median of hit - decode alone) |")
    print("|---|---:|---:|---:|")
    for backend, figures in results.items():
        if "note" in figures:
            print(f"| {backend} | {figures['note']} | | |")
            continue
        print(
            f"| {backend} | {figures['median_us']} | {figures['p99_us']} | "
            f"{figures['store_median_us']} |"
        )


if __name__ == "__main__":
    _print(asyncio.run(run()))
