"""SmartLLM owns its parts and closes them once; it lives on one event loop; it counts.

The exit-path tests run a child interpreter with ``-W error`` against the simulator: any
"Unclosed client session", unclosed transport or unclosed event loop shows on its stderr.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import subprocess
import sys
import textwrap
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.client import Stats
from llmrelay.errors import AllModelsExhausted, BadRequest, LLMRelayError
from llmrelay.events import Event, EventKind
from llmrelay.testing import SimulatorHandle


def make(sim: SimulatorHandle, **routing: Any) -> SmartLLM:
    return (
        LLMBuilder()
        .with_routing(**routing)
        .with_primary("openai", "sim-openai", base_url=sim.openai_base_url, api_key="sk-life")
        .build()
    )


@pytest.fixture
async def llm(simulator: SimulatorHandle) -> AsyncIterator[SmartLLM]:
    built = make(simulator)
    yield built
    await built.aclose()


def spy_on_closing(llm: SmartLLM, monkeypatch: pytest.MonkeyPatch) -> collections.Counter[str]:
    """Count the calls of each part's ``aclose`` (each still runs)."""
    calls: collections.Counter[str] = collections.Counter()
    parts: dict[str, Any] = {
        "router": llm.router,
        "scheduler": llm.scheduler,
        "limiter": llm.scheduler.limiter,
        "http client": llm.http_client,
    }
    for label, part in parts.items():
        original = part.aclose

        async def counted(label: str = label, original: Any = original) -> None:
            calls[label] += 1
            await original()

        monkeypatch.setattr(part, "aclose", counted)
    return calls


# -- closing once ------------------------------------------------------------------------


async def test_aclose_closes_every_part_exactly_once(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Router (and adapters), scheduler, limiter backend and HTTP client: once each."""
    llm = make(simulator)
    await llm.ainvoke("hi")
    calls = spy_on_closing(llm, monkeypatch)
    await llm.aclose()
    await llm.aclose()
    llm.close()
    assert calls == {"router": 1, "scheduler": 1, "limiter": 1, "http client": 1}
    assert llm.closed


def test_close_from_sync_code_closes_every_part_exactly_once(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The sync API's parts are closed on its private loop, once, however often close runs."""
    llm = make(simulator)
    assert llm.invoke("hi").content == "Echo: hi"
    calls = spy_on_closing(llm, monkeypatch)
    with llm:
        pass
    llm.close()
    assert calls == {"router": 1, "scheduler": 1, "limiter": 1, "http client": 1}


async def test_an_unused_instance_closes_too(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Closing before any call closes every part (nothing was bound to a loop yet)."""
    llm = make(simulator)
    calls = spy_on_closing(llm, monkeypatch)
    async with llm:
        pass
    assert calls == {"router": 1, "scheduler": 1, "limiter": 1, "http client": 1}


async def test_calls_after_aclose_raise_a_clear_error(llm: SmartLLM) -> None:
    """Every async entry point refuses once closed, saying so."""
    await llm.aclose()
    with pytest.raises(LLMRelayError, match=r"^this SmartLLM is closed \(by aclose\(\)\)"):
        await llm.ainvoke("hi")
    with pytest.raises(LLMRelayError, match="is closed"):
        async for _ in llm.astream("hi"):
            pass


def test_sync_calls_after_close_raise_a_clear_error(simulator: SimulatorHandle) -> None:
    """invoke, stream and submit refuse once closed; nothing is started again."""
    llm = make(simulator)
    llm.close()
    with pytest.raises(LLMRelayError, match=r"^this SmartLLM is closed \(by close\(\)\)"):
        llm.invoke("hi")
    with pytest.raises(LLMRelayError, match="is closed"):
        list(llm.stream("hi"))
    with pytest.raises(LLMRelayError, match="is closed"):
        llm.submit(asyncio.sleep(0))


async def test_close_inside_the_loop_points_to_aclose(llm: SmartLLM) -> None:
    """A blocking close() from inside the bound loop is refused, naming the fix."""
    await llm.ainvoke("hi")
    with pytest.raises(LLMRelayError, match=r"use await llm\.aclose\(\)"):
        llm.close()
    assert not llm.closed


# -- one event loop ---------------------------------------------------------------------


@contextlib.contextmanager
def loop_in_thread() -> Iterator[asyncio.AbstractEventLoop]:
    """A loop running on another thread, ended the way asyncio.run ends one."""
    started = threading.Event()
    holder: dict[str, Any] = {}

    async def serve() -> None:
        holder["loop"] = asyncio.get_running_loop()
        holder["stop"] = holder["loop"].create_future()
        started.set()
        await holder["stop"]

    thread = threading.Thread(target=asyncio.run, args=(serve(),))
    thread.start()
    started.wait()
    try:
        yield holder["loop"]
    finally:
        holder["loop"].call_soon_threadsafe(holder["stop"].set_result, None)
        thread.join()


async def test_a_call_from_a_second_loop_is_refused_naming_the_fix(
    simulator: SimulatorHandle,
) -> None:
    """Bound to the loop of its first call; another running loop gets a clear error, and
    aclose from there still closes the parts on their own loop."""
    llm = make(simulator)
    with loop_in_thread() as other:
        first = asyncio.run_coroutine_threadsafe(llm.ainvoke("hi"), other)
        assert (await asyncio.wrap_future(first)).content == "Echo: hi"
        with pytest.raises(LLMRelayError, match="use one SmartLLM per event loop") as caught:
            await llm.ainvoke("hi")
        assert "llm.submit(llm.ainvoke(...))" in str(caught.value)
        await llm.aclose()
        assert llm.closed
    assert simulator.usage("sk-life", "sim-openai")["requests"] == 1


async def test_submit_serves_callers_on_any_loop(llm: SmartLLM) -> None:
    """Calls submitted to the private loop work from this loop, and sync calls alongside."""
    response = await asyncio.wrap_future(llm.submit(llm.ainvoke("hi")))
    assert response.content == "Echo: hi"
    assert (await asyncio.to_thread(llm.invoke, "there")).content == "Echo: there"


async def test_the_sync_api_after_async_use_says_why(llm: SmartLLM) -> None:
    """An instance bound to this loop refuses its sync API, explaining the choice."""
    await llm.ainvoke("hi")
    with pytest.raises(LLMRelayError, match=r"its sync API .* cannot run"):
        await asyncio.to_thread(llm.invoke, "hi")


def test_the_end_of_its_loop_closes_it_and_later_calls_say_so(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run's end closes what was opened on that loop; a new loop gets a clear error."""
    llm = make(simulator)
    calls = spy_on_closing(llm, monkeypatch)
    assert asyncio.run(llm.ainvoke("hi")).content == "Echo: hi"
    assert calls == {"router": 1, "scheduler": 1, "limiter": 1, "http client": 1}
    with pytest.raises(LLMRelayError, match=r"closed \(by the end of its event loop\)"):
        asyncio.run(llm.ainvoke("hi"))


# -- nothing left unclosed at exit --------------------------------------------------------

PROLOGUE = """
import asyncio, gc, sys
from llmrelay import LLMBuilder
URL = sys.argv[1]
def make():
    return LLMBuilder().with_primary("openai", "sim-openai", base_url=URL + "/v1",
                                     api_key="sk-exit").build()
"""

PROGRAMS = {
    "async with": """
        async def main():
            async with make() as llm:
                print((await llm.ainvoke("hi")).content)
        asyncio.run(main())
    """,
    "sync, never closed": """
        llm = make()
        print(llm.invoke("hi").content)
        print("".join(getattr(e, "text", "") for e in llm.stream("there")))
    """,
    "sync, dropped": """
        llm = make()
        print(llm.invoke("hi").content)
        del llm
        gc.collect()
    """,
    "asyncio.run, never closed": """
        llm = make()
        async def main():
            print((await llm.ainvoke("hi")).content)
        asyncio.run(main())
        del llm
        gc.collect()
    """,
    "own loop, closed before the loop": """
        loop = asyncio.new_event_loop()
        llm = make()
        print(loop.run_until_complete(llm.ainvoke("hi")).content)
        llm.close()
        loop.close()
    """,
    "own loop, dropped before the loop closes": """
        loop = asyncio.new_event_loop()
        llm = make()
        print(loop.run_until_complete(llm.ainvoke("hi")).content)
        del llm
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0))
        loop.close()
    """,
    "asyncio.run, made inside and dropped": """
        async def main():
            llm = make()
            print((await llm.ainvoke("hi")).content)
            async for _ in llm.astream("there"):
                pass
        asyncio.run(main())
    """,
}


@pytest.mark.parametrize("program", list(PROGRAMS), ids=list(PROGRAMS))
def test_nothing_is_left_unclosed_at_exit(simulator: SimulatorHandle, program: str) -> None:
    """No unclosed session, connector, transport or loop is reported, whatever the usage."""
    code = PROLOGUE + textwrap.dedent(PROGRAMS[program])
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, simulator.url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.stderr == ""
    assert done.returncode == 0
    assert done.stdout.startswith("Echo: hi\n")


# -- counts -------------------------------------------------------------------------------


def test_stats_count_finished_requests_by_outcome() -> None:
    """One finished event is one request: answered first or later, or failed by error."""
    stats = Stats()
    for event in (
        Event(kind=EventKind.FINISHED, deployment="a", attempt=0),
        Event(kind=EventKind.FINISHED, deployment="b", attempt=2),
        Event(kind=EventKind.FINISHED, error="AllModelsExhausted"),
        Event(kind=EventKind.FINISHED, error="BadRequest"),
        Event(kind=EventKind.FINISHED, error="Cancelled"),
        Event(kind=EventKind.EXHAUSTED),
        Event(kind=EventKind.LIMIT_LEARNED, deployment="a", message="pacing to 2 s"),
        Event(kind=EventKind.LIMIT_LEARNED, deployment="a", message="pacing to 4 s"),
    ):
        stats(event)
    snapshot = stats.snapshot()
    assert (snapshot["requests"], snapshot["primary"], snapshot["fallback"]) == (5, 1, 1)
    assert snapshot["exhausted"] == 1
    assert snapshot["failed"] == {"AllModelsExhausted": 1, "BadRequest": 1, "Cancelled": 1}
    assert snapshot["deployments"]["a"]["windows_learned"] == 2


async def test_every_routed_request_is_counted_whatever_its_outcome(
    simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answered, refused by the router, exhausted and cancelled: four requests counted."""
    llm = make(simulator, retries=0)
    try:
        await llm.ainvoke("hi")
        with pytest.raises(BadRequest):
            await llm.ainvoke("hi", max_tokens=-1)
        simulator.set_faults("sim-openai", {"500": 1.0})
        with pytest.raises(AllModelsExhausted):
            await llm.ainvoke("hi")
        simulator.set_faults("sim-openai", {})

        provider = llm.router.group("default").primary[0].scheduled.provider
        sending = asyncio.Event()
        original = provider.send

        async def send_forever(request: Any) -> Any:
            sending.set()
            await asyncio.get_running_loop().create_future()
            return await original(request)

        monkeypatch.setattr(provider, "send", send_forever)
        task = asyncio.create_task(llm.ainvoke("hi"))
        await sending.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        stats = llm.get_stats()
        assert stats["requests"] == 4
        assert stats["primary"] == 1
        assert stats["exhausted"] == 1
        assert stats["failed"] == {"BadRequest": 1, "AllModelsExhausted": 1, "Cancelled": 1}
    finally:
        await llm.aclose()


async def test_an_unpredicted_429_is_counted_as_a_window_learned(
    simulator: SimulatorHandle,
) -> None:
    """The scheduler's limit_learned events reach the stats, per deployment."""
    llm = make(simulator, retries=0)
    try:
        simulator.set_faults("sim-openai", {"rate_limit": 1.0})
        with pytest.raises(AllModelsExhausted):
            await llm.ainvoke("hi")
        deployment = llm.get_stats()["deployments"]["openai/sim-openai"]
        assert deployment["windows_learned"] == 1
        assert deployment["failures"] == {"RateLimited": 1}
    finally:
        await llm.aclose()
