"""LiteLLM's Router under the scheduling benchmark; runs in its own venv (``.bench-venv``).

It imports nothing from llmrelay, so LiteLLM and its pins never meet llmrelay's
dependencies. Prints one JSON object.

``python -m benchmarks.litellm_contender load URL KEY MODEL N RPM TPM MAX_TOKENS PROMPT``
``python -m benchmarks.litellm_contender hotpath PART BASE_URL KEY MODEL ROUNDS CALLS
STREAM_PROMPT CHUNKS STREAM_ROUNDS`` (PART: sequential, load or streaming; the baseline and
loops are llmrelay's own ``benchmarks/bare.py``, which imports only aiohttp)
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time

os.environ.setdefault("LITELLM_LOG", "ERROR")
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # no download of the price list


def _router(url: str, key: str, model: str, rpm: int | None, tpm: int | None):  # type: ignore[no-untyped-def]
    from litellm import Router

    params: dict[str, object] = {"model": f"openai/{model}", "api_base": url + "/v1",
                                 "api_key": key}  # fmt: skip
    if rpm:
        params["rpm"] = rpm
    if tpm:
        params["tpm"] = tpm
    return Router(
        model_list=[{"model_name": "bench", "litellm_params": params}],
        routing_strategy="usage-based-routing-v2",
    )


async def load(url: str, key: str, model: str, n: int, rpm: int, tpm: int, max_tokens: int,
               prompt: str) -> dict[str, object]:  # fmt: skip
    router = _router(url, key, model, rpm, tpm)
    messages = [{"role": "user", "content": prompt}]
    latencies: list[float] = []
    failures: list[str] = []
    tokens = 0

    async def one() -> None:
        nonlocal tokens
        start = time.perf_counter()
        try:
            response = await router.acompletion(
                model="bench", messages=messages, max_tokens=max_tokens
            )
        except Exception as exc:  # every failure is counted, by type
            failures.append(type(exc).__name__)
            return
        latencies.append(time.perf_counter() - start)
        tokens += response.usage.prompt_tokens + response.usage.completion_tokens

    started = time.perf_counter()
    await asyncio.gather(*(one() for _ in range(n)))
    return {
        "makespan": time.perf_counter() - started,
        "latencies": latencies,
        "failures": failures,
        "tokens": tokens,
    }


async def hotpath(part: str, base_url: str, key: str, model: str, *rest: str) -> dict[str, object]:
    import aiohttp

    from benchmarks.bare import Bare, body, load, paired, paired_streams

    rounds, calls, stream_prompt, chunks, stream_rounds = rest
    router = _router(base_url.removesuffix("/v1"), key, model, None, None)
    prompt = "Summarise a heist film in one sentence."
    messages = [{"role": "user", "content": prompt}]
    streamed = body(model, stream_prompt, max_tokens=int(chunks) + 10, stream=True)
    plain = body(model, prompt, max_tokens=64)
    async with aiohttp.ClientSession() as session:
        bare = Bare(session, base_url, key)

        async def bare_call() -> None:
            await bare.call(plain)

        async def routed() -> None:
            await router.acompletion(model="bench", messages=messages, max_tokens=64)

        async def routed_stream() -> tuple[float, int]:
            start = time.perf_counter()
            first, count = 0.0, 0
            stream = await router.acompletion(
                model="bench",
                messages=[{"role": "user", "content": stream_prompt}],
                max_tokens=int(chunks) + 10,
                stream=True,
                stream_options={"include_usage": True},
            )
            async for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    count += 1
                    if count == 1:
                        first = time.perf_counter() - start
            return first, count

        if part == "sequential":
            rows: object = await paired(bare_call, routed, int(rounds), 50)
        elif part == "load":
            rows = [await load(routed, int(calls), c) for c in (1, 16, 64, 256)]
        else:

            async def bare_stream() -> tuple[float, int]:
                return await bare.stream(streamed)

            rows = await paired_streams(bare_stream, routed_stream, int(stream_rounds), 10)
    return {"rows": rows}


def main() -> None:
    logging.disable(logging.WARNING)
    mode, args = sys.argv[1], sys.argv[2:]
    if mode == "hotpath":
        result = asyncio.run(hotpath(*args))
    else:
        url, key, model, n, rpm, tpm, max_tokens, prompt = args
        result = asyncio.run(
            load(url, key, model, int(n), int(rpm), int(tpm), int(max_tokens), prompt)
        )
    import litellm

    result["version"] = getattr(litellm, "__version__", None) or _version()
    print(json.dumps(result))


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    main()
