"""The few ASGI pieces the gateway needs, written out: no framework on the hot path.

A :class:`Request` reads its body within a size limit; :class:`Responder` sends JSON, a
server-sent-event stream and errors, each answer with the headers every answer carries
(request id, security headers, CORS when the origin is allowed).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from llmrelay.gateway.wire import ApiError, Kind

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

SECURITY_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-store"),
    (b"content-security-policy", b"default-src 'none'; frame-ancestors 'none'"),
)
JSON = (b"content-type", b"application/json")
SSE = (b"content-type", b"text/event-stream; charset=utf-8")


class Request:
    """One HTTP request: method, path, headers by lower-case name, and its body."""

    __slots__ = ("headers", "method", "path", "query", "receive", "scope")

    def __init__(self, scope: Scope, receive: Receive) -> None:
        self.scope = scope
        self.receive = receive
        self.method: str = scope["method"]
        self.path: str = scope["path"]
        self.query: bytes = scope.get("query_string", b"")
        self.headers: dict[bytes, bytes] = dict(scope["headers"])

    def header(self, name: bytes) -> str | None:
        value = self.headers.get(name)
        return value.decode("latin-1") if value is not None else None

    def api_key(self) -> str | None:
        """The key from ``Authorization: Bearer …`` (OpenAI) or ``x-api-key`` (Anthropic)."""
        auth = self.headers.get(b"authorization")
        if auth is not None:
            scheme, _, token = auth.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer" and token.strip():
                return token.strip()
        key = self.headers.get(b"x-api-key")
        return key.decode("latin-1").strip() if key else None

    async def body(self, limit: int) -> bytes:
        """The whole body; 413 as soon as it is known to be longer than ``limit``."""
        length = self.headers.get(b"content-length")
        if length is not None and length.isdigit() and int(length) > limit:
            raise _too_large(limit)
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                raise ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                raise _too_large(limit)
            chunks.append(chunk)
            if not message.get("more_body", False):
                return chunks[0] if len(chunks) == 1 else b"".join(chunks)


class ClientGone(Exception):
    """The client closed the connection before its answer was sent."""


def _too_large(limit: int) -> ApiError:
    return ApiError(Kind.TOO_LARGE, f"the request body is larger than {limit} bytes")


class Responder:
    """Sends one answer with the headers every answer carries."""

    __slots__ = ("base", "send", "started")

    def __init__(self, send: Send, base: list[tuple[bytes, bytes]]) -> None:
        self.send = send
        self.base = base
        self.started = False

    async def start(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        self.started = True
        await self.send({"type": "http.response.start", "status": status,
                         "headers": [*self.base, *headers]})  # fmt: skip

    async def body(self, data: bytes, *, more: bool = False) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def json(
        self, status: int, data: bytes, headers: list[tuple[bytes, bytes]] | None = None
    ) -> None:
        extra = [JSON, (b"content-length", str(len(data)).encode())]
        await self.start(status, [*extra, *(headers or ())])
        await self.body(data)

    async def empty(self, status: int, headers: list[tuple[bytes, bytes]]) -> None:
        await self.start(status, [*headers, (b"content-length", b"0")])
        await self.body(b"")


async def until_disconnect(receive: Receive) -> None:
    """Returns when the client disconnects (the body has been read already)."""
    while (await receive())["type"] != "http.disconnect":
        pass


__all__ = [
    "JSON",
    "SECURITY_HEADERS",
    "SSE",
    "ClientGone",
    "Request",
    "Responder",
    "until_disconnect",
]
