"""The provider seam: pure converters plus one ``send`` and one ``stream`` over HTTP.

An adapter subclasses :class:`HttpProvider` and writes only converters — request to wire,
wire to response, wire to error, stream frames to events, headers to
:class:`~llmrelay.types.RateLimitInfo`. None of them does I/O, so each is unit-tested on
recorded samples; ``send`` and ``stream`` here are the only code that touches the network.
"""

from __future__ import annotations

import abc
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, ClassVar, Literal, Protocol
from urllib.parse import urlsplit

import msgspec

from llmrelay.errors import BadRequest, MalformedResponse, ProviderError, StreamInterrupted
from llmrelay.providers.http import Headers, HttpClient, Origin, Timeouts, WireRequest
from llmrelay.providers.wire import error_payload, parse_retry_after
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    RateLimitInfo,
    StreamEnd,
    StreamEvent,
    StreamStart,
)

Framing = Literal["sse", "ndjson"]
_decode = msgspec.json.Decoder()
_encode = msgspec.json.Encoder().encode
log = logging.getLogger(__name__)


class Deployment(msgspec.Struct, frozen=True, kw_only=True):
    """One (provider, model, credentials, base URL): the unit the router schedules.

    ``api_key`` falls back to the provider's environment variable (``OPENAI_API_KEY``…);
    ``base_url`` to the provider's base-URL variable (``OPENAI_BASE_URL``…), then to its
    public endpoint.
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

    def check(self, request: ChatRequest, *, stream: bool = False) -> None:
        """Raise :class:`BadRequest`, before any I/O, if this adapter cannot serve ``request``."""
        ...

    async def discover_context_window(self) -> int | None:
        """Ask the server how large the deployment's context window is.

        ``None`` when the server does not say; never raises (discovery is best effort).
        """
        ...

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


class HttpProvider(abc.ABC):
    """Base of the HTTP adapters: the I/O of ``send`` and ``stream`` around converters.

    What an adapter can do is declared in the ``SUPPORTS_*`` class attributes and enforced
    by :meth:`check` before any I/O, so a router can skip a deployment that cannot serve a
    request instead of learning it from a failed call.
    """

    name: ClassVar[str]
    FRAMING: ClassVar[Framing] = "sse"
    SUPPORTS_STREAMING: ClassVar[bool] = True
    SUPPORTS_TOOLS: ClassVar[bool] = True
    SUPPORTS_FORCED_TOOL_CHOICE: ClassVar[bool] = True
    """Whether ``tool_choice`` may name a tool or be ``"required"``."""
    SUPPORTS_JSON_OBJECT: ClassVar[bool] = True
    """Whether ``response_format`` of type ``json_object`` (any JSON object) is honoured."""
    SUPPORTS_JSON_SCHEMA: ClassVar[bool] = True
    SUPPORTS_IMAGES: ClassVar[bool] = True
    SUPPORTS_IMAGE_URLS: ClassVar[bool] = True
    """Whether images may be given by URL; when not, only base64 ``data:`` URLs are sent."""
    DEFAULT_BASE_URL: ClassVar[str | None] = None
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ()
    """Environment variables read, in order, when the deployment has no ``api_key``."""
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ()
    """Environment variables read, in order, when the deployment has no ``base_url``."""

    def __init__(self, deployment: Deployment, client: HttpClient | None = None) -> None:
        self.deployment = deployment
        self.origin = Origin(self.name, deployment.id)
        self.base_url = self._resolve_base_url(deployment)
        self.api_key = deployment.api_key or next(
            (v for env in self.API_KEY_ENV if (v := os.environ.get(env))), None
        )
        self.clock: Callable[[], float] = time.time
        """The wall clock that reset times in headers are measured from."""
        self._owns_client = client is None
        self._client = client or HttpClient()

    @classmethod
    def base_url_from_env(cls) -> tuple[str, str] | None:
        """The first base URL set in ``BASE_URL_ENV``, with the variable that set it."""
        for env in cls.BASE_URL_ENV:
            if value := os.environ.get(env, "").strip():
                return value, env
        return None

    def _resolve_base_url(self, deployment: Deployment) -> str:
        """``base_url``, else the environment, else the public endpoint; http(s) only.

        Raises ``ValueError`` naming the deployment and the URL (configuration turns it
        into a ``ConfigError``).
        """
        if deployment.base_url is not None:
            base, source = deployment.base_url, "base_url"
        elif (from_env := self.base_url_from_env()) is not None:
            base, source = from_env
        elif self.DEFAULT_BASE_URL is not None:
            base, source = self.DEFAULT_BASE_URL, "the default"
        else:
            raise ValueError(f"deployment {deployment.id}: base_url is required for {self.name}")
        split = urlsplit(base.strip())
        if split.scheme not in ("http", "https") or not split.netloc:
            raise ValueError(
                f'deployment {deployment.id}: base URL "{base}" (from {source}) must be an '
                "http:// or https:// URL"
            )
        return base.strip().rstrip("/")

    # -- converters: pure, no I/O -----------------------------------------------------

    @abc.abstractmethod
    def encode(self, request: ChatRequest) -> WireRequest:
        """The HTTP request for ``request`` in this provider's wire format."""

    @abc.abstractmethod
    def decode(self, body: Any) -> ChatResponse:
        """A successful response body (already JSON-decoded) as a :class:`ChatResponse`."""

    @abc.abstractmethod
    def error(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        """The taxonomy error for a failed response."""

    @abc.abstractmethod
    def stream_decoder(self) -> StreamDecoder:
        """A fresh decoder for one streamed response."""

    def auth_headers(self, api_key: str) -> dict[str, str]:
        """How this provider takes its key; a bearer token unless an adapter says otherwise."""
        return {"authorization": f"Bearer {api_key}"}

    def headers(self) -> dict[str, str]:
        """Headers of every request: JSON content, the deployment's own headers, then the key."""
        headers = {"content-type": "application/json", **self.deployment.headers}
        if self.api_key:
            headers.update(self.auth_headers(self.api_key))
        return headers

    def rate_limits(self, headers: Headers) -> RateLimitInfo:
        return RateLimitInfo(retry_after_s=parse_retry_after(headers, now=self.clock))

    def stamp(self, error: ProviderError, status: int, info: RateLimitInfo) -> ProviderError:
        """Fill in who and what of an error a converter built."""
        error.provider, error.deployment, error.status_code = self.name, self.deployment.id, status
        error.rate_limits = info
        if error.retry_after is None:
            error.retry_after = info.retry_after_s
        return error

    def check(self, request: ChatRequest, *, stream: bool = False) -> None:
        """Refuse, before any I/O, what this adapter cannot do (capabilities are declared).

        Every "this adapter cannot do X" decision lives here, never in :meth:`encode`, so
        a router can ask each candidate before choosing one.
        """
        reason = self._refusal(request, stream=stream)
        if reason is not None:
            raise self.origin.error(BadRequest, reason)

    def _refusal(self, request: ChatRequest, *, stream: bool) -> str | None:
        if stream and not self.SUPPORTS_STREAMING:
            return f"{self.name} does not support streaming"
        if request.tools and not self.SUPPORTS_TOOLS:
            return f"{self.name} does not support tool calling"
        choice = request.tool_choice
        forced = request.tools and choice not in (None, "auto", "none")
        if forced and not self.SUPPORTS_FORCED_TOOL_CHOICE:
            return f'{self.name} cannot force a tool call (tool_choice "{choice}")'
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object" and not self.SUPPORTS_JSON_OBJECT:
            hint = "; use a json_schema response_format" if self.SUPPORTS_JSON_SCHEMA else ""
            return f"{self.name} has no JSON-object mode{hint}"
        if fmt is not None and fmt.type == "json_schema" and not self.SUPPORTS_JSON_SCHEMA:
            return f"{self.name} does not support JSON-schema output"
        images = [
            part
            for message in request.messages
            if not isinstance(message.content, str)
            for part in message.content
            if isinstance(part, ImagePart)
        ]
        if images and not self.SUPPORTS_IMAGES:
            return f"{self.name} does not accept images"
        if not self.SUPPORTS_IMAGE_URLS and any(not p.url.startswith("data:") for p in images):
            return f"{self.name} takes images only as base64 data: URLs, not by link"
        return None

    # -- I/O --------------------------------------------------------------------------

    def _failure(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        return self.stamp(self.error(status, headers, body), status, self.rate_limits(headers))

    async def send(self, request: ChatRequest) -> ChatResponse:
        self.check(request)
        wire = self.encode(msgspec.structs.replace(request, stream=False))
        started = time.perf_counter()
        answer = await self._client.fetch(wire, self.deployment.timeouts, self.origin)
        if answer.status >= 400:
            raise self._failure(answer.status, answer.headers, answer.body)
        result = self.decode(loads(answer.body, self.origin))
        result.latency_s = time.perf_counter() - started
        result.provider, result.deployment = self.name, self.deployment.id
        result.rate_limits = self.rate_limits(answer.headers)
        return result

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamEvent]:
        self.check(request, stream=True)
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

    async def discover_context_window(self) -> int | None:
        """Ask the server how large the deployment's context window is.

        ``None`` when the server does not say — hosted APIs that publish no figure, an
        error answer (an auth failure too: the real call will report it) or an unreachable
        server. Never raises: discovery is best effort, and a window the router does not
        know is simply not checked before sending.
        """
        try:
            return await self.ask_context_window()
        except ProviderError as exc:
            log.debug("%s: no context window from the server: %s", self.deployment.id, exc)
            return None

    async def ask_context_window(self) -> int | None:
        """The window the server reports; adapters override it. May raise ``ProviderError``."""
        return None

    async def fetch_json(self, url: str, *, body: Any = None) -> Any:
        """GET ``url`` (POST when there is a ``body``) with this deployment's headers and
        timeouts; the decoded JSON, or ``None`` when the server answered an error or not JSON.

        A network failure raises the taxonomy error, so a caller probing several endpoints
        stops at the first sign the server is unreachable.
        """
        wire = WireRequest(
            method="GET" if body is None else "POST",
            url=url,
            headers=self.headers(),
            body=b"" if body is None else _encode(body),
        )
        answer = await self._client.fetch(wire, self.deployment.timeouts, self.origin)
        if answer.status >= 400:
            log.debug("%s: %s answered HTTP %d", self.deployment.id, url, answer.status)
            return None
        return error_payload(answer.body)

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
    "interrupted",
    "load_chunk",
    "loads",
]
