"""OpenAI chat completions, and every server that speaks it (vLLM, Ollama ``/v1``, llama.cpp,
LM Studio)."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, ClassVar

import msgspec

from llmrelay.errors import (
    ContentFiltered,
    ContextWindowExceeded,
    MalformedResponse,
    Overloaded,
    ProviderError,
    QuotaExhausted,
)
from llmrelay.providers.base import HttpProvider, SseEvent, interrupted, load_chunk
from llmrelay.providers.http import Headers, Origin, WireRequest
from llmrelay.providers.windows import (
    listed_model,
    llamacpp_props_window,
    llamacpp_trained_window,
    lmstudio_window,
    vllm_window,
)
from llmrelay.providers.wire import (
    body_message,
    error_for_status,
    error_payload,
    parse_retry_after,
    plain_error,
    positive_int,
    to_int,
)
from llmrelay.types import (
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
    ToolCall,
    ToolCallDelta,
    Usage,
)

_encode = msgspec.json.Encoder().encode
_FINISH: dict[str, FinishReason] = {
    "stop": "stop",
    "length": "length",
    "tool_calls": "tool_calls",
    "function_call": "tool_calls",
    "content_filter": "content_filter",
}
_CONTEXT_LIMIT = re.compile(r"maximum context length is (\d+)")
_CONTEXT_ASKED = re.compile(r"(?:resulted in|requested) (\d+) tokens")
_CONTEXT_INPUT = re.compile(r"request has (\d+) input tokens(?: \((\d+) > \d+ - \d+\))?")
_CONTEXT_LLAMACPP = re.compile(
    r"request \((\d+) tokens\) exceeds the available context size \((\d+) tokens\)"
)
_DURATION = re.compile(
    r"(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m(?!s))?(?:(\d+(?:\.\d+)?)s)?(?:(\d+(?:\.\d+)?)ms)?$"
)


def parse_duration(value: str | None) -> float | None:
    """OpenAI's reset durations (``6m0s``, ``1.5s``, ``20ms``) in seconds."""
    if not value:
        return None
    match = _DURATION.match(value.strip())
    if match is None or not any(match.groups()):
        return None
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def _content(message: Message) -> Any:
    if isinstance(message.content, str):
        return message.content
    return [
        {"type": "image_url", "image_url": {"url": part.url}}
        if isinstance(part, ImagePart)
        else {"type": "text", "text": part.text}
        for part in message.content
    ]


def _message(message: Message) -> dict[str, Any]:
    if message.role == "tool":
        return {"role": "tool", "tool_call_id": message.tool_call_id or "", "content": message.text}
    out: dict[str, Any] = {"role": message.role, "content": _content(message)}
    if message.name:
        out["name"] = message.name
    if message.tool_calls:
        out["content"] = message.text or None
        out["tool_calls"] = [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}}
            for c in message.tool_calls
        ]
    return out


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    if not raw:
        return None
    prompt_details = raw.get("prompt_tokens_details") or {}
    completion_details = raw.get("completion_tokens_details") or {}
    return Usage(
        input_tokens=raw.get("prompt_tokens") or 0,
        output_tokens=raw.get("completion_tokens") or 0,
        cached_input_tokens=prompt_details.get("cached_tokens") or 0,
        reasoning_tokens=completion_details.get("reasoning_tokens") or 0,
    )


class OpenAIProvider(HttpProvider):
    """``POST {base_url}/chat/completions`` with bearer auth."""

    name: ClassVar[str] = "openai"
    DEFAULT_BASE_URL: ClassVar[str | None] = "https://api.openai.com/v1"
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ("OPENAI_API_KEY",)
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ("OPENAI_BASE_URL",)
    MAX_TOKENS_FIELD: ClassVar[str] = "max_completion_tokens"

    def encode(self, request: ChatRequest) -> WireRequest:
        messages = [_message(m) for m in request.chat_messages()]
        if (system := request.system_text()) is not None:
            messages.insert(0, {"role": "system", "content": system})
        body: dict[str, Any] = {"model": self.deployment.model, "messages": messages}
        if request.max_tokens is not None:
            body[self.MAX_TOKENS_FIELD] = request.max_tokens
        for key in ("temperature", "top_p", "stop", "user"):
            if (value := getattr(request, key)) is not None:
                body[key] = value
        if request.tools:
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
        if (choice := request.tool_choice) is not None:
            body["tool_choice"] = (
                choice
                if choice in ("auto", "none", "required")
                else {"type": "function", "function": {"name": choice}}
            )
        if (fmt := request.response_format) is not None and fmt.type != "text":
            body["response_format"] = {"type": fmt.type}
            if fmt.type == "json_schema":
                body["response_format"]["json_schema"] = {
                    "name": fmt.name,
                    "schema": fmt.json_schema or {},
                    "strict": fmt.strict,
                }
        if request.stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return WireRequest(
            url=f"{self.base_url}/chat/completions", headers=self.headers(), body=_encode(body)
        )

    def decode(self, body: Any) -> ChatResponse:
        try:
            choice = body["choices"][0]
            message = choice["message"]
        except (KeyError, IndexError, TypeError):
            raise self.origin.error(MalformedResponse, "response has no choices") from None
        calls = [
            ToolCall(
                id=c.get("id") or f"call_{i}",
                name=c["function"]["name"],
                arguments=c["function"].get("arguments") or "{}",
            )
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        finish = _FINISH.get(choice.get("finish_reason") or "stop", "stop")
        return ChatResponse(
            content=message.get("content") or "",
            tool_calls=calls,
            finish_reason="tool_calls" if calls and finish == "stop" else finish,
            usage=_usage(body.get("usage")) or Usage(),
            model=body.get("model", ""),
            id=body.get("id", ""),
        )

    def error(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        payload = error_payload(body)
        if not isinstance(payload, dict):
            return plain_error(status, body)
        if isinstance(err := payload.get("error"), dict):
            return classify(status, err)
        if payload.get("object") == "error":  # vLLM's top-level ErrorResponse
            return classify(status, payload)
        return plain_error(status, body)

    def rate_limits(self, headers: Headers) -> RateLimitInfo:
        return RateLimitInfo(
            requests_limit=to_int(headers.get("x-ratelimit-limit-requests")),
            requests_remaining=to_int(headers.get("x-ratelimit-remaining-requests")),
            requests_reset_s=parse_duration(headers.get("x-ratelimit-reset-requests")),
            tokens_limit=to_int(headers.get("x-ratelimit-limit-tokens")),
            tokens_remaining=to_int(headers.get("x-ratelimit-remaining-tokens")),
            tokens_reset_s=parse_duration(headers.get("x-ratelimit-reset-tokens")),
            retry_after_s=parse_retry_after(headers, now=self.clock),
        )

    def stream_decoder(self) -> OpenAIStreamDecoder:
        return OpenAIStreamDecoder(self.origin)


def context_figures(message: str) -> tuple[int | None, int | None]:
    """``(required_tokens, window)`` stated by an OpenAI, vLLM or llama.cpp context error."""
    if match := _CONTEXT_LLAMACPP.search(message):
        return int(match.group(1)), int(match.group(2))
    limit = _CONTEXT_LIMIT.search(message)
    window = int(limit.group(1)) if limit else None
    if asked := _CONTEXT_ASKED.search(message):
        return int(asked.group(1)), window
    if counted := _CONTEXT_INPUT.search(message):
        return int(counted.group(1)) + int(counted.group(2) or 0), window
    return None, window


def _is_context_error(code: Any, kind: Any, message: str) -> bool:
    return (
        code == "context_length_exceeded"
        or kind == "exceed_context_size_error"
        or "maximum context length" in message
        or "exceeds the available context size" in message
    )


def classify(status: int, err: dict[str, Any]) -> ProviderError:
    """OpenAI's ``{"error": {...}}`` as a taxonomy error (also used for in-stream errors).

    Servers that speak the format add their own fields: llama.cpp's context error carries
    ``n_prompt_tokens`` and ``n_ctx``.
    """
    code = err.get("code") or ""
    kind = err.get("type") or ""
    message = body_message(err) or f"an error with no message (type {kind or code or 'unknown'})"
    if _is_context_error(code, kind, message):
        required, window = context_figures(message)
        return ContextWindowExceeded(
            message,
            required_tokens=positive_int(err.get("n_prompt_tokens")) or required,
            max_tokens=positive_int(err.get("n_ctx")) or window,
        )
    if code == "insufficient_quota" or kind == "insufficient_quota":
        return QuotaExhausted(message)
    if code in ("content_filter", "content_policy_violation"):
        return ContentFiltered(message)
    if status == 503 and "overloaded" in message.lower():
        return Overloaded(message)
    return error_for_status(status)(message)


class OpenAIStreamDecoder:
    """``data: {chunk}`` frames up to ``data: [DONE]``."""

    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._finish: FinishReason | None = None
        self._usage: Usage | None = None
        self._started = False

    def feed(self, frame: SseEvent) -> Iterable[StreamEvent]:
        if frame.data == b"[DONE]":
            return []
        chunk = load_chunk(frame, self._origin)
        if isinstance(err := chunk.get("error"), dict):
            error = classify(500, err)
            raise interrupted(self._origin, f"error inside the stream: {error.message}")
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(StreamStart(id=chunk.get("id", ""), model=chunk.get("model", "")))
        self._usage = _usage(chunk.get("usage")) or self._usage
        for choice in chunk.get("choices") or []:
            delta = choice.get("delta") or {}
            if content := delta.get("content"):
                events.append(TextDelta(content))
            for call in delta.get("tool_calls") or []:
                fn = call.get("function") or {}
                events.append(
                    ToolCallDelta(
                        index=call.get("index", 0),
                        id=call.get("id"),
                        name=fn.get("name"),
                        arguments=fn.get("arguments") or "",
                    )
                )
            if reason := choice.get("finish_reason"):
                self._finish = _FINISH.get(reason, "stop")
        return events

    def close(self) -> StreamEnd:
        if self._finish is None:
            raise interrupted(self._origin, "stream ended before its finish_reason")
        return StreamEnd(finish_reason=self._finish, usage=self._usage)


class OpenAICompatibleProvider(OpenAIProvider):
    """An OpenAI-compatible server (vLLM, Ollama ``/v1``, llama.cpp, LM Studio); needs ``base_url``.

    Sends ``max_tokens`` (which these servers accept) instead of ``max_completion_tokens``.
    """

    name: ClassVar[str] = "openai_compatible"
    DEFAULT_BASE_URL: ClassVar[str | None] = None
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ()
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ()
    MAX_TOKENS_FIELD: ClassVar[str] = "max_tokens"

    async def ask_context_window(self) -> int | None:
        """The window the server reports, asked the way each server kind answers.

        vLLM lists ``max_model_len`` in ``GET /v1/models``. llama.cpp lists the trained
        length (``meta.n_ctx_train``) there, but the window it was started with is
        ``n_ctx`` in ``GET /props`` — the effective one, so it is preferred. LM Studio
        answers ``GET /api/v0/models/{model}`` with ``max_context_length``. The first
        server that does not answer at all ends the search.
        """
        model = self.deployment.model
        root = self.base_url.removesuffix("/v1")
        entry = listed_model(await self.fetch_json(f"{self.base_url}/models"), model)
        if window := vllm_window(entry):
            return window
        if window := llamacpp_props_window(await self.fetch_json(f"{root}/props")):
            return window
        if window := llamacpp_trained_window(entry):
            return window
        return lmstudio_window(await self.fetch_json(f"{root}/api/v0/models/{model}"))
