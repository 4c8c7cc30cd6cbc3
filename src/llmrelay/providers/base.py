"""The provider seam: pure converters plus one ``send`` and one ``stream`` over HTTP.

An adapter subclasses :class:`HttpProvider` and writes only converters — request to wire,
wire to response, wire to error, stream frames to events, headers to
:class:`~llmrelay.types.RateLimitInfo`. None of them does I/O, so each is unit-tested on
recorded samples; ``send`` and ``stream`` here are the only code that touches the network.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import AsyncIterator, Iterable
from email.utils import parsedate_to_datetime
from typing import Any, ClassVar, Literal, Protocol

import msgspec

from llmrelay.errors import (
    AuthenticationFailed,
    BadRequest,
    MalformedResponse,
    NotFound,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    StreamInterrupted,
    Timeout,
)
from llmrelay.providers.http import HttpClient, Origin, Timeouts, WireRequest
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    RateLimitInfo,
    StreamEnd,
    StreamEvent,
    StreamStart,
)

Framing = Literal["sse", "ndjson"]
_decode = msgspec.json.Decoder()


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """One (provider, model, credentials, base URL): the unit the router schedules.

    ``api_key`` falls back to the provider's environment variable (``OPENAI_API_KEY``…);
    ``base_url`` to the provider's public endpoint.
    """

    provider: str
    model: str
    api_key: str | None = None
    base_url: str | None = None
    name: str = ""
    headers: dict[str, str] = msgspec.field(default_factory=dict)
    timeouts: Timeouts = msgspec.field(default_factory=Timeouts)

    @property
    def id(self) -> str:
        return self.name or f"{self.provider}/{self.model}"


class SseEvent(msgspec.Struct, frozen=True):
    """One server-sent event (or one NDJSON line, with ``event`` empty)."""

    event: str
    data: bytes


class StreamDecoder(Protocol):
    """Turns a provider's stream frames into events; raises on in-stream errors."""

    def feed(self, frame: SseEvent) -> Iterable[StreamEvent]: ...

    def close(self) -> StreamEnd:
        """The final event; raises :class:`StreamInterrupted` if the stream was cut."""
        ...


class Provider(Protocol):
    """What the router needs from a provider adapter."""

    name: ClassVar[str]
    SUPPORTS_STREAMING: ClassVar[bool]
    SUPPORTS_TOOLS: ClassVar[bool]
    SUPPORTS_JSON_SCHEMA: ClassVar[bool]
    SUPPORTS_FORCED_TOOL_CHOICE: ClassVar[bool]
    deployment: Deployment

    async def send(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]: ...

    async def aclose(self) -> None: ...


def loads(body: bytes, origin: Origin) -> Any:
    """Decode JSON from a provider; garbage becomes :class:`MalformedResponse`."""
    try:
        return _decode.decode(body)
    except msgspec.DecodeError as exc:
        raise origin.error(MalformedResponse, f"invalid JSON from provider: {exc}") from None


def load_chunk(frame: SseEvent, origin: Origin) -> dict[str, Any]:
    """One stream frame's JSON object; anything else is malformed or an interruption."""
    chunk = loads(frame.data, origin)
    if not isinstance(chunk, dict):
        raise interrupted(origin, "stream frame is not a JSON object")
    return chunk


def error_payload(body: bytes) -> Any:
    """The JSON of an error body, or ``None`` when the body is not JSON (a proxy's HTML page)."""
    try:
        return _decode.decode(body)
    except msgspec.DecodeError:
        return None


def plain_error(status: int, body: bytes) -> ProviderError:
    """An error from the status alone, quoting the start of a body that said nothing usable."""
    return error_for_status(status)(body.decode("utf-8", "replace")[:500] or f"HTTP {status}")


def parse_retry_after(headers: dict[str, str]) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), in seconds."""
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def to_int(value: str | None) -> int | None:
    if value is None:
        return None
    try:
        return int(float(value))
    except ValueError:
        return None


_STATUS_ERRORS: dict[int, type[ProviderError]] = {
    400: BadRequest,
    401: AuthenticationFailed,
    403: AuthenticationFailed,
    404: NotFound,
    408: Timeout,
    413: BadRequest,
    422: BadRequest,
    429: RateLimited,
    529: Overloaded,
}


def error_for_status(status: int) -> type[ProviderError]:
    """The taxonomy class an HTTP status means when the body says nothing more precise."""
    if status in _STATUS_ERRORS:
        return _STATUS_ERRORS[status]
    return ProviderUnavailable if status >= 500 else BadRequest


class HttpProvider(abc.ABC):
    """Base of the HTTP adapters: the I/O of ``send`` and ``stream`` around converters."""

    name: ClassVar[str]
    FRAMING: ClassVar[Framing] = "sse"
    SUPPORTS_STREAMING: ClassVar[bool] = True
    SUPPORTS_TOOLS: ClassVar[bool] = True
    SUPPORTS_JSON_SCHEMA: ClassVar[bool] = True
    SUPPORTS_FORCED_TOOL_CHOICE: ClassVar[bool] = True
    DEFAULT_BASE_URL: ClassVar[str | None] = None
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ()

    def __init__(self, deployment: Deployment, client: HttpClient | None = None) -> None:
        self.deployment = deployment
        self.origin = Origin(self.name, deployment.id)
        base = deployment.base_url or self.DEFAULT_BASE_URL
        if base is None:
            raise ValueError(f"deployment {deployment.id}: base_url is required for {self.name}")
        self.base_url = base.rstrip("/")
        self.api_key = deployment.api_key or next(
            (v for env in self.API_KEY_ENV if (v := os.environ.get(env))), None
        )
        self._owns_client = client is None
        self._client = client or HttpClient()

    # -- converters: pure, no I/O -----------------------------------------------------

    @abc.abstractmethod
    def encode(self, request: ChatRequest) -> WireRequest:
        """The HTTP request for ``request`` in this provider's wire format."""

    @abc.abstractmethod
    def decode(self, body: Any) -> ChatResponse:
        """A successful response body (already JSON-decoded) as a :class:`ChatResponse`."""

    @abc.abstractmethod
    def error(self, status: int, headers: dict[str, str], body: bytes) -> ProviderError:
        """The taxonomy error for a failed response."""

    @abc.abstractmethod
    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one streamed response."""

    def rate_limits(self, headers: dict[str, str]) -> RateLimitInfo:
        return RateLimitInfo(retry_after_s=parse_retry_after(headers))

    def stamp(self, error: ProviderError, status: int, info: RateLimitInfo) -> ProviderError:
        """Fill in who and what of an error a converter built."""
        error.provider, error.deployment, error.status_code = self.name, self.deployment.id, status
        error.rate_limits = info
        if error.retry_after is None:
            error.retry_after = info.retry_after_s
        return error

    def check(self, request: ChatRequest) -> None:
        """Refuse, before any I/O, what this adapter cannot do (capabilities are declared)."""
        if request.tools and not self.SUPPORTS_TOOLS:
            raise self.origin.error(BadRequest, f"{self.name} does not support tool calling")
        forced = request.tool_choice not in (None, "auto", "none")
        if request.tools and forced and not self.SUPPORTS_FORCED_TOOL_CHOICE:
            raise self.origin.error(
                BadRequest,
                f"{self.name} cannot force a tool call (tool_choice={request.tool_choice!r})",
            )
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_schema" and not self.SUPPORTS_JSON_SCHEMA:
            raise self.origin.error(BadRequest, f"{self.name} does not support JSON-schema output")

    # -- I/O --------------------------------------------------------------------------

    def _failure(self, status: int, headers: dict[str, str], body: bytes) -> ProviderError:
        return self.stamp(self.error(status, headers, body), status, self.rate_limits(headers))

    async def send(self, request: ChatRequest) -> ChatResponse:
        self.check(request)
        wire = self.encode(msgspec.structs.replace(request, stream=False))
        started = time.perf_counter()
        async with self._client.open(wire, self.deployment.timeouts, self.origin) as response:
            body = await response.read()
        if response.status >= 400:
            raise self._failure(response.status, response.headers, body)
        result = self.decode(loads(body, self.origin))
        result.latency_s = time.perf_counter() - started
        result.provider, result.deployment = self.name, self.deployment.id
        result.rate_limits = self.rate_limits(response.headers)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        if not self.SUPPORTS_STREAMING:
            raise self.origin.error(BadRequest, f"{self.name} does not support streaming")
        self.check(request)
        wire = self.encode(msgspec.structs.replace(request, stream=True))
        async with self._client.open(wire, self.deployment.timeouts, self.origin) as response:
            if response.status >= 400:
                raise self._failure(response.status, response.headers, await response.read())
            yield StreamStart(rate_limits=self.rate_limits(response.headers))
            decoder = self.stream_decoder()
            frames = _sse(response.lines()) if self.FRAMING == "sse" else _ndjson(response.lines())
            try:
                async for frame in frames:
                    for event in decoder.feed(frame):
                        yield event
            except ProviderError as exc:
                if isinstance(exc, StreamInterrupted | MalformedResponse):
                    exc.provider, exc.deployment = self.name, self.deployment.id
                raise
            yield decoder.close()

    async def aclose(self) -> None:
        if self._owns_client:
            await self._client.aclose()


async def _sse(lines: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    """Server-sent events: ``event:`` and ``data:`` fields, one event per blank line."""
    event, data = "", list[bytes]()
    async for line in lines:
        if not line:
            if data:
                yield SseEvent(event, b"\n".join(data))
            event, data = "", []
        elif line.startswith(b"data:"):
            data.append(line[6:] if line[5:6] == b" " else line[5:])
        elif line.startswith(b"event:"):
            event = line[6:].strip().decode()
    if data:
        yield SseEvent(event, b"\n".join(data))


async def _ndjson(lines: AsyncIterator[bytes]) -> AsyncIterator[SseEvent]:
    async for line in lines:
        if line.strip():
            yield SseEvent("", line)


def interrupted(origin: Origin, message: str) -> StreamInterrupted:
    """A stream that failed after it started; the router must not treat it as an answer."""
    return StreamInterrupted(message, provider=origin.provider, deployment=origin.deployment)


__all__ = [
    "Deployment",
    "HttpProvider",
    "Provider",
    "SseEvent",
    "StreamDecoder",
    "error_for_status",
    "error_payload",
    "interrupted",
    "load_chunk",
    "loads",
    "parse_retry_after",
    "plain_error",
    "to_int",
]
