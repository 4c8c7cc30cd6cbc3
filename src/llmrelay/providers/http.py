"""The one pooled HTTP client under every provider, and the mapping of its failures.

aiohttp was chosen over httpx by measurement (docs/decisions/0001-http-client.md). Network
failures become :mod:`llmrelay.errors` types here and nowhere else.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from types import TracebackType

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


class HttpResponse:
    """An open response: status and headers, and the body read whole or by lines."""

    def __init__(self, raw: aiohttp.ClientResponse, origin: Origin, idle: float) -> None:
        self._raw = raw
        self._origin = origin
        self._idle = idle
        self.status = raw.status
        self.headers: dict[str, str] = {k.lower(): v for k, v in raw.headers.items()}
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
        content = self._raw.content
        while True:
            try:
                async with asyncio.timeout(self._idle):
                    line = await content.readline()
            except TimeoutError:
                idle: type[ProviderError] = StreamInterrupted if self.started else Timeout
                raise self._origin.error(idle, f"stream idle for more than {self._idle}s") from None
            except aiohttp.ClientError as exc:
                lost: type[ProviderError] = (
                    StreamInterrupted if self.started else ProviderUnavailable
                )
                raise self._origin.error(
                    lost, f"connection lost during the stream: {_describe(exc)}"
                ) from exc
            if not line:
                return
            self.started = True
            yield line.rstrip(b"\r\n")


class HttpClient:
    """A pooled aiohttp session shared by providers; create once, close once.

    The session is made lazily inside the running event loop, since aiohttp binds a
    session to the loop it was created in.
    """

    def __init__(self, *, max_connections: int = 1000, max_per_host: int = 0) -> None:
        self._max_connections = max_connections
        self._max_per_host = max_per_host
        self._session: aiohttp.ClientSession | None = None

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

    @contextlib.asynccontextmanager
    async def open(
        self, wire: WireRequest, timeouts: Timeouts, origin: Origin
    ) -> AsyncIterator[HttpResponse]:
        """Send ``wire`` and yield the response once its head has arrived."""
        session = self._get_session()
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=timeouts.connect)
        try:
            async with asyncio.timeout(timeouts.connect + timeouts.first_byte):
                raw = await session.request(
                    wire.method, wire.url, data=wire.body, headers=wire.headers, timeout=timeout
                )
        except TimeoutError:
            raise origin.error(Timeout, f"no response within {timeouts.first_byte}s") from None
        except aiohttp.ServerTimeoutError as exc:
            raise origin.error(Timeout, f"connect timeout: {_describe(exc)}") from exc
        except aiohttp.ClientError as exc:
            raise origin.error(
                ProviderUnavailable, f"cannot reach {wire.url}: {_describe(exc)}"
            ) from exc
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
