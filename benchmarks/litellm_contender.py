"""LiteLLM's Router under the scheduling benchmark; runs in its own venv (``.bench-venv``).

It imports nothing from llmrelay, so LiteLLM and its pins never meet llmrelay's
dependencies. Prints one JSON object.

``python benchmarks/litellm_contender.py load URL KEY MODEL N RPM TPM MAX_TOKENS PROMPT``
``python benchmarks/litellm_contender.py overhead URL KEY MODEL ROUNDS``
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import statistics
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


async def overhead(url: str, key: str, model: str, rounds: int) -> dict[str, object]:
    from openai import AsyncOpenAI

    router = _router(url, key, model, None, None)
    direct = AsyncOpenAI(base_url=url + "/v1", api_key=key, max_retries=0)
    messages = [{"role": "user", "content": "Summarise a heist film in one sentence."}]

    async def via_router() -> None:
        await router.acompletion(model="bench", messages=messages, max_tokens=64)

    async def via_sdk() -> None:
        await direct.chat.completions.create(model=model, messages=messages, max_tokens=64)  # type: ignore[arg-type]

    times: dict[str, list[float]] = {"router": [], "sdk": []}
    for _ in range(50):
        await via_router()
        await via_sdk()
    for _ in range(rounds):
        for name, call in (("router", via_router), ("sdk", via_sdk)):
            start = time.perf_counter()
            await call()
            times[name].append(time.perf_counter() - start)
    return {
        name: [statistics.median(v), sorted(v)[int(0.99 * len(v))]] for name, v in times.items()
    }


def main() -> None:
    logging.disable(logging.WARNING)
    mode, url, key, model = sys.argv[1:5]
    if mode == "load":
        n, rpm, tpm, max_tokens = map(int, sys.argv[5:9])
        result = asyncio.run(load(url, key, model, n, rpm, tpm, max_tokens, sys.argv[9]))
    else:
        result = asyncio.run(overhead(url, key, model, int(sys.argv[5])))
    import litellm

    result["version"] = getattr(litellm, "__version__", None) or _version()
    print(json.dumps(result))


def _version() -> str:
    from importlib.metadata import version

    return version("litellm")


if __name__ == "__main__":
    main()
