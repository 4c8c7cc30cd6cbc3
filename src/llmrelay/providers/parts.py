"""Small pure helpers shared by the converters."""

from __future__ import annotations

from typing import Any

import msgspec

_decode = msgspec.json.Decoder()


def data_url(url: str) -> tuple[str, str] | None:
    """``(media_type, base64_data)`` of a ``data:`` URL, or ``None`` for any other URL."""
    if not url.startswith("data:"):
        return None
    head, _, data = url[5:].partition(",")
    media_type, _, encoding = head.partition(";")
    return (media_type or "application/octet-stream", data) if encoding == "base64" else None


def json_arguments(arguments: str) -> Any:
    """Tool-call arguments as an object; text that is not JSON is kept under ``"input"``."""
    try:
        value = _decode.decode(arguments or "{}")
    except msgspec.DecodeError:
        return {"input": arguments}
    return value if isinstance(value, dict) else {"input": value}
