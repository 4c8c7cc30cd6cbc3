"""Feed the router's events to sinks without letting any sink touch a call.

Each sink gets a bounded queue and a thread of its own. Emitting an event only appends it
to each queue (no lock held, no I/O); a sink that is slow falls behind on its own thread,
and when its queue is full further events for it are dropped and counted — never waited
for. A sink that raises is counted and reported, and keeps receiving the next events.
"""

from __future__ import annotations

import contextvars
import logging
import queue
import threading
import time
from collections.abc import Iterable
from typing import Any

from llmrelay.events import Event
from llmrelay.observe.sink import Live, Sink

log = logging.getLogger("llmrelay.observe")

DEFAULT_QUEUE_SIZE = 10_000
_REPORT_EVERY_S = 60.0
"""Drops and failures of one sink are reported at most this often (with their counts)."""


class _Stop:
    """The last item of a queue: drain up to here, close the sink, end the thread."""


class _Lane:
    """One sink, its queue, its thread and its counts."""

    def __init__(self, sink: Sink, size: int) -> None:
        self.sink = sink
        self.name = str(getattr(sink, "name", "") or type(sink).__name__)
        self.context = bool(getattr(sink, "wants_context", False))
        self.size = size
        self.queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.delivered = 0
        self.dropped = 0
        self.failed = 0
        self.closed = False
        self._reported = {"dropped": 0.0, "failed": 0.0}
        self.thread = threading.Thread(
            target=self._run, name=f"llmrelay-observe-{self.name}", daemon=True
        )
        self.thread.start()

    def offer(self, event: Event) -> None:
        if self.closed or self.queue.qsize() >= self.size:
            self.dropped += 1
            self._report("dropped", "queue full (%d events): %d events dropped so far",
                         self.size, self.dropped)  # fmt: skip
            return
        self.queue.put((event, contextvars.copy_context() if self.context else None))

    def _run(self) -> None:
        while True:
            item = self.queue.get()
            if isinstance(item, _Stop):
                break
            if isinstance(item, threading.Event):
                item.set()  # a flush marker: everything before it was handled
                continue
            event, context = item
            try:
                if context is None:
                    self.sink.handle(event)
                else:
                    context.run(self.sink.handle, event)
                self.delivered += 1
            except Exception:
                self.failed += 1
                self._report("failed", "failed on a %s event (%d failures so far)",
                             event.kind.value, self.failed, exc_info=True)  # fmt: skip
        try:
            self.sink.close()
        except Exception:
            log.warning("observer sink %s failed to close", self.name, exc_info=True)

    def _report(self, what: str, message: str, *args: Any, exc_info: bool = False) -> None:
        now = time.monotonic()
        last = self._reported[what]
        if last and now - last < _REPORT_EVERY_S:
            return
        self._reported[what] = now
        log.warning("observer sink %s " + message, self.name, *args, exc_info=exc_info)

    def marker(self) -> threading.Event:
        done = threading.Event()
        if self.thread.is_alive():
            self.queue.put(done)
        else:
            done.set()
        return done

    def stats(self) -> dict[str, int]:
        return {"delivered": self.delivered, "dropped": self.dropped, "failed": self.failed,
                "queued": self.queue.qsize()}  # fmt: skip


class Observer:
    """An :class:`~llmrelay.events.EventBus` handler that fans events out to sinks.

    Owns one thread per sink; :meth:`close` drains every queue, closes every sink and
    joins the threads. Subscribe it with ``bus.subscribe(observer)``.
    """

    def __init__(self, sinks: Iterable[Sink] = (), *, queue_size: int = DEFAULT_QUEUE_SIZE) -> None:
        if queue_size < 1:
            raise ValueError(f"queue_size must be >= 1, got {queue_size}")
        self.queue_size = queue_size
        self._lanes: list[_Lane] = []
        for sink in sinks:
            self.add(sink)

    def add(self, sink: Sink) -> None:
        """Start feeding ``sink`` (from the next event on)."""
        if not isinstance(sink, Sink):
            raise TypeError(f"{sink!r} is not a sink: it needs handle(event) and close()")
        self._lanes.append(_Lane(sink, self.queue_size))

    @property
    def sinks(self) -> list[Sink]:
        return [lane.sink for lane in self._lanes]

    def attach(self, live: Live) -> None:
        """Give every sink that wants it a view of the router's live state."""
        for lane in self._lanes:
            attach = getattr(lane.sink, "attach", None)
            if callable(attach):
                attach(live)

    def __call__(self, event: Event) -> None:
        for lane in self._lanes:
            lane.offer(event)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every event emitted so far has been handled; ``False`` if a sink
        was still busy after ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        markers = [lane.marker() for lane in self._lanes]
        for done in markers:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not done.wait(left):
                return False
        return True

    def stats(self) -> dict[str, dict[str, int]]:
        """Per sink: events handled, dropped (queue full), failed (the sink raised), queued."""
        return {lane.name: lane.stats() for lane in self._lanes}

    def close(self, timeout: float = 10.0) -> None:
        """Stop taking events, let each sink handle what it was given, close it. A sink
        still busy after ``timeout`` seconds is left behind (its thread is a daemon) with
        a warning saying how many events it did not handle."""
        deadline = time.monotonic() + timeout
        for lane in self._lanes:
            if not lane.closed:
                lane.closed = True
                lane.queue.put(_Stop())
        for lane in self._lanes:
            lane.thread.join(max(0.0, deadline - time.monotonic()))
            if lane.thread.is_alive():
                log.warning("observer sink %s did not finish within %.0f s; %d events not "
                            "handled", lane.name, timeout, lane.queue.qsize())  # fmt: skip


__all__ = ["DEFAULT_QUEUE_SIZE", "Observer"]
