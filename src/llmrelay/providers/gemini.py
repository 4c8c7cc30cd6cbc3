"""Gemini API: ``models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``."""

from __future__ import annotations

import re
from collections.abc import Iterable
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
    RateLimited,
    Timeout,
)
from llmrelay.providers.base import HttpProvider, SseEvent, interrupted, load_chunk
from llmrelay.providers.http import Headers, Origin, WireRequest
from llmrelay.providers.parts import data_url, json_arguments
from llmrelay.providers.windows import gemini_window
from llmrelay.providers.wire import body_message, error_for_status, error_payload, plain_error
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
_FILTERED = {"SAFETY", "RECITATION", "BLOCKLIST", "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"}
_STATUS: dict[str, type[ProviderError]] = {
    "UNAUTHENTICATED": AuthenticationFailed,
    "PERMISSION_DENIED": AuthenticationFailed,
    "NOT_FOUND": NotFound,
    "RESOURCE_EXHAUSTED": RateLimited,
    "DEADLINE_EXCEEDED": Timeout,
    "INTERNAL": ProviderUnavailable,
    "INVALID_ARGUMENT": BadRequest,
    "FAILED_PRECONDITION": BadRequest,
}
_TOKENS = re.compile(
    r"input token count \(?(\d+)\)? exceeds the maximum number of tokens allowed \(?(\d+)"
)
_TOKENS_UNCOUNTED = re.compile(
    r"input token count exceeds the maximum number of tokens allowed \(?(\d+)"
)


def _finish(reason: str | None, has_calls: bool) -> FinishReason:
    if reason == "MAX_TOKENS":
        return "length"
    if reason in _FILTERED:
        return "content_filter"
    return "tool_calls" if has_calls else "stop"


def _parts(message: Message, call_names: dict[str, str]) -> list[dict[str, Any]]:
    if message.role == "tool":
        name = message.name or call_names.get(message.tool_call_id or "", "")
        return [{"functionResponse": {"name": name, "response": {"result": message.text}}}]
    parts: list[dict[str, Any]] = []
    items = [message.content] if isinstance(message.content, str) else message.content
    for item in items:
        if isinstance(item, str):
            if item:
                parts.append({"text": item})
        elif isinstance(item, ImagePart):
            decoded = data_url(item.url)
            parts.append(
                {"inlineData": {"mimeType": decoded[0], "data": decoded[1]}}
                if decoded
                else {"fileData": {"fileUri": item.url}}
            )
        elif item.text:
            parts.append({"text": item.text})
    for call in message.tool_calls or []:
        call_names[call.id] = call.name
        parts.append({"functionCall": {"name": call.name, "args": json_arguments(call.arguments)}})
    return parts or [{"text": ""}]


def _usage(raw: dict[str, Any] | None) -> Usage | None:
    if not raw:
        return None
    thoughts = raw.get("thoughtsTokenCount") or 0
    return Usage(
        input_tokens=raw.get("promptTokenCount") or 0,
        output_tokens=(raw.get("candidatesTokenCount") or 0) + thoughts,
        cached_input_tokens=raw.get("cachedContentTokenCount") or 0,
        reasoning_tokens=thoughts,
    )


def _retry_delay(details: list[Any]) -> float | None:
    for detail in details:
        if isinstance(detail, dict) and str(detail.get("@type", "")).endswith("RetryInfo"):
            delay = str(detail.get("retryDelay", "")).rstrip("s")
            try:
                return float(delay)
            except ValueError:
                return None
    return None


def classify(status: int, err: dict[str, Any]) -> ProviderError:
    """Google's ``{"error": {"code", "message", "status", "details"}}`` as a taxonomy error."""
    code = str(err.get("status") or "")
    message = body_message(err) or f"an error with no message (status {code or 'unknown'})"
    details = err.get("details") or []
    reasons = {d.get("reason") for d in details if isinstance(d, dict)}
    if "API_KEY_INVALID" in reasons or "API key not valid" in message:
        return AuthenticationFailed(message)
    if match := _TOKENS.search(message):
        return ContextWindowExceeded(
            message, required_tokens=int(match.group(1)), max_tokens=int(match.group(2))
        )
    if match := _TOKENS_UNCOUNTED.search(message):
        return ContextWindowExceeded(message, max_tokens=int(match.group(1)))
    if code == "UNAVAILABLE":
        return (Overloaded if "overloaded" in message.lower() else ProviderUnavailable)(message)
    if code == "RESOURCE_EXHAUSTED":
        return RateLimited(message, retry_after=_retry_delay(details))
    return _STATUS.get(code, error_for_status(status))(message)


class GeminiProvider(HttpProvider):
    """Google AI Studio's Gemini API with ``x-goog-api-key``."""

    name: ClassVar[str] = "gemini"
    DEFAULT_BASE_URL: ClassVar[str | None] = "https://generativelanguage.googleapis.com"
    API_KEY_ENV: ClassVar[tuple[str, ...]] = ("GEMINI_API_KEY", "GOOGLE_API_KEY")
    BASE_URL_ENV: ClassVar[tuple[str, ...]] = ("GEMINI_BASE_URL", "GOOGLE_GEMINI_BASE_URL")
    API_VERSION: ClassVar[str] = "v1beta"

    def auth_headers(self, api_key: str) -> dict[str, str]:
        return {"x-goog-api-key": api_key}

    async def ask_context_window(self) -> int | None:
        """``inputTokenLimit`` from ``GET /models/{model}``."""
        url = f"{self.base_url}/{self.API_VERSION}/models/{self.deployment.model}"
        return gemini_window(await self.fetch_json(url))

    def encode(self, request: ChatRequest) -> WireRequest:
        names: dict[str, str] = {}
        contents = [
            {"role": "model" if m.role == "assistant" else "user", "parts": _parts(m, names)}
            for m in request.chat_messages()
        ]
        body: dict[str, Any] = {"contents": contents}
        if (system := request.system_text()) is not None:
            body["systemInstruction"] = {"parts": [{"text": system}]}
        config: dict[str, Any] = {}
        for key, field in (
            ("max_tokens", "maxOutputTokens"),
            ("temperature", "temperature"),
            ("top_p", "topP"),
            ("stop", "stopSequences"),
        ):
            if (value := getattr(request, key)) is not None:
                config[field] = value
        fmt = request.response_format
        if fmt is not None and fmt.type != "text":
            config["responseMimeType"] = "application/json"
            if fmt.type == "json_schema" and fmt.json_schema is not None:
                config["responseJsonSchema"] = fmt.json_schema
        if config:
            body["generationConfig"] = config
        if request.tools:
            body["tools"] = [
                {
                    "functionDeclarations": [
                        {
                            "name": t.name,
                            "description": t.description,
                            "parametersJsonSchema": t.parameters,
                        }
                        for t in request.tools
                    ]
                }
            ]
        if (choice := request.tool_choice) is not None:
            mode = {"auto": "AUTO", "none": "NONE", "required": "ANY"}.get(choice)
            calling: dict[str, Any] = {"mode": mode or "ANY"}
            if mode is None:
                calling["allowedFunctionNames"] = [choice]
            body["toolConfig"] = {"functionCallingConfig": calling}
        method = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        url = f"{self.base_url}/{self.API_VERSION}/models/{self.deployment.model}:{method}"
        return WireRequest(url=url, headers=self.headers(), body=_encode(body))

    def decode(self, body: Any) -> ChatResponse:
        candidates = body.get("candidates") if isinstance(body, dict) else None
        if not candidates:
            feedback = (body or {}).get("promptFeedback") or {}
            if reason := feedback.get("blockReason"):
                raise self.origin.error(ContentFiltered, f"prompt blocked: {reason}")
            raise self.origin.error(MalformedResponse, "response has no candidates")
        candidate = candidates[0]
        parts = (candidate.get("content") or {}).get("parts") or []
        text = "".join(p.get("text", "") for p in parts if "text" in p and not p.get("thought"))
        calls = [
            ToolCall(
                id=p["functionCall"].get("id") or f"call_{i}",
                name=p["functionCall"]["name"],
                arguments=_encode(p["functionCall"].get("args") or {}).decode(),
            )
            for i, p in enumerate(parts)
            if "functionCall" in p
        ]
        return ChatResponse(
            content=text,
            tool_calls=calls,
            finish_reason=_finish(candidate.get("finishReason"), bool(calls)),
            usage=_usage(body.get("usageMetadata")) or Usage(),
            model=body.get("modelVersion", ""),
            id=body.get("responseId", ""),
        )

    def error(self, status: int, headers: Headers, body: bytes) -> ProviderError:
        payload = error_payload(body)
        if isinstance(payload, list) and payload:  # a streamed request's errors come in an array
            payload = payload[0]
        err = payload.get("error") if isinstance(payload, dict) else None
        return classify(status, err) if isinstance(err, dict) else plain_error(status, body)

    def rate_limits(self, headers: Headers) -> RateLimitInfo:
        return RateLimitInfo()  # Gemini reports limits only in the body of a 429

    def stream_decoder(self) -> GeminiStreamDecoder:
        return GeminiStreamDecoder(self.origin)


class GeminiStreamDecoder:
    """Each frame is a whole ``GenerateContentResponse``; a ``finishReason`` ends the answer."""

    def __init__(self, origin: Origin) -> None:
        self._origin = origin
        self._finish: str | None = None
        self._calls = 0
        self._usage: Usage | None = None
        self._started = False

    def feed(self, frame: SseEvent) -> Iterable[StreamEvent]:
        chunk = load_chunk(frame, self._origin)
        if isinstance(err := chunk.get("error"), dict):
            raise interrupted(
                self._origin, f"error inside the stream: {classify(500, err).message}"
            )
        events: list[StreamEvent] = []
        if not self._started:
            self._started = True
            events.append(
                StreamStart(id=chunk.get("responseId", ""), model=chunk.get("modelVersion", ""))
            )
        self._usage = _usage(chunk.get("usageMetadata")) or self._usage
        for candidate in chunk.get("candidates") or []:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    call = part["functionCall"]
                    events.append(
                        ToolCallDelta(
                            index=self._calls,
                            id=call.get("id") or f"call_{self._calls}",
                            name=call.get("name"),
                            arguments=_encode(call.get("args") or {}).decode(),
                        )
                    )
                    self._calls += 1
                elif part.get("text") and not part.get("thought"):
                    events.append(TextDelta(part["text"]))
            self._finish = candidate.get("finishReason") or self._finish
        return events

    def close(self) -> StreamEnd:
        if self._finish is None:
            raise interrupted(self._origin, "stream ended before a finishReason")
        return StreamEnd(finish_reason=_finish(self._finish, self._calls > 0), usage=self._usage)
