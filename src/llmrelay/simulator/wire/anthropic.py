"""Anthropic Messages (``POST /v1/messages``) as api.anthropic.com serves it.

Prompt caching: ``cache_control`` on tools, system blocks and message content blocks
(and the top-level ``cache_control`` of automatic caching, on the last block) marks the
breakpoints of :mod:`llmrelay.simulator.caching`; more than 4 is Anthropic's 400. The
prompt is split into blocks in Anthropic's cache order: tools, system, messages.

``ttl: "1h"`` is refused with a 400: a 1-hour write costs 2x input where a 5-minute one
costs 1.25x, and llmrelay's usage carries a single count of written tokens, so no single
price could bill both exactly. Only the default 5-minute TTL (``"5m"``) is served.
"""

from __future__ import annotations

import dataclasses
import math
from datetime import UTC, datetime
from typing import Any, ClassVar

import msgspec

from llmrelay.simulator.caching import MAX_BREAKPOINTS
from llmrelay.simulator.config import Api, ModelSpec
from llmrelay.simulator.engine import Reply, Segment, SimMessage, SimRequest, SimTool
from llmrelay.simulator.state import Gauge, Refusal, Window
from llmrelay.simulator.wire.base import (
    BadInput,
    ErrorContext,
    ErrorKind,
    Headers,
    HttpError,
    require,
    text_of,
)

_json = msgspec.json.Encoder()
_STOP_REASONS = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}


def _error(type_: str, message: str) -> Any:
    return {"type": "error", "error": {"type": type_, "message": message}}


def _reset_at(wall: float, seconds: float) -> str:
    """The RFC 3339 instant ``seconds`` after ``wall`` (epoch seconds), rounded up."""
    moment = datetime.fromtimestamp(math.ceil(wall + seconds), UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


_LIMIT_UNITS = {
    "requests": "requests per minute",
    "tokens": "tokens per minute",
    "input_tokens": "input tokens per minute",
    "output_tokens": "output tokens per minute",
    "requests_per_day": "requests per day",
}


def _limit_message(refusal: Refusal | None) -> str:
    limit = f" of {refusal.limit:,} {_LIMIT_UNITS[refusal.kind]}" if refusal else ""
    return (
        f"This request would exceed the rate limit for your organization (org-simulator){limit}. "
        "For details, refer to: https://docs.claude.com/en/api/rate-limits. You can see the "
        "response headers for current usage. Please reduce the prompt length or the maximum "
        "tokens requested, or try again later."
    )


def _total_tokens(window: Window) -> Gauge | None:
    """What ``anthropic-ratelimit-tokens-*`` report: a combined limit when one is set,
    else input and output together (Anthropic: "the total tokens remaining, where total is
    the sum of input and output tokens", when no stricter workspace limit applies)."""
    combined = window.get("tokens")
    if combined is not None:
        return combined
    parts = [g for g in (window.get("input_tokens"), window.get("output_tokens")) if g]
    if not parts:
        return None
    return Gauge(
        limit=sum(g.limit for g in parts),
        remaining=sum(g.remaining for g in parts),
        reset_s=max(g.reset_s for g in parts),
    )


def _message(index: int, raw: Any, names: dict[str, str]) -> list[SimMessage]:
    role = require(raw, "role", str, f"messages.{index}.")
    if role not in ("user", "assistant"):
        raise BadInput(f"messages.{index}.role: Input should be 'user' or 'assistant'")
    content = raw.get("content")
    if isinstance(content, str):
        return [SimMessage(role=role, text=content)]
    if not isinstance(content, list):
        raise BadInput(f"messages.{index}.content: Input should be a valid list")
    out: list[SimMessage] = []
    texts: list[str] = []
    for block in content:
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "tool_use":
            names[block.get("id", "")] = block.get("name", "")
            texts.append(block.get("name", "") + _json.encode(block.get("input", {})).decode())
        elif kind == "tool_result":
            name = names.get(block.get("tool_use_id", ""))
            out.append(SimMessage(role="tool", text=text_of(block.get("content")), tool_name=name))
        elif kind not in ("image", "document", "thinking"):
            raise BadInput(f"messages.{index}.content: unknown block type {kind!r}")
    if texts or not out:
        out.insert(0, SimMessage(role=role, text="".join(texts)))
    return out


def _breakpoint(block: Any, where: str) -> bool:
    """Whether ``block`` carries ``cache_control``; a 400 for a kind or TTL not served."""
    if not isinstance(block, dict) or block.get("cache_control") is None:
        return False
    control, at = block["cache_control"], f"{where}.cache_control" if where else "cache_control"
    if not isinstance(control, dict) or control.get("type") != "ephemeral":
        raise BadInput(f"{at}.type: Input should be 'ephemeral'")
    ttl = control.get("ttl", "5m")
    if ttl == "1h":
        raise BadInput(
            f"{at}.ttl: the simulator serves only the 5-minute TTL ('5m'); '1h' writes are "
            "billed at another price than 5-minute ones and llmrelay's usage cannot tell "
            "them apart"
        )
    if ttl != "5m":
        raise BadInput(f"{at}.ttl: Input should be '5m' or '1h'")
    return True


def _ident(block: dict[str, Any]) -> str:
    """What a cache compares of a block: all of it but its ``cache_control``."""
    return _json.encode({k: v for k, v in block.items() if k != "cache_control"}).decode()


def _block_text(block: dict[str, Any]) -> str:
    kind = block.get("type")
    if kind == "text":
        return str(block.get("text", ""))
    if kind == "tool_use":
        return str(block.get("name", "")) + _json.encode(block.get("input", {})).decode()
    if kind == "tool_result":
        return text_of(block.get("content"))
    return ""


def _segments(body: dict[str, Any]) -> list[Segment]:
    """The prompt block by block in Anthropic's cache order, with its breakpoints."""
    out: list[Segment] = []
    for i, tool in enumerate(body.get("tools") or []):
        marked = _breakpoint(tool, f"tools.{i}")
        out.append(Segment(_ident(tool), breakpoint=marked))
    system = body.get("system")
    if isinstance(system, str) and system:
        out.append(Segment(system, role="system"))
    elif isinstance(system, list):
        for i, block in enumerate(system):
            marked = _breakpoint(block, f"system.{i}")
            out.append(Segment(text_of([block]), role="system", breakpoint=marked))
    for i, message in enumerate(body["messages"]):
        role, content = message.get("role", ""), message.get("content")
        if isinstance(content, str):
            out.append(Segment(content, role=role, framing=3))
            continue
        for j, block in enumerate(content):
            marked = _breakpoint(block, f"messages.{i}.content.{j}")
            text = _block_text(block)
            ident = None if block.get("type") == "text" else _ident(block)
            first = j == 0
            out.append(
                Segment(text, role=role, framing=3 if first else 0, breakpoint=marked, ident=ident)
            )
    marks = sum(s.breakpoint for s in out)
    if _breakpoint(body, "") and out:  # automatic caching: the last block
        marks += 1
        out[-1] = dataclasses.replace(out[-1], breakpoint=True)
    if marks > MAX_BREAKPOINTS:
        raise BadInput(
            f"A maximum of {MAX_BREAKPOINTS} blocks with cache_control may be provided. "
            f"Found {marks}."
        )
    return out


class AnthropicWire:
    api: ClassVar[Api] = "anthropic"
    serves: ClassVar[frozenset[Api]] = frozenset({"anthropic"})
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def api_key(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        bearer = token.strip() if scheme.lower() == "bearer" else ""
        return headers.get("x-api-key") or bearer or None

    def missing_key(self) -> str | None:
        return None

    def parse(self, body: Any, path: dict[str, str], query: dict[str, str]) -> SimRequest:
        model = require(body, "model", str)
        max_tokens = require(body, "max_tokens", int)
        if max_tokens < 1:
            raise BadInput("max_tokens: Input should be greater than or equal to 1")
        raw_messages = require(body, "messages", list)
        if not raw_messages:
            raise BadInput("messages: at least one message is required")
        names: dict[str, str] = {}
        messages = [m for i, raw in enumerate(raw_messages) for m in _message(i, raw, names)]
        system = text_of(body.get("system"))
        tools = [
            SimTool(name=t["name"], schema=t.get("input_schema") or {})
            for t in body.get("tools") or []
        ]
        choice = body.get("tool_choice") or {"type": "auto"}
        choice_name = {"auto": "auto", "any": "required", "none": "none"}.get(
            choice.get("type", "auto"), choice.get("name", "auto")
        )
        fmt = (body.get("output_config") or {}).get("format") or body.get("output_format") or {}
        extra = system + (_json.encode(body["tools"]).decode() if body.get("tools") else "")
        return SimRequest(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            tools=tools,
            tool_choice=choice_name,
            json_schema=fmt.get("schema") if fmt.get("type") == "json_schema" else None,
            stop=list(body.get("stop_sequences") or []),
            extra_text=extra,
            segments=_segments(body),
        )

    def error(self, kind: ErrorKind, ctx: ErrorContext) -> HttpError:
        if kind is ErrorKind.AUTH_MISSING:
            return HttpError(401, _error("authentication_error", "x-api-key header is required"))
        if kind is ErrorKind.AUTH_INVALID:
            return HttpError(401, _error("authentication_error", "invalid x-api-key"))
        if kind is ErrorKind.NOT_FOUND:
            return HttpError(404, _error("not_found_error", f"model: {ctx.model}"))
        if kind is ErrorKind.BAD_REQUEST:
            return HttpError(400, _error("invalid_request_error", ctx.message))
        if kind is ErrorKind.CONTEXT:
            if ctx.input_tokens > ctx.limit:
                message = f"prompt is too long: {ctx.input_tokens} tokens > {ctx.limit} maximum"
            else:
                message = (
                    f"input length and `max_tokens` exceed context limit: {ctx.input_tokens} + "
                    f"{ctx.max_tokens} > {ctx.limit}, decrease input length or `max_tokens` "
                    "and try again"
                )
            return HttpError(400, _error("invalid_request_error", message))
        if kind is ErrorKind.MAX_TOKENS:
            return HttpError(
                400,
                _error(
                    "invalid_request_error",
                    f"max_tokens: {ctx.max_tokens} > {ctx.limit}, which is the maximum allowed "
                    f"number of output tokens for {ctx.model}",
                ),
            )
        if kind is ErrorKind.RATE_LIMIT:
            wait = ctx.refusal.retry_after_s if ctx.refusal else 1.0
            headers = [("retry-after", str(max(1, math.ceil(wait))))]
            body = _error("rate_limit_error", _limit_message(ctx.refusal))
            return HttpError(429, body, headers)
        if kind is ErrorKind.OVERLOADED:
            return HttpError(529, _error("overloaded_error", "Overloaded"))
        if kind is ErrorKind.UNAVAILABLE:
            return HttpError(503, _error("api_error", "Service unavailable"))
        return HttpError(500, _error("api_error", "Internal server error"))

    def limit_headers(self, window: Window) -> Headers:
        """``anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-*``; resets are
        RFC 3339 instants when the bucket is full again."""
        gauges = {
            "requests": window.get("requests"),
            "tokens": _total_tokens(window),
            "input-tokens": window.get("input_tokens"),
            "output-tokens": window.get("output_tokens"),
        }
        headers: list[tuple[str, str]] = []
        for prefix, gauge in gauges.items():
            if gauge is not None:
                headers += [
                    (f"anthropic-ratelimit-{prefix}-limit", str(gauge.limit)),
                    (f"anthropic-ratelimit-{prefix}-remaining", str(gauge.remaining)),
                    (f"anthropic-ratelimit-{prefix}-reset", _reset_at(window.wall, gauge.reset_s)),
                ]
        return headers

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        """Anthropic's usage: ``input_tokens`` are the prompt tokens neither read from nor
        written to the cache; the three add up to the whole prompt."""
        return {
            "input_tokens": reply.uncached_tokens,
            "cache_creation_input_tokens": reply.cache_write_tokens,
            "cache_read_input_tokens": reply.cached_tokens,
            "cache_creation": {
                "ephemeral_5m_input_tokens": reply.cache_write_tokens,
                "ephemeral_1h_input_tokens": 0,
            },
            "output_tokens": output_tokens,
            "service_tier": "standard",
        }

    @staticmethod
    def _blocks(reply: Reply) -> list[dict[str, Any]]:
        blocks: list[dict[str, Any]] = [{"type": "text", "text": reply.text}] if reply.text else []
        blocks += [
            {
                "type": "tool_use",
                "id": c.id.replace("call_", "toolu_"),
                "name": c.name,
                "input": c.arguments,
            }
            for c in reply.tool_calls
        ]
        return blocks

    def render(self, request: SimRequest, reply: Reply, response_id: str) -> Any:
        return {
            "id": response_id,
            "type": "message",
            "role": "assistant",
            "model": request.model,
            "content": self._blocks(reply) or [{"type": "text", "text": ""}],
            "stop_reason": _STOP_REASONS[reply.finish_reason],
            "stop_sequence": None,
            "usage": self._usage(reply, reply.output_tokens),
        }

    def stream(self, request: SimRequest, reply: Reply, response_id: str) -> _AnthropicStream:
        return _AnthropicStream(self, request, reply, response_id)

    def models(self, specs: list[ModelSpec]) -> Any:
        data = [
            {
                "type": "model",
                "id": s.name,
                "display_name": s.name,
                "created_at": "2025-01-01T00:00:00Z",
            }
            for s in specs
            if s.api == "anthropic"
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }


def _event(name: str, data: Any) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _json.encode(data) + b"\n\n"


class _AnthropicStream:
    def __init__(self, wire: AnthropicWire, request: SimRequest, reply: Reply, rid: str) -> None:
        self._wire, self._request, self._reply, self._id = wire, request, reply, rid
        self._text_open = False

    def opening(self) -> bytes:
        message: dict[str, Any] = {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._request.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": AnthropicWire._usage(self._reply, 1),
        }
        return _event("message_start", {"type": "message_start", "message": message}) + _event(
            "ping", {"type": "ping"}
        )

    def text(self, piece: str) -> bytes:
        out = b""
        if not self._text_open:
            self._text_open = True
            out = _event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
        return out + _event(
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )

    def closing(self) -> bytes:
        out = b""
        index = 0
        if self._text_open:
            out += _event("content_block_stop", {"type": "content_block_stop", "index": 0})
            index = 1
        for block in AnthropicWire._blocks(self._reply):
            if block["type"] != "tool_use":
                continue
            start = {**block, "input": {}}
            out += _event(
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            out += _event(
                "content_block_delta",
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {
                        "type": "input_json_delta",
                        "partial_json": _json.encode(block["input"]).decode(),
                    },
                },
            )
            out += _event("content_block_stop", {"type": "content_block_stop", "index": index})
            index += 1
        out += _event(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {
                    "stop_reason": _STOP_REASONS[self._reply.finish_reason],
                    "stop_sequence": None,
                },
                "usage": {
                    "input_tokens": self._reply.uncached_tokens,
                    "cache_creation_input_tokens": self._reply.cache_write_tokens,
                    "cache_read_input_tokens": self._reply.cached_tokens,
                    "output_tokens": self._reply.output_tokens,
                },
            },
        )
        return out + _event("message_stop", {"type": "message_stop"})

    def error(self) -> bytes:
        return _event("error", _error("overloaded_error", "Overloaded"))
