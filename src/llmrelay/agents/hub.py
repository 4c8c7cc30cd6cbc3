"""Wakes the readers of a run's events when something happened to it, in this process.

Events are stored in the runs database (the source of truth, and what another replica
reads); the hub only saves a reader from waiting out its poll interval. Steps run on the
caller's loop or on the engine's own loop, so waking crosses threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading


class EventHub:
    """Per-run wake-ups for readers on any event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def notify(self, run_id: str) -> None:
        with self._lock:
            waiters = list(self._waiters.get(run_id, ()))
        for loop, event in waiters:
            with contextlib.suppress(RuntimeError):  # that reader's loop has closed
                loop.call_soon_threadsafe(event.set)

    async def wait(self, run_id: str, poll_s: float) -> bool:
        """Wait until the run has news or ``poll_s`` passes; whether it had news."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(entry)
        try:
            async with asyncio.timeout(poll_s):
                await entry[1].wait()
            return True
        except TimeoutError:
            return False
        finally:
            with self._lock:
                waiting = self._waiters.get(run_id)
                if waiting is not None:
                    waiting.discard(entry)
                    if not waiting:
                        del self._waiters[run_id]


__all__ = ["EventHub"]
