"""Pure readers of what providers send besides answers: error bodies, headers, numbers.

Shared by every adapter; no I/O, so each is unit-tested on recorded samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from email.utils import parsedate_to_datetime
from typing import Any

import msgspec

from llmrelay.errors import (
    AuthenticationFailed,
    BadRequest,
    NotFound,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    RateLimited,
    Timeout,
    shorten,
)
from llmrelay.providers.http import Headers

_decode = msgspec.json.Decoder()
ERROR_BODY_LIMIT = 300
"""Characters of an unrecognised error body quoted in the error's message."""


def error_payload(body: bytes) -> Any:
    """The JSON of an error body, or ``None`` when the body is not JSON (a proxy's HTML page)."""
    try:
        return _decode.decode(body)
    except msgspec.DecodeError:
        return None


def body_message(payload: Any) -> str | None:
    """The human message in an error body of no particular provider's shape, if it has one.

    Proxies and servers that merely resemble a provider answer ``{"message": …}``,
    ``{"error": "…"}``, ``{"error": {"message": …}}`` or ``{"detail": …}`` (FastAPI's, whose
    validation errors are a list of ``{"msg": …}``).
    """
    if not isinstance(payload, dict):
        return None
    error = payload.get("error")
    detail = payload.get("detail")
    for candidate in (
        payload.get("message"),
        error,
        error.get("message") if isinstance(error, dict) else None,
        detail,
    ):
        if isinstance(candidate, str) and candidate.strip():
            return candidate.strip()
    if isinstance(detail, list):
        found = [str(d["msg"]) for d in detail if isinstance(d, dict) and d.get("msg")]
        if found:
            return "; ".join(found)
    return None


def plain_error(status: int, body: bytes) -> ProviderError:
    """An error for a body in no documented shape: its message, else the start of its text.

    The status is not repeated in the message: ``str()`` of the stamped error shows it.
    """
    found = body_message(error_payload(body))
    if found is not None:
        return error_for_status(status)(found)
    text = shorten(body.decode("utf-8", "replace"), ERROR_BODY_LIMIT)
    return error_for_status(status)(
        f"unrecognised error body: {text}" if text else "empty error body"
    )


def frame_text(data: bytes) -> str:
    """Raw stream bytes as readable text for an error message (never a bytes repr)."""
    return shorten(data.decode("utf-8", "replace"), ERROR_BODY_LIMIT) or "an empty frame"


def positive_int(value: Any) -> int | None:
    """``value`` as a positive ``int`` (JSON numbers and digit strings), else ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)
    if isinstance(value, int | float) and value > 0:
        return int(value)
    return None


def parse_retry_after(headers: Headers, *, now: Callable[[], float] = time.time) -> float | None:
    """``retry-after-ms`` or ``retry-after`` (seconds or an HTTP date), in seconds.

    ``now`` is the wall clock an HTTP date is measured from (seconds since the epoch).
    """
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
        return max(0.0, parsedate_to_datetime(value).timestamp() - now())
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


__all__ = [
    "ERROR_BODY_LIMIT",
    "body_message",
    "error_for_status",
    "error_payload",
    "frame_text",
    "parse_retry_after",
    "plain_error",
    "positive_int",
    "to_int",
]
