"""The rows analytics keeps: one per request, one per attempt, one per feedback.

A row is made from a ``finished`` event (a routed request, answered or not) or a
``cache_hit`` event (an answer replayed from the response cache, costing nothing).
"""

from __future__ import annotations

import msgspec

from llmrelay.events import Event, EventKind
from llmrelay.types import Attempt


class AttemptRow(msgspec.Struct, frozen=True, kw_only=True):
    """One deployment tried for one request."""

    request_id: str
    deployment: str
    error: str | None
    """The error class's name, or ``None`` for the attempt that answered."""
    status_code: int | None
    latency_s: float
    wait_s: float
    sent: bool
    """Whether it reached the provider (``False``: skipped — breaker open, budget refused,
    too long for the context window, or a hedge that lost before it was sent)."""


class RequestRow(msgspec.Struct, frozen=True, kw_only=True):
    """One request: who asked, where it went, what it cost, how it ended."""

    request_id: str
    at: float
    """When it started (Unix time)."""
    group: str
    deployment: str
    """The deployment that answered, else the last one tried ("" when none was)."""
    provider: str
    model: str
    task: str | None
    tags: str
    """The request's tags joined by commas."""
    key: str | None
    user: str | None
    error: str | None
    """The error class's name when the request failed (``AllModelsExhausted``, …)."""
    message: str
    cached: str | None
    """``exact`` or ``semantic`` for an answer from the response cache."""
    latency_s: float
    """The whole request, as its caller waited for it."""
    deployment_latency_s: float | None
    """The answering attempt alone: from sending to the answer, without queueing."""
    ttft_s: float | None
    wait_s: float
    """Time queued by the scheduler, over every attempt."""
    attempts: int
    fell_back: bool
    input_tokens: int
    output_tokens: int
    cached_input_tokens: int
    cache_write_input_tokens: int
    reasoning_tokens: int
    cost_micros: int
    saved_micros: int
    streamed: bool
    quality: float | None
    """The evaluator's score in [0, 1], if one is configured and gave one."""
    tries: tuple[AttemptRow, ...] = ()


class FeedbackRow(msgspec.Struct, frozen=True, kw_only=True):
    """A score in [0, 1] given to one answer after the fact."""

    request_id: str
    score: float
    comment: str | None
    at: float


def _sent(attempt: Attempt) -> bool:
    # A skipped attempt is recorded with no status and no time: nothing was sent.
    return attempt.error is None or attempt.latency_s > 0 or attempt.status_code is not None


def row_of(event: Event, task_key: str, quality: float | None = None) -> RequestRow | None:
    """The row of a ``finished`` or ``cache_hit`` event (``None`` for any other event)."""
    if event.kind not in (EventKind.FINISHED, EventKind.CACHE_HIT) or event.request is None:
        return None
    request, response = event.request, event.response
    hit = event.kind is EventKind.CACHE_HIT
    attempts = () if hit else event.attempts
    tries = tuple(
        AttemptRow(request_id=event.request_id, deployment=a.deployment, error=a.error,
                   status_code=a.status_code, latency_s=a.latency_s, wait_s=a.wait_s,
                   sent=_sent(a))
        for a in attempts
    )  # fmt: skip
    sent = [t for t in tries if t.sent] or list(tries)
    deployment = event.deployment or (sent[-1].deployment if sent else "")
    answering = next((t for t in reversed(tries) if t.error is None), None)
    usage = response.usage if response is not None and not hit else None
    metadata = request.metadata or {}
    return RequestRow(
        request_id=event.request_id,
        at=event.started_at,
        group=event.group,
        deployment=deployment,
        provider=(response.provider if response is not None else "")
        or deployment.partition("/")[0],
        model=response.model if response is not None else "",
        task=metadata.get(task_key),
        tags=",".join(request.tags or ()),
        key=request.key,
        user=request.user,
        error=event.error,
        message=event.message if event.error else "",
        cached=event.message if hit else None,
        latency_s=event.latency_s,
        deployment_latency_s=answering.latency_s if answering is not None else None,
        ttft_s=response.ttft_s if response is not None and not hit else None,
        wait_s=sum((t.wait_s for t in tries), 0.0),
        attempts=sum(1 for t in tries if t.sent),
        fell_back=answering is not None and len(tries) > 1,
        input_tokens=usage.input_tokens if usage else 0,
        output_tokens=usage.output_tokens if usage else 0,
        cached_input_tokens=usage.cached_input_tokens if usage else 0,
        cache_write_input_tokens=usage.cache_write_input_tokens if usage else 0,
        reasoning_tokens=usage.reasoning_tokens if usage else 0,
        cost_micros=0 if hit else event.cost_micros,
        saved_micros=event.cost_micros if hit else 0,
        streamed=event.streamed,
        quality=quality,
        tries=tries,
    )


__all__ = ["AttemptRow", "FeedbackRow", "RequestRow", "row_of"]
