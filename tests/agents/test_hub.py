"""Live run events: wake-ups in one process, and between replicas through Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.hub import EventHub, RedisBridge
from llmrelay.agents.service import AgentService
from services import redis_url, require_redis

GUARD_S = 60.0
"""Only a failure guard: a reader that is woken returns long before it."""


@pytest.fixture
async def replicas() -> AsyncIterator[tuple[EventHub, EventHub]]:
    """Two hubs, as two replicas have, each bridged to the real Redis."""
    require_redis()
    hubs = (EventHub(), EventHub())
    bridges = [RedisBridge(redis_url(), hub) for hub in hubs]
    for bridge in bridges:
        await bridge.start()
    yield hubs
    for bridge in bridges:
        await bridge.close()


async def test_a_reader_is_woken_in_its_own_process() -> None:
    hub = EventHub()
    reader = asyncio.create_task(hub.wait("run-1", GUARD_S))
    await asyncio.sleep(0)  # the reader is waiting
    hub.notify("run-1")
    assert await reader is True


async def test_a_reader_that_hears_nothing_returns_after_its_poll_interval() -> None:
    """No news: ``wait`` says so at the end of the interval (the reader then polls)."""
    assert await EventHub().wait("run-1", 0) is False


async def test_news_in_one_replica_wakes_the_readers_in_another(
    replicas: tuple[EventHub, EventHub],
) -> None:
    """A step finishing in replica A wakes the SSE reader of replica B at once."""
    executing, following = replicas
    run_id = uuid.uuid4().hex
    reader = asyncio.create_task(following.wait(run_id, GUARD_S))
    other = asyncio.create_task(following.wait("another-run", GUARD_S))
    await asyncio.sleep(0)
    executing.notify(run_id)
    assert await reader is True
    assert not other.done()  # only that run's readers
    other.cancel()


async def test_a_wake_up_from_another_thread_is_published(
    replicas: tuple[EventHub, EventHub],
) -> None:
    """The engine's steps notify from its own threads; the news still crosses."""
    executing, following = replicas
    run_id = uuid.uuid4().hex
    reader = asyncio.create_task(following.wait(run_id, GUARD_S))
    await asyncio.sleep(0)
    await asyncio.to_thread(executing.notify, run_id)
    assert await reader is True


async def test_redis_down_costs_only_speed() -> None:
    """A bridge to nowhere starts, and notifying through it neither raises nor blocks the
    local readers."""
    hub = EventHub()
    bridge = RedisBridge("redis://127.0.0.1:1/0", hub)
    await bridge.start()
    reader = asyncio.create_task(hub.wait("run-1", GUARD_S))
    await asyncio.sleep(0)
    hub.notify("run-1")
    assert await reader is True
    await bridge.close()


class Recording(EventHub):
    """A hub that remembers which runs it was woken for."""

    def __init__(self) -> None:
        super().__init__()
        self.heard: list[str] = []
        self.news = asyncio.Event()

    def wake(self, run_id: str) -> None:
        self.heard.append(run_id)
        self.news.set()
        super().wake(run_id)


async def test_a_service_with_redis_publishes_its_runs_news(tmp_path: Path) -> None:
    """``redis_url`` set: the service opens the bridge, and a reader on another replica's
    hub hears of the run's steps; closing the service closes the bridge."""
    require_redis()
    elsewhere = Recording()
    listener = RedisBridge(redis_url(), elsewhere)
    await listener.start()
    settings = AgentSettings(data_dir=tmp_path, plugins=False, engine_poll_s=0.05,
                             redis_url=redis_url())  # fmt: skip
    try:
        async with AgentService(settings, instance=f"t{uuid.uuid4().hex}") as service:
            run = await service.submit(plan={"steps": [
                {"id": "step_1", "tool": "calculator", "input": {"expression": "6*7"}}]})  # fmt: skip
            assert (await service.wait(run["id"]))["status"] == "succeeded"
            async with asyncio.timeout(GUARD_S):
                while run["id"] not in elsewhere.heard:
                    elsewhere.news.clear()
                    await elsewhere.news.wait()
        assert service.hub.bridge is None
    finally:
        await listener.close()
