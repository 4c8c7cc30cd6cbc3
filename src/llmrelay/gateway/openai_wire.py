"""OpenAI's Chat Completions API, as the gateway serves it: body → request, answer → body.

Pure converters (no I/O). A request body is decoded once by a reused msgspec decoder;
an unknown field is refused with a 400 naming it, as OpenAI does, except the sampling
hints listed in :class:`ChatBody` that no router policy depends on, which are accepted
and not forwarded. Messages, tools and formats are checked by :mod:`llmrelay.inputs`, so
a mistake names the field the same way for the gateway and for ``SmartLLM``.
"""

from __future__ import annotations

import time
from typing import Any

import msgspec

from llmrelay.errors import BadRequest
from llmrelay.gateway.wire import ApiError, Kind, decode_body
from llmrelay.inputs import to_request
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCallDelta,
    Usage,
)

_encode = msgspec.json.Encoder().encode


class StreamOptions(msgspec.Struct, forbid_unknown_fields=True):
    include_usage: bool = False


class ChatBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/chat/completions``; ``model`` names a model group."""

    model: str
    messages: list[Any]
    stream: bool = False
    stream_options: StreamOptions | None = None
    n: int | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: Any = None
    tools: Any = None
    tool_choice: Any = None
    response_format: Any = None
    user: str | None = None
    metadata: Any = None
    # Accepted and not forwarded: hints that change no routing decision.
    parallel_tool_calls: bool | None = None
    seed: int | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    store: bool | None = None
    service_tier: str | None = None


_PARAMS = (
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "stop",
    "tools",
    "tool_choice",
    "response_format",
    "user",
    "metadata",
)
_decoder = msgspec.json.Decoder(ChatBody)


def parse_chat(body: bytes) -> tuple[ChatBody, ChatRequest]:
    """The decoded body and the checked request it asks for; :class:`BadRequest` naming
    the field for anything wrong."""
    chat = decode_body(_decoder, body)
    if chat.n not in (None, 1):
        raise BadRequest(f"n: only 1 choice per request is supported, got {chat.n}")
    if not chat.messages:
        raise BadRequest("messages: at least one message is required")
    params = {name: value for name in _PARAMS if (value := getattr(chat, name)) is not None}
    request = to_request(chat.messages, params)
    request.stream = chat.stream
    return chat, request


def _usage(usage: Usage) -> dict[str, Any]:
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.total_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_input_tokens},
        "completion_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
    }


def _finish(reason: str) -> str:
    return "stop" if reason == "error" else reason


def completion(response: ChatResponse, request_id: str) -> bytes:
    """A ``chat.completion`` object."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": response.content if response.content or not response.tool_calls else None,
        "refusal": None,
    }
    if response.tool_calls:
        message["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in response.tool_calls
        ]
    return _encode(
        {
            "id": response.id or f"chatcmpl-{request_id}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": response.model or response.group,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": _finish(response.finish_reason),
                    "logprobs": None,
                }
            ],
            "usage": _usage(response.usage),
            "system_fingerprint": None,
        }
    )


class ChunkWriter:
    """Turns one answer's stream events into ``chat.completion.chunk`` SSE frames."""

    def __init__(self, request_id: str, group: str, *, include_usage: bool) -> None:
        self._id = f"chatcmpl-{request_id}"
        self._model = group
        self._created = int(time.time())
        self._include_usage = include_usage

    def _frame(self, choices: list[Any], usage: Usage | None = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
            "choices": choices,
        }
        if self._include_usage:
            chunk["usage"] = _usage(usage) if usage is not None else None
        return b"data: " + _encode(chunk) + b"\n\n"

    def _delta(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        return self._frame([{"index": 0, "delta": delta, "finish_reason": finish}])

    def frames(self, event: StreamEvent) -> bytes:
        """The SSE bytes for ``event`` (several frames for the end)."""
        if isinstance(event, TextDelta):
            return self._delta({"content": event.text})
        if isinstance(event, ToolCallDelta):
            call: dict[str, Any] = {
                "index": event.index,
                "function": {"arguments": event.arguments},
            }
            if event.id:
                call["id"], call["type"] = event.id, "function"
            if event.name:
                call["function"]["name"] = event.name
            return self._delta({"tool_calls": [call]})
        if isinstance(event, StreamStart):
            self._id = event.id or self._id
            self._model = event.model or self._model
            return self._delta({"role": "assistant", "content": ""})
        end = self._delta({}, _finish(event.finish_reason))
        if self._include_usage:
            end += self._frame([], event.usage or Usage())
        return end + b"data: [DONE]\n\n"


ERROR_TYPES: dict[Kind, tuple[str, str | None]] = {
    Kind.INVALID: ("invalid_request_error", None),
    Kind.CONTEXT: ("invalid_request_error", "context_length_exceeded"),
    Kind.AUTHENTICATION: ("invalid_request_error", "invalid_api_key"),
    Kind.PERMISSION: ("invalid_request_error", "model_not_allowed"),
    Kind.NOT_FOUND: ("invalid_request_error", "model_not_found"),
    Kind.TOO_LARGE: ("invalid_request_error", "request_too_large"),
    Kind.RATE_LIMIT: ("requests", "rate_limit_exceeded"),
    Kind.BUDGET: ("insufficient_quota", "insufficient_quota"),
    Kind.UNAVAILABLE: ("server_error", "service_unavailable"),
    Kind.TIMEOUT: ("server_error", "timeout"),
    Kind.UPSTREAM: ("server_error", "upstream_error"),
    Kind.INTERNAL: ("server_error", None),
}


def error_status(error: ApiError) -> int:
    return error.status


def error_body(error: ApiError, request_id: str) -> bytes:
    kind, code = ERROR_TYPES[error.kind]
    return _encode({"error": {"message": error.message, "type": kind, "param": error.param,
                              "code": code}})  # fmt: skip


def error_event(error: ApiError, request_id: str) -> bytes:
    """An error after a stream began: a data frame the SDKs raise on, then the end."""
    return b"data: " + error_body(error, request_id) + b"\n\n"


__all__ = ["ChatBody", "ChunkWriter", "completion", "error_body", "error_event", "error_status",
           "parse_chat"]  # fmt: skip
