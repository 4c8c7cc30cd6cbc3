"""The one pooled HTTP client under every provider, and the mapping of its failures.

aiohttp was chosen over httpx by measurement (docs/decisions/0001-http-client.md). Network
failures become :mod:`llmrelay.errors` types here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp
import msgspec

from llmrelay.errors import ProviderError, ProviderUnavailable, StreamInterrupted, Timeout


class Timeouts(msgspec.Struct, frozen=True, kw_only=True):
    """Seconds to wait: for a connection, for the response head, and between stream chunks.

    ``first_byte`` covers a non-streamed answer's whole generation (its head arrives only
    when the answer is complete), so it is generous by default.
    """

    connect: float = 10.0
    first_byte: float = 120.0
    idle: float = 60.0


class WireRequest(msgspec.Struct, frozen=True, kw_only=True):
    """An HTTP request as a provider's converter builds it; no I/O has happened yet."""

    method: str = "POST"
    url: str
    headers: dict[str, str]
    body: bytes


def _describe(exc: BaseException) -> str:
    """An aiohttp failure in words; some of its errors have an empty ``str()``."""
    return str(exc) or type(exc).__name__


@dataclass(frozen=True, slots=True)
class Origin:
    """Who is being called, stamped on every error raised for the call."""

    provider: str
    deployment: str

    def error(self, cls: type[ProviderError], message: str) -> ProviderError:
        return cls(message, provider=self.provider, deployment=self.deployment)


Headers = Mapping[str, str]
"""Response headers, looked up case-insensitively (aiohttp's own multidict, not a copy)."""


class Answer(msgspec.Struct, frozen=True):
    """A whole non-streamed response."""

    status: int
    headers: Headers
    body: bytes


_TIMER_SLACK = 0.001
"""Event loops run a timer up to their clock's resolution early; a re-armed timer that is
due within this much has expired (rather than re-arming for an instant that never comes)."""


class _IdleWatch:
    """Cancels the reading task once a single read has waited ``idle`` seconds.

    One timer serves the whole stream: a line only notes when its read began, and the timer,
    when it fires during a read that has not yet waited ``idle``, re-arms itself for that
    read's own deadline. (A timeout scope per line would allocate a timer per chunk.)
    """

    __slots__ = ("_handle", "_idle", "_loop", "_task", "began", "expired", "reading")

    def __init__(self, idle: float) -> None:
        self._loop = asyncio.get_running_loop()
        self._idle = idle
        self._task: asyncio.Task[Any] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.began = 0.0
        self.reading = False
        self.expired = False

    def start(self) -> None:
        self.began = self._loop.time()
        self.reading = True
        self._task = asyncio.current_task()
        if self._handle is None:
            self._handle = self._loop.call_at(self.began + self._idle, self._check)

    def _check(self) -> None:
        self._handle = None
        if not self.reading:
            return  # the next read re-arms the timer
        due = self.began + self._idle
        if due - self._loop.time() > _TIMER_SLACK:
            self._handle = self._loop.call_at(due, self._check)
        elif self._task is not None:
            self.expired = True
            self._task.cancel()

    def timed_out(self) -> bool:
        """Whether a cancellation being handled is this watch's own (and consume it)."""
        return self.expired and self._task is not None and self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


class HttpResponse:
    """An open streamed response: status and headers, then the body by lines."""

    def __init__(self, raw: aiohttp.ClientResponse, origin: Origin, idle: float) -> None:
        self._raw = raw
        self._origin = origin
        self._idle = idle
        self.status = raw.status
        self.headers: Headers = raw.headers
        self.started = False
        """True once a line of the body was handed out (a failure after it is an interruption)."""

    async def read(self) -> bytes:
        try:
            async with asyncio.timeout(self._idle):
                return await self._raw.read()
        except TimeoutError:
            raise self._origin.error(
                Timeout, f"no data for {self._idle}s reading the response"
            ) from None
        except aiohttp.ClientError as exc:
            raise self._origin.error(
                ProviderUnavailable, f"connection lost reading the response: {_describe(exc)}"
            ) from exc

    async def lines(self) -> AsyncIterator[bytes]:
        """Body lines without their line ending; failures map to the taxonomy."""
        readline = self._raw.content.readline
        watch = _IdleWatch(self._idle)
        try:
            while True:
                watch.start()
                try:
                    line = await readline()
                except asyncio.CancelledError:
                    if not watch.timed_out():
                        raise
                    raise self._origin.error(
                        StreamInterrupted if self.started else Timeout,
                        f"stream idle for more than {self._idle}s",
                    ) from None
                except aiohttp.ClientError as exc:
                    lost: type[ProviderError] = (
                        StreamInterrupted if self.started else ProviderUnavailable
                    )
                    raise self._origin.error(
                        lost, f"connection lost during the stream: {_describe(exc)}"
                    ) from exc
                watch.reading = False
                if not line:
                    return
                self.started = True
                yield line.rstrip(b"\r\n")
        finally:
            watch.close()


class HttpClient:
    """A pooled aiohttp session shared by providers; create once, close once.

    The session is made lazily inside the running event loop, since aiohttp binds a
    session to the loop it was created in.
    """

    def __init__(self, *, max_connections: int = 1000, max_per_host: int = 0) -> None:
        self._max_connections = max_connections
        self._max_per_host = max_per_host
        self._session: aiohttp.ClientSession | None = None
        self._connect_timeouts: dict[float, aiohttp.ClientTimeout] = {}

    def _get_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                limit=self._max_connections,
                limit_per_host=self._max_per_host,
                ttl_dns_cache=300,
                enable_cleanup_closed=True,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=None),
                auto_decompress=True,
                skip_auto_headers=("User-Agent",),
            )
        return self._session

    def _connect_timeout(self, seconds: float) -> aiohttp.ClientTimeout:
        found = self._connect_timeouts.get(seconds)
        if found is None:
            found = self._connect_timeouts[seconds] = aiohttp.ClientTimeout(
                total=None, sock_connect=seconds
            )
        return found

    def _request(self, wire: WireRequest, timeouts: Timeouts) -> Awaitable[aiohttp.ClientResponse]:
        """The request of ``wire`` on the pooled session (awaited for the response head)."""
        return self._get_session().request(
            wire.method,
            wire.url,
            data=wire.body,
            headers=wire.headers,
            timeout=self._connect_timeout(timeouts.connect),
        )

    async def fetch(self, wire: WireRequest, timeouts: Timeouts, origin: Origin) -> Answer:
        """Send ``wire`` and read the whole answer, under one timeout scope: the head within
        ``connect + first_byte``, then the body within ``idle``."""
        reading = False
        try:
            async with asyncio.timeout(timeouts.connect + timeouts.first_byte) as scope:
                raw = await self._request(wire, timeouts)
                reading = True
                scope.reschedule(asyncio.get_running_loop().time() + timeouts.idle)
                try:
                    body = await raw.read()
                finally:
                    raw.release()
        except aiohttp.ServerTimeoutError as exc:
            raise origin.error(Timeout, f"connect timeout: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            if reading:
                raise origin.error(
                    ProviderUnavailable, f"connection lost reading the response: {_describe(exc)}"
                ) from exc
            raise origin.error(
                ProviderUnavailable, f"cannot reach {wire.url}: {_describe(exc)}"
            ) from exc
        except TimeoutError:
            if reading:
                raise origin.error(
                    Timeout, f"no data for {timeouts.idle}s reading the response"
                ) from None
            raise origin.error(Timeout, f"no response within {timeouts.first_byte}s") from None
        return Answer(raw.status, raw.headers, body)

    @contextlib.asynccontextmanager
    async def open(
        self, wire: WireRequest, timeouts: Timeouts, origin: Origin
    ) -> AsyncIterator[HttpResponse]:
        """Send ``wire`` and yield the response once its head has arrived (for streams)."""
        try:
            async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
                raw = await self._request(wire, timeouts)
        except aiohttp.ServerTimeoutError as exc:
            raise origin.error(Timeout, f"connect timeout: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise origin.error(
                ProviderUnavailable, f"cannot reach {wire.url}: {_describe(exc)}"
            ) from exc
        except TimeoutError:
            raise origin.error(Timeout, f"no response within {timeouts.first_byte}s") from None
        try:
            yield HttpResponse(raw, origin, timeouts.idle)
        finally:
            raw.release()

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
