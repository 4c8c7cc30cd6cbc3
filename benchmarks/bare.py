"""The baseline every hot-path figure is measured against, and the measuring loops.

It imports only the standard library and aiohttp, so LiteLLM's venv runs the very same
baseline and loops as llmrelay's (``benchmarks/litellm_contender.py``).

- a *bare call* is what a user would write with aiohttp alone: POST the JSON, read the
  body, decode it;
- a *bare stream* reads the SSE lines and decodes each ``data:`` line;
- :func:`paired` runs two calls alternately, round after round (which one goes first
  alternates too), so both see the same machine state; figures are then the median of the
  per-round differences, never a difference of two percentiles.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp

Call = Callable[[], Awaitable[Any]]
StreamCall = Callable[[], Awaitable[tuple[float, int]]]
"""A streamed call that returns (seconds to its first text chunk, chunks of text read)."""


class Bare:
    """Bare aiohttp calls to an OpenAI-compatible endpoint: the baseline."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, key: str) -> None:
        self._session = session
        self._url = base_url + "/chat/completions"
        self._headers = {"authorization": f"Bearer {key}", "content-type": "application/json"}

    async def call(self, body: bytes) -> Any:
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            return json.loads(await response.read())

    async def stream(self, body: bytes) -> tuple[float, int]:
        start = time.perf_counter()
        first, chunks = 0.0, 0
        async with self._session.post(self._url, data=body, headers=self._headers) as response:
            async for line in response.content:
                if not line.startswith(b"data: ") or line.startswith(b"data: [DONE]"):
                    continue
                chunk = json.loads(line[6:])
                choices = chunk.get("choices")
                if choices and choices[0]["delta"].get("content"):
                    chunks += 1
                    if chunks == 1:
                        first = time.perf_counter() - start
        return first, chunks


def body(model: str, prompt: str, *, max_tokens: int, stream: bool = False) -> bytes:
    payload: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
    }
    if stream:
        payload |= {"stream": True, "stream_options": {"include_usage": True}}
    return json.dumps(payload).encode()


async def paired(first: Call, second: Call, rounds: int, warmup: int) -> list[list[float]]:
    """Seconds per call of ``first`` and ``second``, alternating call by call."""
    for _ in range(warmup):
        await first()
        await second()
    times: list[list[float]] = [[], []]
    calls = (first, second)
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            await calls[which]()
            times[which].append(time.perf_counter() - start)
    return times


async def paired_streams(
    first: StreamCall, second: StreamCall, rounds: int, warmup: int
) -> list[list[list[float]]]:
    """Per call of each: [seconds to first text chunk, total seconds, text chunks]."""
    for _ in range(warmup):
        await first()
        await second()
    out: list[list[list[float]]] = [[], []]
    calls = (first, second)
    for i in range(rounds):
        for which in (0, 1) if i % 2 == 0 else (1, 0):
            start = time.perf_counter()
            ttft, chunks = await calls[which]()
            out[which].append([ttft, time.perf_counter() - start, float(chunks)])
    return out


async def load(call: Call, total: int, concurrency: int) -> dict[str, float]:
    """``total`` calls with ``concurrency`` in flight: CPU seconds of this process per call
    and calls per second."""
    remaining = total
    failures = 0

    async def worker() -> None:
        nonlocal remaining, failures
        while remaining > 0:
            remaining -= 1
            try:
                await call()
            except Exception:  # counted: a load figure over failed calls would flatter
                failures += 1

    remaining = 2 * concurrency  # warm-up: open the connections the run will use
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    remaining, failures = total, 0
    cpu, wall = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    return {"cpu_s": cpu / total, "rps": total / wall, "failures": float(failures)}
