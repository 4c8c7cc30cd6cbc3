"""The observer: every sink gets every event on its own thread; none can touch a call."""

from __future__ import annotations

import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import BadRequest, ConfigError, LLMRelayError
from llmrelay.events import Event, EventKind
from llmrelay.observe import Observer
from llmrelay.testing import SimulatorHandle


class Recorder:
    """A sink keeping what it was given, and on which thread."""

    name = "recorder"

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.threads: set[str] = set()
        self.closed = 0

    def handle(self, event: Event) -> None:
        self.threads.add(threading.current_thread().name)
        self.events.append(event)

    def close(self) -> None:
        self.closed += 1


class Raising:
    name = "raising"

    def handle(self, event: Event) -> None:
        raise RuntimeError("this sink is broken")

    def close(self) -> None:
        raise RuntimeError("and cannot close either")


class Blocking:
    """A sink stuck in its first ``handle`` until released."""

    name = "blocking"

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.handled = 0

    def handle(self, event: Event) -> None:
        self.entered.set()
        self.release.wait()
        self.handled += 1

    def close(self) -> None:
        pass


def finished(n: int) -> Event:
    return Event(kind=EventKind.FINISHED, request_id=str(n))


def builder(simulator: SimulatorHandle) -> LLMBuilder:
    return LLMBuilder().with_primary(
        "openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-observe"
    )


def test_each_sink_gets_every_event_in_order_on_its_own_thread() -> None:
    """Two sinks see the same events in emission order, each on a thread named after it."""
    first, second = Recorder(), Recorder()
    second.name = "second"
    observer = Observer([first, second])
    for n in range(50):
        observer(finished(n))
    assert observer.flush(timeout=10)
    observer.close()
    assert [e.request_id for e in first.events] == [str(n) for n in range(50)]
    assert second.events == first.events
    assert first.threads == {"llmrelay-observe-recorder"}
    assert second.threads == {"llmrelay-observe-second"}
    assert first.closed == second.closed == 1
    assert observer.stats()["recorder"] == {"delivered": 50, "dropped": 0, "failed": 0,
                                            "queued": 0}  # fmt: skip


def test_a_full_queue_drops_and_counts_instead_of_waiting() -> None:
    """A sink stuck on one event holds ``queue_size`` more; the rest are dropped, counted."""
    blocking = Blocking()
    observer = Observer([blocking], queue_size=3)
    observer(finished(0))
    assert blocking.entered.wait(timeout=10)  # the sink holds event 0; its queue is empty
    for n in range(1, 11):
        observer(finished(n))
    assert observer.stats()["blocking"] == {"delivered": 0, "dropped": 7, "failed": 0,
                                            "queued": 3}  # fmt: skip
    blocking.release.set()
    assert observer.flush(timeout=10)
    observer.close()
    assert blocking.handled == 4
    assert observer.stats()["blocking"]["delivered"] == 4


def test_a_raising_sink_is_counted_and_keeps_receiving(caplog: pytest.LogCaptureFixture) -> None:
    """A sink that raises is reported once, counted each time, and not cut off."""
    recorder = Recorder()
    observer = Observer([Raising(), recorder])
    for n in range(5):
        observer(finished(n))
    assert observer.flush(timeout=10)
    observer.close()
    assert observer.stats()["raising"]["failed"] == 5
    assert len(recorder.events) == 5
    failures = [r for r in caplog.records if "raising failed on a finished event" in r.message]
    assert len(failures) == 1
    assert any("raising failed to close" in r.message for r in caplog.records)


def test_flush_says_when_a_sink_is_still_busy() -> None:
    """``flush`` returns False, rather than hanging, when a sink has not caught up."""
    blocking = Blocking()
    observer = Observer([blocking])
    observer(finished(0))
    assert blocking.entered.wait(timeout=10)
    assert observer.flush(timeout=0.01) is False
    blocking.release.set()
    assert observer.flush(timeout=10) is True
    observer.close()


def test_events_after_close_are_dropped_not_queued() -> None:
    recorder = Recorder()
    observer = Observer([recorder])
    observer.close()
    observer(finished(1))
    assert recorder.events == [] and observer.stats()["recorder"]["dropped"] == 1


def test_an_object_without_handle_is_refused() -> None:
    with pytest.raises(TypeError, match="is not a sink"):
        Observer([object()])  # type: ignore[list-item]  # the mistake under test


@pytest.fixture
async def blocked(simulator: SimulatorHandle) -> AsyncIterator[tuple[SmartLLM, Blocking]]:
    blocking = Blocking()
    llm = builder(simulator).with_observer(Raising()).with_observer(blocking).build()
    yield llm, blocking
    blocking.release.set()
    await llm.aclose()


async def test_a_blocked_and_a_raising_sink_leave_calls_unchanged(
    blocked: tuple[SmartLLM, Blocking], simulator: SimulatorHandle
) -> None:
    """Calls answer as they would with no sink while one sink is stuck and one raises."""
    llm, blocking = blocked
    plain = builder(simulator).build()
    try:
        expected = await plain.ainvoke("hello there", temperature=0)
    finally:
        await plain.aclose()
    answers = [await llm.ainvoke("hello there", temperature=0) for _ in range(3)]
    assert blocking.entered.is_set() and blocking.handled == 0  # still stuck on event one
    assert {a.content for a in answers} == {expected.content}
    assert all(a.deployment == expected.deployment for a in answers)
    stats = llm.get_stats()
    assert stats["requests"] == 3
    assert stats["observe"]["blocking"]["delivered"] == 0


async def test_closing_the_client_lets_each_sink_handle_every_event(
    simulator: SimulatorHandle,
) -> None:
    """``aclose`` drains the queues before it closes the sinks: nothing is lost."""
    recorder = Recorder()
    llm = builder(simulator).with_observer(recorder).build()
    answer = await llm.ainvoke("hi")
    await llm.aclose()
    assert recorder.closed == 1
    done = [e for e in recorder.events if e.kind is EventKind.FINISHED]
    assert len(done) == 1 and done[0].request_id == answer.request_id
    assert done[0].response is answer and done[0].request is not None


def test_sinks_are_configured_in_yaml(simulator: SimulatorHandle, tmp_path: Path) -> None:
    """``observe:`` turns on built-in sinks by name and imports custom ones by path."""
    config = tmp_path / "llmrelay.yaml"
    config.write_text(
        "models:\n  default:\n    primary:\n"
        f"      - {{provider: openai, model: sim-openai, base_url: '{simulator.url}/v1',"
        " api_key: sk-x}\n"
        "observe:\n  queue_size: 100\n  logs: {level: warning}\n"
        "  sinks:\n    mine: tests.observe.test_observer:Recorder\n"
    )
    llm = SmartLLM.from_config(config)
    try:
        assert llm.observer is not None and llm.observer.queue_size == 100
        assert [type(s).__name__ for s in llm.observer.sinks] == ["LogSink", "Recorder"]
    finally:
        llm.close()


def test_a_bad_sink_path_names_the_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(
        "models:\n  default:\n    primary: [{provider: openai, model: gpt-4o-mini, api_key: x}]\n"
        "observe:\n  sinks:\n    mine: no.such.module:Sink\n"
    )
    with pytest.raises(ConfigError, match=r"(?s)bad\.yaml.*observe\.sinks: mine: .*no\.such"):
        SmartLLM.from_config(config)


def test_feedback_scores_an_answer_for_analytics(
    simulator: SimulatorHandle, tmp_path: Path
) -> None:
    """``llm.feedback`` lands on the answer's row, even right after the call."""
    llm = builder(simulator).with_observer("analytics", path=str(tmp_path / "a.sqlite")).build()
    try:
        answer = llm.invoke("hello", metadata={"task": "greet"})
        llm.feedback(answer.request_id, 0.75)
        (stats,) = llm.analytics.stats(task="greet")
        assert (stats.deployment, stats.quality_mean, stats.quality_n) == (
            "openai/sim-openai", 0.75, 1,
        )  # fmt: skip
        with pytest.raises(BadRequest, match="score"):
            llm.feedback(answer.request_id, 2)
    finally:
        llm.close()


def test_analytics_unconfigured_says_how_to_configure_it(simulator: SimulatorHandle) -> None:
    llm = builder(simulator).build()
    try:
        with pytest.raises(LLMRelayError, match=r"observe\.analytics"):
            llm.feedback("x", 1.0)
    finally:
        llm.close()


def test_a_client_left_open_at_exit_still_delivers_and_closes(simulator: SimulatorHandle) -> None:
    """At interpreter exit the unclosed client's sinks handle their events and close cleanly."""
    script = (
        "from llmrelay import LLMBuilder\n"
        "llm = LLMBuilder().with_primary('openai', 'sim-openai', "
        f"base_url='{simulator.url}/v1', api_key='sk-exit').with_observer('logs').build()\n"
        "llm.invoke('hello')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    assert '"event": "request"' in done.stderr
