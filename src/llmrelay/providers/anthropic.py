"""Anthropic Messages: ``x-api-key``, ``anthropic-version``, top-level ``system``, required
``max_tokens`` and the ``message_start`` … ``message_stop`` event sequence."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any, ClassVar

import msgspec

from llmrelay.errors import (
    AuthenticationFailed,
    BadRequest,
    ContentFiltered,
    ContextWindowExceeded,
    MalformedResponse,
    NotFound,
    Overloaded,
    ProviderError,
    ProviderUnavailable,
    QuotaExhausted,
    RateLimited,
)
from llmrelay.providers.base import HttpProvider, SseEvent, interrupted, loads
from llmrelay.providers.http import Headers, Origin, WireRequest
from llmrelay.providers.parts import data_url, json_arguments
from llmrelay.providers.wire import (
    body_message,
    error_for_status,
    error_payload,
    frame_text,
    parse_retry_after,
    plain_error,
    to_int,
)
from llmrelay.types import (
    CacheControl,
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    RateLimitInfo,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
    Usage,
)

_encode = msgspec.json.Encoder().encode
API_VERSION = "2023-06-01"
DEFAULT_MAX_TOKENS = 4096
_FINISH: dict[str, FinishReason] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
_ERRORS: dict[str, type[ProviderError]] = {
    "authentication_error": AuthenticationFailed,
    "permission_error": AuthenticationFailed,
    "not_found_error": NotFound,
    "rate_limit_error": RateLimited,
    "overloaded_error": Overloaded,
    "api_error": ProviderUnavailable,
    "billing_error": QuotaExhausted,
    "request_too_large": BadRequest,
}
_TOO_LONG = re.compile(r"prompt is too long: (\d+) tokens > (\d+)")
_EXCEEDS = re.compile(r"exceed context limit: (\d+) \+ (\d+) > (\d+)")


def _blocks(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [
            {
                "type": "tool_result",
                "tool_use_id": message.tool_call_id or "",
                "content": message.text,
            }
        ]
    blocks: list[dict[str, Any]] = []
    parts = [message.content] if isinstance(message.content, str) else message.content
    for part in parts:
        if isinstance(part, str):
            if part:
                blocks.append({"type": "text", "text": part})
        elif isinstance(part, ImagePart):
            decoded = data_url(part.url)
            source = (
                {"type": "base64", "media_type": decoded[0], "data": decoded[1]}
                if decoded
                else {"type": "url", "url": part.url}
            )
            blocks.append({"type": "image", "source": source})
        elif part.text:
            blocks.append(_text_block(part))
    for call in message.tool_calls or []:
        blocks.append(
            {
                "type": "tool_use",
                "id": call.id,
                "name": call.name,
                "input": json_arguments(call.arguments),
            }
        )
    return blocks


def _text_block(part: TextPart) -> dict[str, Any]:
    block: dict[str, Any] = {"type": "text", "text": part.text}
    if part.cache_control is not None:
        block["cache_control"] = _cache_control(part.cache_control)
    return block


def _cache_control(marker: CacheControl) -> dict[str, str]:
    return {"type": marker.type, "ttl": marker.ttl} if marker.ttl else {"type": marker.type}


def _system(request: ChatRequest) -> str | list[dict[str, Any]] | None:
    """The system prompt: text, or text blocks when a part of it marks a cache breakpoint."""
    parts: list[TextPart] = [TextPart(text=request.system)] if request.system else []
    for message in request.messages:
        if message.role == "system":
            content = message.content
            if isinstance(content, str):
                parts.append(TextPart(text=content))
            else:
                parts.extend(p for p in content if isinstance(p, TextPart))
    if not any(p.cache_control for p in parts):
        return request.system_text()
    return [_text_block(p) for p in parts if p.text]


def _tool(tool: ToolSpec) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "name": tool.name,
        "description": tool.description,
        "input_schema": tool.parameters,
    }
    if tool.cache_control is not None:
        spec["cache_control"] = _cache_control(tool.cache_control)
    return spec


def _usage(raw: dict[str, Any]) -> Usage:
    """Anthropic's ``input_tokens`` leaves out cache reads and writes; ours counts them."""
    cached = raw.get("cache_read_input_tokens") or 0
    created = raw.get("cache_creation_input_tokens") or 0
    return Usage(
        input_tokens=(raw.get("input_tokens") or 0) + cached + created,
        output_tokens=raw.get("output_tokens") or 0,
        cached_input_tokens=cached,
        cache_write_input_tokens=created,
    )


def _seconds_until(value: str | None, now: float) -> float | None:
    """Seconds from ``now`` (epoch seconds) until an RFC 3339 moment."""
    if not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, moment.timestamp() - now)


def classify(status: int, err: dict[str, Any]) -> ProviderError:
    """Anthropic's ``{"type": "error", "error": {...}}`` as a taxonomy error."""
    kind = str(err.get("type") or "")
    message = body_message(err) or f"an error with no message (type {kind or 'unknown'})"
    if kind == "invalid_request_error":
        if match := _TOO_LONG.search(message):
            return ContextWindowExceeded(
                message, required_tokens=int(match.group(1)), max_tokens=int(match.group(2))
            )
        if match := _EXCEEDS.search(message):
            return ContextWindowExceeded(
                message,
                required_tokens=int(match.group(1)) + int(match.group(2)),
                max_tokens=int(match.group(3)),
            )
        if "credit balance" in message.lower():
            return QuotaExhausted(message)
        if "content filtering" in message.lower():
            return ContentFiltered(message)
    return _ERRORS.get(kind, error_for_status(status))(message)


class AnthropicProvider(HttpProvider):
    """``POST {base_url}/v1/messages``."""

    name: ClassVar[str] = "anthropic"
    DEFAULT_BASE_URL: ClassVar[str | None] = "https://api.anthropic.com"
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ("ANTHROPIC_API_KEY",)
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ("ANTHROPIC_BASE_URL",)
    SUPPORTS_JSON_OBJECT: ClassVar[bool] = False  # structured output takes a schema only

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-api-key": api_key}

    def headers(self) -> dict[str, str]:
        return {"anthropic-version": API_VERSION, **super().headers()}

    def encode(self, request: ChatRequest) -> WireRequest:
        body: dict[str, Any] = {
            "model": self.deployment.model,
            "max_tokens": request.max_tokens or DEFAULT_MAX_TOKENS,
            "messages": [
                {"role": "user" if m.role == "tool" else m.role, "content": _blocks(m)}
                for m in request.chat_messages()
            ],
        }
        if (system := _system(request)) is not None:
            body["system"] = system
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.top_p is not None:
            body["top_p"] = request.top_p
        if request.stop:
            body["stop_sequences"] = request.stop
        if request.user:
            body["metadata"] = {"user_id": request.user}
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
        if (choice := request.tool_choice) is not None:
            body["tool_choice"] = (
                {"type": {"required": "any"}.get(choice, choice)}
                if choice in ("auto", "none", "required")
                else {"type": "tool", "name": choice}
            )
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_schema":
            body["output_config"] = {
                "format": {"type": "json_schema", "schema": fmt.json_schema or {}}
            }
        if request.stream:
            body["stream"] = True
        return WireRequest(
            url=f"{self.base_url}/v1/messages", headers=self.headers(), body=_encode(body)
        )

    def decode(self, body: Any) -> ChatResponse:
        content = body.get("content") if isinstance(body, dict) else None
        if not isinstance(content, list):
            raise self.origin.error(MalformedResponse, "response has no content blocks")
        text = "".join(b.get("text", "") for b in content if b.get("type") == "text")
        calls = [
            ToolCall(id=b["id"], name=b["name"], arguments=_encode(b.get("input", {})).decode())
            for b in content
            if b.get("type") == "tool_use"
        ]
        return ChatResponse(
            content=text,
            tool_calls=calls,
            finish_reason=_FINISH.get(body.get("stop_reason") or "end_turn", "stop"),
            usage=_usage(body.get("usage") or {}),
            model=body.get("model", ""),
            id=body.get("id", ""),
        )

    def error(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        payload = error_payload(body)
        err = payload.get("error") if isinstance(payload, dict) else None
        return classify(status, err) if isinstance(err, dict) else plain_error(status, body)

    def rate_limits(self, headers: Headers) -> RateLimitInfo:
        def field(bucket: str, what: str) -> str | None:
            return headers.get(f"anthropic-ratelimit-{bucket}-{what}")

        now = self.clock()

        return RateLimitInfo(
            requests_limit=to_int(field("requests", "limit")),
            requests_remaining=to_int(field("requests", "remaining")),
            requests_reset_s=_seconds_until(field("requests", "reset"), now),
            tokens_limit=to_int(field("tokens", "limit")),
            tokens_remaining=to_int(field("tokens", "remaining")),
            tokens_reset_s=_seconds_until(field("tokens", "reset"), now),
            input_tokens_limit=to_int(field("input-tokens", "limit")),
            input_tokens_remaining=to_int(field("input-tokens", "remaining")),
            output_tokens_limit=to_int(field("output-tokens", "limit")),
            output_tokens_remaining=to_int(field("output-tokens", "remaining")),
            retry_after_s=parse_retry_after(headers, now=lambda: now),
        )

    def stream_decoder(self) -> AnthropicStreamDecoder:
        return AnthropicStreamDecoder(self.origin)


class AnthropicStreamDecoder:
    """Content blocks by index; tool-use blocks are numbered among themselves."""

    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._tools: dict[int, int] = {}
        self._input = Usage()
        self._output = 0
        self._finish: FinishReason = "stop"
        self._stopped = False

    def feed(self, frame: SseEvent) -> Iterable[StreamEvent]:
        data = loads(frame.data, self._origin)
        kind = data.get("type") if isinstance(data, dict) else None
        if kind == "error" or frame.event == "error":
            err = data.get("error") if isinstance(data, dict) else None
            detail = classify(500, err).message if isinstance(err, dict) else frame_text(frame.data)
            raise interrupted(self._origin, f"error inside the stream: {detail}")
        if kind == "message_start":
            message = data.get("message") or {}
            self._input = _usage(message.get("usage") or {})
            return [StreamStart(id=message.get("id", ""), model=message.get("model", ""))]
        if kind == "content_block_start":
            block = data.get("content_block") or {}
            if block.get("type") == "tool_use":
                index = self._tools[data.get("index", 0)] = len(self._tools)
                return [ToolCallDelta(index=index, id=block.get("id"), name=block.get("name"))]
            if text := block.get("text"):
                return [TextDelta(text)]
            return []
        if kind == "content_block_delta":
            delta = data.get("delta") or {}
            if delta.get("type") == "text_delta":
                return [TextDelta(delta.get("text", ""))]
            if delta.get("type") == "input_json_delta":
                index = self._tools.get(data.get("index", 0), 0)
                return [ToolCallDelta(index=index, arguments=delta.get("partial_json", ""))]
            return []
        if kind == "message_delta":
            reason = (data.get("delta") or {}).get("stop_reason")
            self._finish = _FINISH.get(reason or "end_turn", "stop")
            self._output = (data.get("usage") or {}).get("output_tokens", self._output)
        elif kind == "message_stop":
            self._stopped = True
        return []

    def close(self) -> StreamEnd:
        if not self._stopped:
            raise interrupted(self._origin, "stream ended before message_stop")
        usage = msgspec.structs.replace(self._input, output_tokens=self._output)
        return StreamEnd(finish_reason=self._finish, usage=usage)
