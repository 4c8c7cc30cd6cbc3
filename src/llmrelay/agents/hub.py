"""Wakes the readers of a run's events when something happened to it.

Events are stored in the runs database (the source of truth, and what another replica
reads); the hub only saves a reader from waiting out its poll interval. Steps run on the
caller's loop or on the engine's own loop, so waking crosses threads. With Redis
configured, :class:`RedisBridge` carries the wake-ups between replicas: a run executing
in one process wakes the readers following it through another at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import uuid
from typing import Any

CHANNEL = "llmrelay:agents:runs"
"""The Redis channel wake-ups travel on: ``<origin> <run id>``."""

log = logging.getLogger(__name__)


class EventHub:
    """Per-run wake-ups for readers on any event loop."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
        self.bridge: RedisBridge | None = None

    def notify(self, run_id: str) -> None:
        """Wake this process's readers of ``run_id``, and the other replicas' (bridge)."""
        self.wake(run_id)
        if self.bridge is not None:
            self.bridge.publish(run_id)

    def wake(self, run_id: str) -> None:
        """Wake this process's readers of ``run_id`` (from any thread)."""
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


class RedisBridge:
    """Publishes a hub's wake-ups to Redis and wakes it with the other replicas' ones.

    Opened and closed by the service that owns the hub, on the service's loop. A Redis
    that is down costs only speed: readers fall back to their poll interval.
    """

    def __init__(self, url: str, hub: EventHub) -> None:
        from redis.asyncio import Redis  # the redis extra; imported only when configured

        self.hub = hub
        self.origin = uuid.uuid4().hex
        self._redis: Any = Redis.from_url(url)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._listener: asyncio.Task[None] | None = None
        self._ready = asyncio.Event()
        self._sends: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        """Subscribe, and attach to the hub once the subscription is live."""
        self._loop = asyncio.get_running_loop()
        self._listener = asyncio.create_task(self._listen(), name="llmrelay-agents-bridge")
        await self._ready.wait()
        self.hub.bridge = self

    async def _listen(self) -> None:
        pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
        try:
            await pubsub.subscribe(CHANNEL)
            self._ready.set()
            async for message in pubsub.listen():
                origin, _, run_id = bytes(message["data"]).decode().partition(" ")
                if origin != self.origin and run_id:
                    self.hub.wake(run_id)
        except Exception:  # Redis gone: readers poll; the service goes on
            log.warning("agents: live run events over Redis stopped", exc_info=True)
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                await pubsub.aclose()

    def publish(self, run_id: str) -> None:
        """Tell the other replicas (from any thread; never blocks, never raises)."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop is closing
            loop.call_soon_threadsafe(self._send, f"{self.origin} {run_id}")

    def _send(self, message: str) -> None:
        task = asyncio.ensure_future(self._redis.publish(CHANNEL, message))
        self._sends.add(task)
        task.add_done_callback(self._sent)

    def _sent(self, task: asyncio.Task[Any]) -> None:
        self._sends.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.debug("agents: a run wake-up was not published: %s", task.exception())

    async def close(self) -> None:
        """Detach from the hub, stop listening and close the connection, once."""
        if self.hub.bridge is self:
            self.hub.bridge = None
        if self._sends:
            await asyncio.gather(*self._sends, return_exceptions=True)
        if self._listener is not None:
            self._listener.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._listener
        await self._redis.aclose()


__all__ = ["CHANNEL", "EventHub", "RedisBridge"]
