"""``POST /api/v1/media/parse`` and ``GET /api/v1/media/health``: the parser over HTTP.

A plain ASGI app around one :class:`~llmrelay.media.service.MediaParser`, served alone by
``llmrelay media serve`` and meant to be mounted by any ASGI server. The body is read up to
a limit (413 past it) and decoded strictly (400 naming the field that is wrong); a name
that cannot be parsed is an ``error`` item in place, never a failed batch.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import msgspec

from llmrelay.errors import LLMRelayError
from llmrelay.media.service import MediaParser, ParseRequest, parse_batch

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

PARSE_PATH = "/api/v1/media/parse"
HEALTH_PATH = "/api/v1/media/health"
MAX_BODY = 4 * 1024 * 1024
"""The largest request body read (bytes): 4,000 names of the longest length allowed."""
MAX_NAMES = 5000
"""The most names one request may hold."""

_ENCODE = msgspec.json.Encoder().encode
_DECODE = msgspec.json.Decoder(ParseRequest).decode
_SECURITY_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"cache-control", b"no-store"),
]


class HttpError(Exception):
    """An answer other than 200: its status and the message the caller reads."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _body(receive: Receive, limit: int) -> bytes:
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise HttpError(499, "the client went away")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise HttpError(413, f"request body larger than {limit} bytes")
        chunks.append(chunk)
        if not message.get("more_body"):
            return b"".join(chunks)


def decode_request(body: bytes, *, max_names: int = MAX_NAMES) -> ParseRequest:
    """The request, or a 400 saying which field is wrong."""
    try:
        request = _DECODE(body)
    except msgspec.ValidationError as exc:
        raise HttpError(400, f"invalid request: {exc}") from None
    except msgspec.DecodeError as exc:
        raise HttpError(400, f"invalid JSON: {exc}") from None
    if len(request.names) > max_names:
        raise HttpError(
            400, f"names: {len(request.names)} names, at most {max_names} in one request"
        )
    return request


class MediaApp:
    """The parser's HTTP API (ASGI). The parser is the caller's; this app does not close it."""

    def __init__(
        self, parser: MediaParser, *, max_body: int = MAX_BODY, max_names: int = MAX_NAMES
    ) -> None:
        self.parser = parser
        self.max_body = max_body
        self.max_names = max_names
        self._routes: dict[str, tuple[str, Callable[[Receive], Awaitable[tuple[int, Any]]]]] = {
            PARSE_PATH: ("POST", self._parse),
            HEALTH_PATH: ("GET", self._health),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        try:
            route = self._routes.get(scope["path"])
            if route is None:
                raise HttpError(404, f"no route for {scope['method']} {scope['path']}")
            method, handler = route
            if scope["method"] != method:
                raise HttpError(405, f"method {scope['method']} not allowed; use {method}")
            status, payload = await handler(receive)
        except HttpError as exc:
            if exc.status == 499:
                return
            status, payload = exc.status, {"error": {"message": str(exc)}}
        except LLMRelayError as exc:  # the chain's configuration, say: not the caller's fault
            status, payload = 500, {"error": {"message": f"{type(exc).__name__}: {exc}"}}
        body = _ENCODE(payload)
        headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            *_SECURITY_HEADERS,
        ]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _parse(self, receive: Receive) -> tuple[int, Any]:
        request = decode_request(await _body(receive, self.max_body), max_names=self.max_names)
        return 200, await parse_batch(self.parser, request)

    async def _health(self, receive: Receive) -> tuple[int, Any]:
        """200 when every chain group answered the probe name, else 503."""
        report = await self.parser.health()
        return (200 if report["ok"] else 503), report


__all__ = ["HEALTH_PATH", "MAX_BODY", "MAX_NAMES", "PARSE_PATH", "MediaApp", "decode_request"]
