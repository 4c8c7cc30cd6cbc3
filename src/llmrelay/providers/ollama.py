"""Ollama's native chat API: ``POST /api/chat`` with an NDJSON stream."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar
from urllib.parse import urlsplit

import msgspec

from llmrelay.errors import (
    ContextWindowExceeded,
    MalformedResponse,
    NotFound,
    Overloaded,
    ProviderError,
)
from llmrelay.providers.base import Framing, HttpProvider, SseEvent, interrupted, load_chunk
from llmrelay.providers.http import Headers, Origin, WireRequest
from llmrelay.providers.parts import data_url, json_arguments
from llmrelay.providers.windows import ollama_show_window
from llmrelay.providers.wire import body_message, error_for_status, error_payload, plain_error
from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    FinishReason,
    ImagePart,
    Message,
    StreamEnd,
    StreamEvent,
    StreamStart,
    TextDelta,
    ToolCall,
    ToolCallDelta,
    Usage,
)

_encode = msgspec.json.Encoder().encode
_CONTEXT_FIGURES = re.compile(r"\((\d+) > (\d+)\)")
DEFAULT_PORT = 11434


def ollama_host_url(value: str) -> str:
    """``OLLAMA_HOST`` read the way Ollama's own clients read it.

    The variable is often just ``host:port`` or a bare host (``0.0.0.0``), so a missing
    scheme means ``http`` and, then, a missing port means 11434; anything else is kept
    for validation to judge.
    """
    value = value.strip()
    if "://" in value:
        return value
    split = urlsplit(f"http://{value}")
    try:
        port = split.port
    except ValueError:
        return f"http://{value}"
    host = split.netloc if split.hostname else f"127.0.0.1{split.netloc}"
    return f"http://{host}{'' if port else f':{DEFAULT_PORT}'}{split.path}"


def _message(message: Message) -> dict[str, Any]:
    out: dict[str, Any] = {"role": message.role, "content": message.text}
    if not isinstance(message.content, str):
        images = [
            d[1] for p in message.content if isinstance(p, ImagePart) and (d := data_url(p.url))
        ]
        if images:
            out["images"] = images
    if message.tool_calls:
        out["tool_calls"] = [
            {"function": {"name": c.name, "arguments": json_arguments(c.arguments)}}
            for c in message.tool_calls
        ]
    if message.role == "tool" and message.name:
        out["tool_name"] = message.name
    return out


def _calls(message: dict[str, Any], first: int = 0) -> list[ToolCall]:
    return [
        ToolCall(
            id=c.get("id") or f"call_{first + i}",
            name=c["function"]["name"],
            arguments=_encode(c["function"].get("arguments") or {}).decode(),
        )
        for i, c in enumerate(message.get("tool_calls") or [])
    ]


def _usage(body: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=body.get("prompt_eval_count") or 0, output_tokens=body.get("eval_count") or 0
    )


def classify(status: int, message: str) -> ProviderError:
    """Ollama's ``{"error": "..."}`` as a taxonomy error."""
    lowered = message.lower()
    if "context length" in lowered:
        figures = _CONTEXT_FIGURES.search(message)
        return ContextWindowExceeded(
            message,
            required_tokens=int(figures.group(1)) if figures else None,
            max_tokens=int(figures.group(2)) if figures else None,
        )
    if status == 404 or "not found" in lowered:
        return NotFound(message)
    if "server busy" in lowered:
        return Overloaded(message)
    return error_for_status(status)(message)


class OllamaProvider(HttpProvider):
    """A local (or proxied) Ollama server; sends a bearer key only when one is configured."""

    name: ClassVar[str] = "ollama"
    FRAMING: ClassVar[Framing] = "ndjson"
    DEFAULT_BASE_URL: ClassVar[str | None] = "http://localhost:11434"
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ()
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ("OLLAMA_BASE_URL", "OLLAMA_HOST")
    SUPPORTS_FORCED_TOOL_CHOICE: ClassVar[bool] = False  # /api/chat has no tool_choice
    SUPPORTS_IMAGE_URLS: ClassVar[bool] = False  # /api/chat takes base64 images only

    @classmethod
    def base_url_from_env(cls) -> tuple[str, str] | None:
        found = super().base_url_from_env()
        if found is not None and found[1] == "OLLAMA_HOST":
            return ollama_host_url(found[0]), found[1]
        return found

    async def ask_context_window(self) -> int | None:
        """The window ``POST /api/show`` reports for the model.

        Ollama's effective window is ``num_ctx``: it silently truncates a longer prompt
        to it. ``num_ctx`` is reported only when the model's Modelfile sets it; otherwise
        this is the model's trained length, and the server runs with its default
        (``OLLAMA_CONTEXT_LENGTH``) instead. If you run Ollama with a small default
        ``num_ctx``, set ``context_window`` on the deployment explicitly.
        """
        body = {"model": self.deployment.model}
        return ollama_show_window(await self.fetch_json(f"{self.base_url}/api/show", body=body))

    def encode(self, request: ChatRequest) -> WireRequest:
        messages = [_message(m) for m in request.chat_messages()]
        if (system := request.system_text()) is not None:
            messages.insert(0, {"role": "system", "content": system})
        body: dict[str, Any] = {
            "model": self.deployment.model,
            "messages": messages,
            "stream": request.stream,
        }
        options: dict[str, Any] = {}
        for key, field in (
            ("temperature", "temperature"),
            ("top_p", "top_p"),
            ("max_tokens", "num_predict"),
            ("stop", "stop"),
        ):
            if (value := getattr(request, key)) is not None:
                options[field] = value
        if options:
            body["options"] = options
        if request.tools and request.tool_choice != "none":
            body["tools"] = [
                {
                    "type": "function",
                    "function": {
                        "name": t.name,
                        "description": t.description,
                        "parameters": t.parameters,
                    },
                }
                for t in request.tools
            ]
        fmt = request.response_format
        if fmt is not None and fmt.type == "json_object":
            body["format"] = "json"
        elif fmt is not None and fmt.type == "json_schema":
            body["format"] = fmt.json_schema or {"type": "object"}
        return WireRequest(
            url=f"{self.base_url}/api/chat", headers=self.headers(), body=_encode(body)
        )

    def decode(self, body: Any) -> ChatResponse:
        message = body.get("message") if isinstance(body, dict) else None
        if not isinstance(message, dict):
            raise self.origin.error(MalformedResponse, "response has no message")
        calls = _calls(message)
        finish: FinishReason = "length" if body.get("done_reason") == "length" else "stop"
        return ChatResponse(
            content=message.get("content") or "",
            tool_calls=calls,
            finish_reason="tool_calls" if calls else finish,
            usage=_usage(body),
            model=body.get("model", ""),
        )

    def error(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        payload = error_payload(body)
        error = payload.get("error") if isinstance(payload, dict) else None
        if not isinstance(error, str):
            return plain_error(status, body)
        return classify(status, error)

    def stream_decoder(self) -> OllamaStreamDecoder:
        return OllamaStreamDecoder(self.origin)


class OllamaStreamDecoder:
    """One JSON object per line; the line with ``"done": true`` carries usage."""

    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._end: StreamEnd | None = None
        self._calls = 0
        self._started = False

    def feed(self, frame: SseEvent) -> Iterable[StreamEvent]:
        chunk = load_chunk(frame, self._origin)
        if "error" in chunk:
            detail = body_message(chunk) or "an error with no message"
            raise interrupted(self._origin, f"error inside the stream: {detail}")
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(model=chunk.get("model", "")))
        message = chunk.get("message") or {}
        if content := message.get("content"):
            events.append(TextDelta(content))
        for call in _calls(message, self._calls):
            events.append(
                ToolCallDelta(
                    index=self._calls, id=call.id, name=call.name, arguments=call.arguments
                )
            )
            self._calls += 1
        if chunk.get("done"):
            reason: FinishReason = "length" if chunk.get("done_reason") == "length" else "stop"
            self._end = StreamEnd(
                finish_reason="tool_calls" if self._calls else reason, usage=_usage(chunk)
            )
        return events

    def close(self) -> StreamEnd:
        if self._end is None:
            raise interrupted(self._origin, "stream ended before its done line")
        return self._end
