"""One structured log line per request (structlog)."""

from __future__ import annotations

from typing import Literal

import msgspec


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.logs:`` — one line per request, with its request id and route."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lines below this level are not written: a request answered logs at ``info``, one
    that fell back or was answered from the cache too, a failed one at ``warning``
    (``error`` when every deployment failed); each failed attempt logs at ``debug``."""
    output: Literal["stderr", "stdout"] = "stderr"
