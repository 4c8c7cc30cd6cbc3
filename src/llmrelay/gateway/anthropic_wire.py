"""Anthropic's Messages API, as the gateway serves it: body → request, answer → body.

Pure converters (no I/O). ``cache_control`` on system blocks, message blocks and tools is
kept on the request, so a deployment that caches prompts (Anthropic) gets the same
breakpoints. ``tool_result`` blocks become ``tool`` messages and ``tool_use`` blocks the
assistant's tool calls, as the router's request carries them; usage is answered the way
Anthropic counts it (``input_tokens`` without the tokens read from or written to the cache).
"""

from __future__ import annotations

import secrets
from typing import Any, Literal

import msgspec

from llmrelay.errors import BadRequest
from llmrelay.gateway.wire import ApiError, Kind, decode_body
from llmrelay.inputs import checked
from llmrelay.types import (
    CacheControl,
    ChatRequest,
    ChatResponse,
    ContentPart,
    ImagePart,
    Message,
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
_decode_input = msgspec.json.Decoder(dict[str, Any])


class _Block(
    msgspec.Struct, frozen=True, kw_only=True, tag_field="type", forbid_unknown_fields=True
):
    cache_control: CacheControl | None = None


class TextBlock(_Block, tag="text", frozen=True):
    text: str
    citations: Any = None


class ImageSource(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["base64", "url"]
    media_type: str | None = None
    data: str | None = None
    url: str | None = None


class ImageBlock(_Block, tag="image", frozen=True):
    source: ImageSource


class ToolUseBlock(_Block, tag="tool_use", frozen=True):
    id: str
    name: str
    input: dict[str, Any]


class ToolResultBlock(_Block, tag="tool_result", frozen=True):
    tool_use_id: str
    content: str | list[TextBlock | ImageBlock] = ""
    is_error: bool = False


Block = TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock


class InMessage(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    role: Literal["user", "assistant"]
    content: str | list[Block]


class Tool(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str
    input_schema: dict[str, Any]
    description: str = ""
    cache_control: CacheControl | None = None
    type: Literal["custom"] | None = None


class ToolChoice(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    type: Literal["auto", "any", "tool", "none"]
    name: str | None = None
    disable_parallel_tool_use: bool | None = None


class Metadata(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    user_id: str | None = None


class MessagesBody(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """``POST /v1/messages``; ``model`` names a model group."""

    model: str
    max_tokens: int
    messages: list[InMessage]
    system: str | list[TextBlock] | None = None
    stop_sequences: list[str] | None = None
    temperature: float | None = None
    top_p: float | None = None
    top_k: int | None = None
    """Accepted and not forwarded: no other provider has it."""
    stream: bool = False
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    service_tier: str | None = None


_decoder = msgspec.json.Decoder(MessagesBody)
_STOP = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use",
         "content_filter": "refusal", "error": "end_turn"}  # fmt: skip


def parse_messages(body: bytes) -> tuple[MessagesBody, ChatRequest]:
    """The decoded body and the checked request it asks for; :class:`BadRequest` naming
    the field for anything wrong."""
    parsed = decode_body(_decoder, body)
    if not parsed.messages:
        raise BadRequest("messages: at least one message is required")
    if parsed.max_tokens < 1:
        raise BadRequest(f"max_tokens: expected an integer >= 1, got {parsed.max_tokens}")
    messages = _system(parsed.system)
    for index, message in enumerate(parsed.messages):
        messages.extend(_messages(message, f"messages.{index}"))
    request = ChatRequest(
        messages=messages,
        max_tokens=parsed.max_tokens,
        temperature=parsed.temperature,
        top_p=parsed.top_p,
        stop=parsed.stop_sequences,
        tools=[_tool(t) for t in parsed.tools] if parsed.tools else None,
        tool_choice=_tool_choice(parsed.tool_choice, parsed.tools or []),
        user=parsed.metadata.user_id if parsed.metadata else None,
        stream=parsed.stream,
    )
    return parsed, checked(request)


def _system(system: str | list[TextBlock] | None) -> list[Message]:
    if not system:
        return []
    if isinstance(system, str):
        return [Message(role="system", content=system)]
    return [Message(role="system", content=[_text(b) for b in system])]


def _text(block: TextBlock) -> TextPart:
    return TextPart(text=block.text, cache_control=block.cache_control)


def _image(block: ImageBlock, where: str) -> ImagePart:
    source = block.source
    if source.type == "url" and source.url:
        return ImagePart(url=source.url)
    if source.type == "base64" and source.data and source.media_type:
        return ImagePart(url=f"data:{source.media_type};base64,{source.data}")
    raise BadRequest(f"{where}.source: a url, or media_type and data, are required")


def _messages(message: InMessage, where: str) -> list[Message]:
    if isinstance(message.content, str):
        return [Message(role=message.role, content=message.content)]
    parts: list[ContentPart] = []
    calls: list[ToolCall] = []
    results: list[Message] = []
    for index, block in enumerate(message.content):
        at = f"{where}.content.{index}"
        if isinstance(block, TextBlock):
            parts.append(_text(block))
        elif isinstance(block, ImageBlock):
            parts.append(_image(block, at))
        elif isinstance(block, ToolUseBlock):
            if message.role != "assistant":
                raise BadRequest(f"{at}: tool_use blocks belong to assistant messages")
            if not block.id:
                raise BadRequest(f"{at}.id: required")
            calls.append(
                ToolCall(id=block.id, name=block.name, arguments=_encode(block.input).decode())
            )
        else:
            if message.role != "user":
                raise BadRequest(f"{at}: tool_result blocks belong to user messages")
            results.append(_tool_result(block, at))
    out = results
    if calls:
        out.append(Message(role="assistant", content=_plain(parts), tool_calls=calls))
    elif parts:
        out.append(Message(role=message.role, content=_plain(parts)))
    return out


def _plain(parts: list[ContentPart]) -> str | list[ContentPart]:
    """One uncached text part is sent as a plain string."""
    if len(parts) == 1 and isinstance(parts[0], TextPart) and parts[0].cache_control is None:
        return parts[0].text
    return parts


def _tool_result(block: ToolResultBlock, where: str) -> Message:
    if not block.tool_use_id:
        raise BadRequest(f"{where}.tool_use_id: required")
    content = block.content
    if isinstance(content, list):
        if any(isinstance(p, ImageBlock) for p in content):
            raise BadRequest(f"{where}.content: images in tool results are not supported")
        content = "".join(p.text for p in content if isinstance(p, TextBlock))
    text = f"Error: {content}" if block.is_error else content
    return Message(role="tool", content=text, tool_call_id=block.tool_use_id)


def _tool(tool: Tool) -> ToolSpec:
    return ToolSpec(name=tool.name, description=tool.description, parameters=tool.input_schema,
                    cache_control=tool.cache_control)  # fmt: skip


def _tool_choice(choice: ToolChoice | None, tools: list[Tool]) -> str | None:
    """The router's tool choice; refused here, in Anthropic's terms, when it names no tool
    that was given."""
    if choice is None:
        return None
    if choice.type in ("any", "tool") and not tools:
        raise BadRequest(f"tool_choice: type {choice.type!r} needs tools, and none were given")
    if choice.type == "tool":
        if not choice.name:
            raise BadRequest("tool_choice.name: required when tool_choice.type is 'tool'")
        if all(tool.name != choice.name for tool in tools):
            names = ", ".join(tool.name for tool in tools)
            raise BadRequest(f"tool_choice.name: no tool named {choice.name!r} (tools: {names})")
        return choice.name
    return {"auto": "auto", "any": "required", "none": "none"}[choice.type]


def _usage(usage: Usage) -> dict[str, int]:
    return {
        "input_tokens": usage.input_tokens
        - usage.cached_input_tokens
        - usage.cache_write_input_tokens,
        "output_tokens": usage.output_tokens,
        "cache_creation_input_tokens": usage.cache_write_input_tokens,
        "cache_read_input_tokens": usage.cached_input_tokens,
    }


def _message_id(response_id: str) -> str:
    return response_id if response_id.startswith("msg_") else f"msg_{secrets.token_hex(12)}"


def message(response: ChatResponse) -> bytes:
    """A ``message`` object."""
    content: list[dict[str, Any]] = []
    if response.content or not response.tool_calls:
        content.append({"type": "text", "text": response.content})
    for call in response.tool_calls:
        content.append({"type": "tool_use", "id": call.id, "name": call.name,
                        "input": _arguments(call.arguments)})  # fmt: skip
    return _encode(
        {
            "id": _message_id(response.id),
            "type": "message",
            "role": "assistant",
            "model": response.model or response.group,
            "content": content,
            "stop_reason": _STOP.get(response.finish_reason, "end_turn"),
            "stop_sequence": None,
            "usage": _usage(response.usage),
        }
    )


def _arguments(text: str) -> dict[str, Any]:
    """A tool call's JSON arguments as an object; a model's invalid JSON is an upstream
    fault, answered 502, never passed on as a string the caller cannot parse."""
    try:
        return _decode_input.decode(text or "{}")
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ApiError(
            Kind.UPSTREAM, "the model wrote tool arguments that are not a JSON object"
        ) from None


def _event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + _encode({"type": name, **data}) + b"\n\n"


class EventWriter:
    """Turns one answer's stream events into Messages SSE events, opening and closing a
    content block for the text and for each tool call."""

    def __init__(self, group: str) -> None:
        self._model = group
        self._index = -1
        self._open: str | None = None
        self._calls: dict[int, int] = {}

    def _close(self) -> bytes:
        if self._open is None:
            return b""
        self._open = None
        return _event("content_block_stop", {"index": self._index})

    def _start(self, kind: str, block: dict[str, Any]) -> bytes:
        out = self._close()
        self._index += 1
        self._open = kind
        return out + _event("content_block_start", {"index": self._index, "content_block": block})

    def frames(self, event: StreamEvent) -> bytes:
        if isinstance(event, TextDelta):
            out = b"" if self._open == "text" else self._start("text", {"type": "text", "text": ""})
            delta = {"type": "text_delta", "text": event.text}
            return out + _event("content_block_delta", {"index": self._index, "delta": delta})
        if isinstance(event, ToolCallDelta):
            out = b""
            if event.index not in self._calls:
                block = {"type": "tool_use", "id": event.id or f"toolu_{secrets.token_hex(12)}",
                         "name": event.name or "", "input": {}}  # fmt: skip
                out = self._start(f"tool{event.index}", block)
                self._calls[event.index] = self._index
            if not event.arguments:
                return out
            delta = {"type": "input_json_delta", "partial_json": event.arguments}
            index = self._calls[event.index]
            return out + _event("content_block_delta", {"index": index, "delta": delta})
        if isinstance(event, StreamStart):
            self._model = event.model or self._model
            start: dict[str, Any] = {
                "id": _message_id(event.id),
                "type": "message",
                "role": "assistant",
                "content": [],
                "model": self._model,
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": 0, "output_tokens": 0},
            }
            return _event("message_start", {"message": start}) + _event("ping", {})
        usage = _usage(event.usage or Usage())
        stop = {"stop_reason": _STOP.get(event.finish_reason, "end_turn"), "stop_sequence": None}
        return (
            self._close()
            + _event("message_delta", {"delta": stop, "usage": usage})
            + _event("message_stop", {})
        )


ERROR_TYPES: dict[Kind, str] = {
    Kind.INVALID: "invalid_request_error",
    Kind.CONTEXT: "invalid_request_error",
    Kind.AUTHENTICATION: "authentication_error",
    Kind.PERMISSION: "permission_error",
    Kind.NOT_FOUND: "not_found_error",
    Kind.TOO_LARGE: "request_too_large",
    Kind.RATE_LIMIT: "rate_limit_error",
    Kind.BUDGET: "invalid_request_error",
    Kind.UNAVAILABLE: "overloaded_error",
    Kind.TIMEOUT: "timeout_error",
    Kind.UPSTREAM: "api_error",
    Kind.INTERNAL: "api_error",
}


def error_status(error: ApiError) -> int:
    """Anthropic answers an exhausted balance 400, not 429."""
    return 400 if error.kind is Kind.BUDGET else error.status


def error_body(error: ApiError, request_id: str) -> bytes:
    return _encode({"type": "error", "error": {"type": ERROR_TYPES[error.kind],
                    "message": error.message}, "request_id": request_id})  # fmt: skip


def error_event(error: ApiError, request_id: str) -> bytes:
    return b"event: error\ndata: " + error_body(error, request_id) + b"\n\n"


__all__ = ["EventWriter", "MessagesBody", "error_body", "error_event", "error_status", "message",
           "parse_messages"]  # fmt: skip
