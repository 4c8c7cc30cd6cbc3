"""What the exact cache keeps for one request: the answer as first given, and its stream.

An entry is msgpack behind a one-byte format mark. A value written by an incompatible
version (another mark, or fields that no longer decode) reads as no entry, never as an
error: the request is answered again and the entry overwritten.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from llmrelay.types import (
    ChatResponse,
    RateLimitInfo,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
)

FORMAT = b"\x01"
"""The first byte of every encoded entry; bump it when an entry's meaning changes."""


class CachedAnswer(msgspec.Struct, kw_only=True):
    """One cached answer."""

    response: ChatResponse
    """The response as first answered, with what it cost (``cost_micros``)."""
    events: list[StreamEvent] | None = None
    """The stream exactly as delivered to the caller, when the first call was streamed."""
    stored_at: float = 0.0
    """When it was stored, by the cache's clock (:meth:`ExactCache.put` sets it)."""


_ENCODER = msgspec.msgpack.Encoder()
_DECODER = msgspec.msgpack.Decoder(CachedAnswer)


def encode(answer: CachedAnswer) -> bytes:
    """The bytes a store keeps for ``answer``."""
    return FORMAT + _ENCODER.encode(answer)


def decode(data: bytes) -> CachedAnswer | None:
    """The answer ``data`` holds, or ``None`` when another version wrote it."""
    if data[:1] != FORMAT:
        return None
    try:
        return _DECODER.decode(memoryview(data)[1:])
    except msgspec.DecodeError:
        return None


def replay(answer: CachedAnswer) -> list[StreamEvent]:
    """The events a streamed cache hit sends: the recorded stream when there is one, else
    events made from the response that :class:`~llmrelay.types.StreamAccumulator` folds
    back into the same content, tool calls, finish reason and usage.

    (A tool call with an empty id or empty arguments comes back as the accumulator's
    defaults, ``call_<index>`` and ``{}``, as it would from a provider's stream.)
    """
    if answer.events is not None:
        return list(answer.events)
    response = answer.response
    events: list[StreamEvent] = [StreamStart(id=response.id, model=response.model)]
    if response.content:
        events.append(TextDelta(response.content))
    events.extend(
        ToolCallDelta(index=i, id=call.id, name=call.name, arguments=call.arguments)
        for i, call in enumerate(response.tool_calls)
    )
    events.append(StreamEnd(finish_reason=response.finish_reason, usage=response.usage))
    return events


def hit_response(answer: CachedAnswer, how: Literal["exact", "semantic"]) -> ChatResponse:
    """The response a cache hit returns: the first answer, marked ``cached``, costing
    nothing and saving what it cost; the first call's attempts, rate limits, timings and
    request id are not this call's, so they are cleared."""
    first = answer.response
    return msgspec.structs.replace(
        first,
        cached=how,
        cost_micros=0,
        saved_micros=first.cost_micros,
        attempts=[],
        rate_limits=RateLimitInfo(),
        latency_s=0.0,
        ttft_s=None,
        request_id="",
    )


__all__ = ["FORMAT", "CachedAnswer", "decode", "encode", "hit_response", "replay"]
