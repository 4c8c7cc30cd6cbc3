"""One replica for the shared-Redis test: a burst through a ScheduledProvider, JSON out.

``python tests/scheduled_worker.py SIM_URL REDIS_URL PREFIX REQUESTS RPM TPM``
"""

from __future__ import annotations

import asyncio
import json
import sys

from llmrelay.limits import Limiter, Limits
from llmrelay.limits.redis import RedisBackend
from llmrelay.providers import Deployment, default_registry
from llmrelay.scheduling import ScheduledProvider, Scheduler, SchedulerPolicy
from llmrelay.types import ChatRequest, Message

PROMPT = ChatRequest(
    messages=[Message(role="user", content="count these words " * 3)], max_tokens=4
)


async def main(
    sim_url: str, redis_url: str, prefix: str, requests: int, rpm: int, tpm: int
) -> None:
    backend = RedisBackend(redis_url, prefix=prefix)
    scheduler = Scheduler(Limiter(backend), SchedulerPolicy(max_wait_before_fallback=60))
    deployment = Deployment(
        provider="openai", model="sim-openai", api_key="sk-shared", base_url=sim_url + "/v1"
    )
    provider = ScheduledProvider(
        default_registry().create(deployment),
        # Three replicas and the simulator share two cores in the test suite, and the
        # simulator shares the GIL with the test process: a request can reach it 50-70 ms
        # after it left, more than the default 3 % pad of a 1-s window absorbs, so these
        # replicas hold each entry 8 % longer (as the one-process burst test does).
        Limits(rpm=rpm, tpm=tpm, window_pad=0.08),
        scheduler=scheduler,
    )
    results = await asyncio.gather(
        *(provider.send(PROMPT) for _ in range(requests)), return_exceptions=True
    )
    errors = [repr(r) for r in results if isinstance(r, BaseException)]
    print(json.dumps({"ok": len(results) - len(errors), "errors": errors[:5]}))
    await scheduler.aclose()
    await provider.aclose()
    await backend.aclose()


if __name__ == "__main__":
    sim, redis, prefix, n, rpm, tpm = sys.argv[1:7]
    asyncio.run(main(sim, redis, prefix, int(n), int(rpm), int(tpm)))
