"""One structured log line per request (structlog), JSON by default.

Each routed request ends in one ``request`` line: its request id, the group, the
deployment that answered, the route taken (every deployment tried and how it ended), the
latency, time to first token, queue wait, tokens and cost. Levels:

- ``info`` — answered (first try, after a fallback, or from the cache); cancelled by the
  caller;
- ``warning`` — failed (the caller's bad request, a budget refusal…); a breaker opening; a
  budget crossing a threshold;
- ``error`` — every deployment failed (``AllModelsExhausted``);
- ``debug`` — each failed attempt, each skipped deployment, each hedge.

Secrets are never written: request content is not logged, and anything shaped like an API
key or a bearer token in an error message is masked.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, Literal, TextIO

import msgspec
import structlog

from llmrelay.events import Event, EventKind
from llmrelay.types import Attempt


class LogSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.logs:`` — one line per request, with its request id and route."""

    format: Literal["json", "console"] = "json"
    level: Literal["debug", "info", "warning", "error"] = "info"
    """Lines below this level are not written: a request answered logs at ``info``, one
    that fell back or was answered from the cache too, a failed one at ``warning``
    (``error`` when every deployment failed); each failed attempt logs at ``debug``."""
    output: Literal["stderr", "stdout"] = "stderr"


_SECRET = re.compile(
    r"(?P<keep>sk-(?:ant-|proj-)?|AIza|gsk_|Bearer\s+|xai-)(?P<secret>[A-Za-z0-9_\-.]{6,})"
)


def redact(text: str) -> str:
    """``text`` with API keys and bearer tokens masked (their prefix kept)."""
    return _SECRET.sub(lambda m: f"{m['keep']}***", text)


def _redacted(_: Any, __: str, entry: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    for name, value in entry.items():
        if isinstance(value, str):
            entry[name] = redact(value)
    return entry


def _route(attempts: tuple[Attempt, ...]) -> list[str]:
    """``["openai/gpt-4o-mini: RateLimited", "anthropic/claude-haiku-4-5: ok"]``."""
    return [f"{a.deployment}: {a.error or 'ok'}" for a in attempts]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


class LogSink:
    """Writes the router's events as structlog lines (see the module docstring).

    Uses a logger of its own (``structlog.wrap_logger``): the application's structlog
    and logging configuration are left as they are.
    """

    name = "logs"

    def __init__(self, settings: LogSettings | None = None, *, file: TextIO | None = None) -> None:
        settings = settings or LogSettings()
        renderer: Any = (
            structlog.processors.JSONRenderer()
            if settings.format == "json"
            else structlog.dev.ConsoleRenderer(colors=False)
        )
        out = file or (sys.stdout if settings.output == "stdout" else sys.stderr)
        self._log: Any = structlog.wrap_logger(
            structlog.PrintLogger(out),
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                _redacted,
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(
                logging.getLevelNamesMapping()[settings.level.upper()]
            ),
        ).bind(logger="llmrelay")
        self._out = out

    def close(self) -> None:
        self._out.flush()

    def handle(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.FINISHED:
            self._finished(event)
        elif kind is EventKind.CACHE_HIT:
            self._log.info("request", request_id=event.request_id, group=event.group,
                           outcome="cache_hit", cache=event.message,
                           deployment=event.deployment, saved_usd=event.cost_usd,
                           streamed=event.streamed, **_who(event))  # fmt: skip
        elif kind is EventKind.ATTEMPT_FAILED:
            self._log.debug("attempt failed", request_id=event.request_id, group=event.group,
                            deployment=event.deployment, error=event.error,
                            message=event.message, attempt=event.attempt,
                            latency_ms=_ms(event.latency_s))  # fmt: skip
        elif kind in (EventKind.SKIPPED, EventKind.HEDGED, EventKind.BUDGET_REFUSED):
            self._log.debug(kind.value, request_id=event.request_id, group=event.group,
                            deployment=event.deployment, reason=event.error)  # fmt: skip
        elif kind is EventKind.BREAKER_CHANGED:
            opened = event.message.rpartition(" -> ")[2] == "open"
            log = self._log.warning if opened else self._log.info
            log("breaker changed", deployment=event.deployment, change=event.message)
        elif kind is EventKind.BUDGET_THRESHOLD:
            self._log.warning("budget threshold", budget=event.budget,
                              share=round(event.share, 4))  # fmt: skip
        elif kind is EventKind.DOWNGRADED:
            self._log.info("downgraded", request_id=event.request_id, group=event.group,
                           deployment=event.deployment)  # fmt: skip
        elif kind is EventKind.LIMIT_LEARNED:
            self._log.info("limit learned", deployment=event.deployment, limit=event.message)

    def _finished(self, event: Event) -> None:
        fields: dict[str, Any] = {
            "request_id": event.request_id,
            "group": event.group,
            "route": _route(event.attempts),
            "latency_ms": _ms(event.latency_s),
            "queue_wait_ms": _ms(sum(a.wait_s for a in event.attempts)),
            "streamed": event.streamed,
            **_who(event),
        }
        response = event.response
        if response is not None:
            usage = response.usage
            self._log.info("request", outcome="ok", deployment=response.deployment,
                           model=response.model, fell_back=response.fell_back,
                           ttft_ms=_ms(response.ttft_s), input_tokens=usage.input_tokens,
                           output_tokens=usage.output_tokens,
                           cached_input_tokens=usage.cached_input_tokens,
                           cost_usd=response.cost_usd, **fields)  # fmt: skip
            return
        if event.error == "Cancelled":
            log = self._log.info
        elif event.error == "AllModelsExhausted":
            log = self._log.error
        else:
            log = self._log.warning
        log("request", outcome=event.error, error=event.message, **fields)


def _who(event: Event) -> dict[str, Any]:
    """Who asked, and why: the user, tags and task (never the caller's key)."""
    request = event.request
    if request is None:
        return {}
    who: dict[str, Any] = {}
    if request.user:
        who["user"] = request.user
    if request.tags:
        who["tags"] = request.tags
    if request.metadata and "task" in request.metadata:
        who["task"] = request.metadata["task"]
    return who


def open_sink(settings: LogSettings) -> LogSink:
    return LogSink(settings)


__all__ = ["LogSettings", "LogSink", "open_sink", "redact"]
