"""aiohttp vs httpx as the pooled client under the provider adapters.

Same simulator endpoint, same body, same concurrency levels, one process: throughput and
latency of each client, and the ratio between them.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import aiohttp
import httpx

Post = Callable[[], Awaitable[int]]


async def _drive(post: Post, total: int, concurrency: int) -> tuple[float, float, float]:
    latencies: list[float] = []
    remaining = total

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            start = time.perf_counter()
            status = await post()
            latencies.append(time.perf_counter() - start)
            assert status == 200, status

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    return total / elapsed, statistics.median(latencies), latencies[int(0.99 * len(latencies))]


async def compare(url: str, body: bytes, headers: dict[str, str], total: int) -> list[str]:
    rows = [f"{'concurrency':>11} | {'client':<7} | {'req/s':>7} | {'p50 ms':>7} | {'p99 ms':>7}"]
    connector = aiohttp.TCPConnector(limit=256)
    async with (
        aiohttp.ClientSession(connector=connector) as session,
        httpx.AsyncClient(
            limits=httpx.Limits(max_connections=256, max_keepalive_connections=256)
        ) as client,
    ):

        async def via_aiohttp() -> int:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                return response.status

        async def via_httpx() -> int:
            response = await client.post(url, content=body, headers=headers)
            return response.status_code

        for concurrency in (1, 16, 64):
            results = {}
            for name, post in (("aiohttp", via_aiohttp), ("httpx", via_httpx)):
                await _drive(post, 200, concurrency)  # warm the pool
                results[name] = await _drive(post, total, concurrency)
                rps, p50, p99 = results[name]
                cells = f"{rps:>7.0f} | {p50 * 1e3:>7.2f} | {p99 * 1e3:>7.2f}"
                rows.append(f"{concurrency:>11} | {name:<7} | {cells}")
            ratio = results["aiohttp"][0] / results["httpx"][0]
            rows.append(f"{'':>11} | aiohttp/httpx throughput ratio: {ratio:.2f}x")
    return rows
