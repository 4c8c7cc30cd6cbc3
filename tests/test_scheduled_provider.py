"""ScheduledProvider against the simulator over real HTTP: providers never answer 429."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from llmrelay.errors import ProviderUnavailable, RateLimited, WaitTooLong
from llmrelay.events import Event, EventBus, EventKind
from llmrelay.limits import Limiter, Limits, MemoryBackend
from llmrelay.limits.memory import Clock
from llmrelay.limits.plan import RPM, TPM
from llmrelay.limits.redis import RedisBackend
from llmrelay.providers import Deployment, HttpClient, Provider, default_registry
from llmrelay.scheduling import ScheduledProvider, Scheduler, SchedulerPolicy
from llmrelay.testing import SimulatorHandle
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    Message,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    Usage,
)
from services import redis_url, require_redis

PROMPT = ChatRequest(
    messages=[Message(role="user", content="count these words " * 3)], max_tokens=4
)


@pytest.fixture
async def client() -> AsyncIterator[HttpClient]:
    async with HttpClient() as http:
        yield http


def make_provider(sim: SimulatorHandle, client: HttpClient, key: str = "sk-sched") -> Provider:
    deployment = Deployment(
        provider="openai", model="sim-openai", api_key=key, base_url=sim.url + "/v1"
    )
    return default_registry().create(deployment, client)


def still() -> float:
    """A clock that never moves: the buckets never refill, so their levels are exact."""
    return 1_000.0


def scheduled(
    provider: Provider,
    limits: Limits,
    events: EventBus | None = None,
    *,
    clock: Clock = still,
    **policy: float,
) -> ScheduledProvider:
    """``provider`` scheduled on its own limiter; on the still clock unless ``clock`` is given."""
    limiter = Limiter(MemoryBackend(clock=clock))
    scheduler = Scheduler(limiter, SchedulerPolicy(**policy), events=events)
    return ScheduledProvider(provider, limits, scheduler=scheduler)


def tokens_per_request(sim: SimulatorHandle, key: str) -> int:
    usage = sim.usage(key, "sim-openai")
    return int((usage["input_tokens"] + usage["output_tokens"]) / usage["requests"])


class GatedProvider:
    """A provider whose calls wait at a gate: the test decides when (and whether) they end."""

    name: ClassVar[str] = "gated"
    SUPPORTS_STREAMING: ClassVar[bool] = True
    SUPPORTS_TOOLS: ClassVar[bool] = True
    SUPPORTS_JSON_SCHEMA: ClassVar[bool] = True
    SUPPORTS_FORCED_TOOL_CHOICE: ClassVar[bool] = True

    def __init__(self) -> None:
        self.deployment = Deployment(provider="gated", model="m", api_key="k")
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()

    async def send(self, request: ChatRequest) -> ChatResponse:
        self.entered.set()
        await self.gate.wait()
        return ChatResponse(content="ok", usage=Usage(input_tokens=5, output_tokens=1))

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.entered.set()
        yield StreamStart()
        yield TextDelta(text="ok")
        await self.gate.wait()
        yield StreamEnd(usage=Usage(input_tokens=5, output_tokens=1))

    def check(self, request: ChatRequest, *, stream: bool = False) -> None:
        return None

    async def discover_context_window(self) -> int | None:
        return None

    async def aclose(self) -> None:
        return None


@pytest.mark.parametrize(
    ("rpm", "tpm"), [(1_200, None), (None, 30_000)], ids=["rpm-bound", "tpm-bound"]
)
async def test_burst_paced_to_the_short_window_gets_no_429(
    simulator: SimulatorHandle, client: HttpClient, rpm: int | None, tpm: int | None
) -> None:
    """A burst far above one second's share is paced to the 1-s window: zero 429s, all served."""
    simulator.set_limits("sim-openai", rpm=rpm, tpm=tpm)
    # The in-process simulator shares the GIL with this client: it may stamp an arrival
    # tens of milliseconds late, past the default 3 % pad, so entries are held 8 % longer.
    limits = Limits(rpm=rpm, tpm=tpm, window_pad=0.08)
    provider = scheduled(make_provider(simulator, client), limits, clock=time.monotonic)
    burst = 60  # three seconds' worth at 20 requests (or ~500 tokens) a second
    results = await asyncio.gather(*(provider.send(PROMPT) for _ in range(burst)))
    assert len(results) == burst
    usage = simulator.usage("sk-sched", "sim-openai")
    assert usage["requests"] == burst
    assert usage["refused"] == {}
    await provider.scheduler.aclose()


async def test_stream_is_scheduled_and_reconciled(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """Streams are admitted by the same limits and give back unused tokens at the end."""
    simulator.set_limits("sim-openai", rpm=100, tpm=100_000)
    provider = scheduled(make_provider(simulator, client), Limits(rpm=100, tpm=100_000))
    request = ChatRequest(messages=PROMPT.messages, max_tokens=500)
    text = "".join([e.text async for e in provider.stream(request) if isinstance(e, TextDelta)])
    assert text.startswith("Echo:")
    usage = simulator.usage("sk-sched", "sim-openai")
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    used = usage["input_tokens"] + usage["output_tokens"]
    assert snapshot.levels[TPM] == provider.plan.caps[TPM] - used
    await provider.scheduler.aclose()


async def test_errors_release_the_tokens_and_are_not_retried(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """A call that fails is sent once and gives back its tokens (the request was counted)."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    provider = scheduled(make_provider(simulator, client), Limits(rpm=100, tpm=10_000))
    with pytest.raises(ProviderUnavailable):
        await provider.send(PROMPT)
    assert simulator.usage("sk-sched", "sim-openai")["refused"] == {"fault:500": 1}
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.levels[TPM] == provider.plan.caps[TPM]
    assert snapshot.levels[RPM] == 100 - 2 - 1  # the margin, and the request it received
    await provider.scheduler.aclose()


async def test_a_call_cancelled_after_sending_keeps_its_reservation() -> None:
    """The provider may be generating: a call cancelled in flight stays charged at its estimate."""
    gated = GatedProvider()
    provider = scheduled(gated, Limits(rpm=600, tpm=10_000, short_window_s=0))
    _, amounts = provider.estimate(PROMPT)
    call = asyncio.create_task(provider.send(PROMPT))
    await gated.entered.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.levels[TPM] == provider.plan.caps[TPM] - amounts[TPM]
    await provider.scheduler.aclose()


async def test_a_queued_caller_cancelled_frees_its_place() -> None:
    """A caller cancelled while it waits leaves the queue and takes nothing."""
    gated = GatedProvider()
    provider = scheduled(gated, Limits(rpm=60, short_window_s=0, min_spacing=True))
    first = asyncio.create_task(provider.send(PROMPT))
    await gated.entered.wait()
    queued = asyncio.create_task(provider.send(PROMPT))
    # The scheduler offers no event for its queue length; sleep(0) yields one loop turn.
    while provider.scheduler.queued(provider.key) == 0:  # noqa: ASYNC110 - a state wait
        await asyncio.sleep(0)
    queued.cancel()
    with pytest.raises(asyncio.CancelledError):
        await queued
    assert provider.scheduler.queued(provider.key) == 0
    gated.gate.set()
    assert (await first).content == "ok"
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.levels[RPM] == 0.0  # the one sent, nothing else
    await provider.scheduler.aclose()


async def test_lower_limit_in_headers_slows_down_at_once(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """Configured for 6000 RPM, the scheduler adopts the 10 RPM the headers report."""
    simulator.set_limits("sim-openai", rpm=10)
    simulator.set_model("sim-openai", short_window_s=0)
    provider = scheduled(
        make_provider(simulator, client),
        Limits(rpm=6_000, short_window_s=0),
        max_wait_before_fallback=2.0,
    )
    await provider.send(PROMPT)
    results = await asyncio.gather(
        *(provider.send(PROMPT) for _ in range(10)), return_exceptions=True
    )
    served = [r for r in results if not isinstance(r, BaseException)]
    too_long = [r for r in results if isinstance(r, WaitTooLong)]
    # 10 per minute, 9 left after the first, 2 kept as margin: 7 now, the rest 6 s apart.
    assert (len(served), len(too_long)) == (7, 3)
    assert simulator.usage("sk-sched", "sim-openai")["refused"] == {}
    await provider.scheduler.aclose()


async def test_a_drained_key_blocks_for_retry_after_without_changing_the_pacing(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """Someone else drained the key: the 429 is raised (the router decides what next) and
    its long Retry-After blocks the deployment; the pacing was not wrong, so it stays."""
    simulator.set_limits("sim-openai", rpm=6)
    simulator.set_model("sim-openai", short_window_s=0)
    other = make_provider(simulator, client)
    for _ in range(6):
        await other.send(PROMPT)
    learned: list[Event] = []
    events = EventBus([learned.append])
    provider = scheduled(make_provider(simulator, client), Limits(short_window_s=0), events=events)
    with pytest.raises(RateLimited) as caught:
        await provider.send(PROMPT)
    retry_after = caught.value.retry_after
    assert retry_after is not None and retry_after > 0
    assert simulator.usage("sk-sched", "sim-openai")["refused"] == {"429": 1}
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.blocked_for == pytest.approx(retry_after)  # the still clock: all of it
    assert snapshot.window == 0.0
    assert learned == []
    await provider.scheduler.aclose()


async def test_a_short_429_teaches_a_stricter_window(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """A 429 the pacing did not predict, asking for a second: minute-only pacing learns the
    1-s window, says so in an event, and the deployment waits out the Retry-After."""
    simulator.set_faults("sim-openai", {"rate_limit": 1.0})
    learned: list[Event] = []
    provider = scheduled(
        make_provider(simulator, client),
        Limits(rpm=600, short_window_s=0),
        events=EventBus([learned.append]),
    )
    with pytest.raises(RateLimited) as caught:
        await provider.send(PROMPT)
    assert caught.value.retry_after == pytest.approx(1.0)
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.window == pytest.approx(1.0 * (1 + provider.plan.pad))
    assert snapshot.blocked_for == pytest.approx(1.0)
    assert [e.kind for e in learned] == [EventKind.LIMIT_LEARNED]
    assert "holds a short window for 1.03 s" in learned[0].message
    await provider.scheduler.aclose()


async def test_a_retry_after_past_the_bound_raises_without_sending(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """The 90-second rule after a 429: the next call raises WaitTooLong and sends nothing."""
    simulator.set_limits("sim-openai", rpm=1)
    await make_provider(simulator, client).send(PROMPT)
    provider = scheduled(make_provider(simulator, client), Limits(), max_wait_before_fallback=5.0)
    with pytest.raises(RateLimited) as limited:
        await provider.send(PROMPT)
    with pytest.raises(WaitTooLong) as caught:
        await provider.send(PROMPT)
    assert limited.value.retry_after is not None and limited.value.retry_after > 5.0
    # Beyond the block: the headers report 0 of 1 RPM left, 2 are kept as margin, so three
    # requests must refill at one a minute.
    assert caught.value.projected_wait == pytest.approx(180.0)
    assert simulator.usage("sk-sched", "sim-openai")["refused"] == {"429": 1}
    await provider.scheduler.aclose()


async def test_three_processes_share_one_limit_through_redis(
    simulator: SimulatorHandle,
) -> None:
    """Three replicas sharing Redis together get zero 429s from one simulator limit."""
    require_redis()
    per_process, rpm, tpm = 40, 1_200, 24_000
    simulator.set_limits("sim-openai", rpm=rpm, tpm=tpm)
    prefix = f"llmrelay-test:{uuid.uuid4().hex}:"
    worker = str(Path(__file__).with_name("scheduled_worker.py"))
    command = [sys.executable, worker, simulator.url, redis_url(), prefix]
    command += [str(per_process), str(rpm), str(tpm)]

    def replica() -> dict[str, Any]:
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
        return json.loads(done.stdout)  # type: ignore[no-any-return]

    outputs = await asyncio.gather(*(asyncio.to_thread(replica) for _ in range(3)))
    assert [o["errors"] for o in outputs] == [[], [], []]
    assert sum(o["ok"] for o in outputs) == 3 * per_process
    usage = simulator.usage("sk-shared", "sim-openai")
    assert usage["refused"] == {}
    assert usage["requests"] == 3 * per_process > rpm / 60  # over 1 s's share of both
    assert usage["input_tokens"] + usage["output_tokens"] > tpm / 60


async def test_redis_outage_falls_back_to_local_state_and_recovers(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: decisions go on locally, logged once and counted; Redis back: used again."""
    server = _PrivateRedis(tmp_path)
    backend = RedisBackend(
        server.url, prefix="t:", retry_interval=0.0, timeout=0.2, clock=still, wall=still
    )
    limiter = Limiter(backend)
    plan = Limits(rpm=100, short_window_s=0).plan()
    try:
        server.start()
        assert not isinstance(await limiter.reserve("d", plan, (1, 0, 0, 0, 1)), float)
        assert backend.metrics.redis_available
        server.stop()
        with caplog.at_level(logging.WARNING, logger="llmrelay.limits"):
            for _ in range(5):
                assert not isinstance(await limiter.reserve("d", plan, (1, 0, 0, 0, 1)), float)
        assert not backend.metrics.redis_available
        assert backend.metrics.fallback_decisions == 5
        assert caplog.text.count("is unreachable") == 1
        server.start()
        await limiter.reserve("d", plan, (1, 0, 0, 0, 1))
        assert backend.metrics.redis_available
        assert backend.metrics.outages == 1
        snapshot = await limiter.snapshot("d", plan)
        assert snapshot.caps[RPM] == 98
        assert snapshot.levels[RPM] == 97  # read from the restarted Redis (which kept nothing)
    finally:
        server.stop()
        await backend.aclose()


class _PrivateRedis:
    """A redis-server of our own on a free port, to stop and start at will."""

    def __init__(self, tmp_path: Path) -> None:
        import socket

        if not any(
            os.access(os.path.join(d, "redis-server"), os.X_OK)
            for d in os.environ.get("PATH", "").split(os.pathsep)
        ):
            pytest.skip("redis-server is not installed")
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp_path
        self.proc: subprocess.Popen[str] | None = None

    def start(self) -> None:
        """Start the server and return once it says it accepts connections."""
        proc = self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(self.dir)],
            stdout=subprocess.PIPE,
            text=True,
        )  # fmt: skip
        assert proc.stdout is not None
        for line in proc.stdout:  # ends when the server exits
            if "Ready to accept connections" in line:
                return
        raise RuntimeError(f"redis-server exited with {proc.wait()} before it was ready")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.communicate()
            self.proc = None


async def test_limits_from_the_catalog_tier(simulator: SimulatorHandle, client: HttpClient) -> None:
    """for_tier takes the model's limits for that tier from the catalog."""
    deployment = Deployment(
        provider="openai", model="gpt-4o-mini", api_key="k", base_url=simulator.url + "/v1"
    )
    provider = ScheduledProvider.for_tier(default_registry().create(deployment, client), "tier1")
    assert (provider.limits.rpm, provider.limits.tpm, provider.limits.rpd) == (500, 200_000, 10_000)


async def test_abandoned_stream_keeps_its_reservation(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """A stream the caller stops reading keeps its tokens spent: the usage is unknown."""
    provider = scheduled(make_provider(simulator, client), Limits(rpm=100, tpm=100_000))
    request = ChatRequest(messages=PROMPT.messages, max_tokens=500)
    _, amounts = provider.estimate(request)
    events = provider.stream(request)
    async for event in events:
        if isinstance(event, TextDelta):
            break
    await events.aclose()  # type: ignore[attr-defined]
    snapshot = await provider.scheduler.limiter.snapshot(provider.key, provider.plan)
    assert snapshot.levels[TPM] == provider.plan.caps[TPM] - amounts[TPM]
    await provider.scheduler.aclose()


async def test_429s_of_one_burst_teach_one_lesson(
    simulator: SimulatorHandle, client: HttpClient
) -> None:
    """Requests already in flight when the first 429 came are refused for the same reason:
    the pacing is made stricter once, not once per refusal."""
    simulator.set_faults("sim-openai", {"rate_limit": 1.0})
    learned: list[Event] = []
    provider = scheduled(
        make_provider(simulator, client), Limits(rpm=600), events=EventBus([learned.append])
    )
    results = await asyncio.gather(
        *(provider.send(PROMPT) for _ in range(5)), return_exceptions=True
    )
    assert all(isinstance(r, RateLimited) for r in results)
    assert len(learned) == 1
    await provider.scheduler.aclose()
