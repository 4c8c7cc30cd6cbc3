"""OpenAI chat completions (``POST /v1/chat/completions``) as api.openai.com serves it.

The same wire serves the OpenAI-compatible endpoints of local servers: Ollama's ``/v1``,
vLLM and llama.cpp, whose model listings and errors follow their own servers
(:mod:`llmrelay.simulator.wire.local`).
"""

from __future__ import annotations

import math
import time
from typing import Any, ClassVar

import msgspec

from llmrelay.simulator.config import Api, ModelSpec
from llmrelay.simulator.engine import Reply, SimMessage, SimRequest, SimTool
from llmrelay.simulator.state import Refusal, Window
from llmrelay.simulator.wire.base import (
    BadInput,
    ErrorContext,
    ErrorKind,
    Headers,
    HttpError,
    require,
    text_of,
)
from llmrelay.simulator.wire.local import local_error, openai_model

_json = msgspec.json.Encoder()


def go_duration(seconds: float) -> str:
    """Format like OpenAI's ``x-ratelimit-reset-*`` headers: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{max(0, math.ceil(seconds * 1000))}ms"
    minutes, rest = divmod(seconds, 60)
    text = f"{rest:.3f}".rstrip("0").rstrip(".") + "s"
    return f"{int(minutes)}m{text}" if minutes else text


def _error(message: str, type_: str, code: str | None, param: str | None = None) -> Any:
    return {"error": {"message": message, "type": type_, "param": param, "code": code}}


_UNITS = {
    "requests": "requests per min (RPM)",
    "tokens": "tokens per min (TPM)",
    "requests_per_day": "requests per day (RPD)",
}


def _limit_message(model: str, refusal: Refusal) -> str:
    unit = _UNITS.get(refusal.kind, refusal.kind.replace("_", " ") + " per min")
    if refusal.too_large:
        return (
            f"Request too large for {model} in organization org-simulator on {unit}: "
            f"Limit {refusal.limit}, Requested {refusal.requested}. The input or output tokens "
            "must be reduced in order to run successfully. Visit "
            "https://platform.openai.com/account/rate-limits to learn more."
        )
    return (
        f"Rate limit reached for {model} in organization org-simulator on {unit}: "
        f"Limit {refusal.limit}, Used {refusal.used}, Requested {refusal.requested}. "
        f"Please try again in {go_duration(refusal.retry_after_s)}. Visit "
        "https://platform.openai.com/account/rate-limits to learn more."
    )


class OpenAIWire:
    """Serves OpenAI models, and local models through their OpenAI-compatible ``/v1``."""

    api: ClassVar[Api] = "openai"
    serves: ClassVar[frozenset[Api]] = frozenset({"openai", "ollama", "vllm", "llamacpp"})
    stream_content_type: ClassVar[str] = "text/event-stream; charset=utf-8"

    def api_key(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        auth = headers.get("authorization", "")
        scheme, _, token = auth.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def missing_key(self) -> str | None:
        return None

    def parse(self, body: Any, path: dict[str, str], query: dict[str, str]) -> SimRequest:
        model = require(body, "model", str)
        raw_messages = require(body, "messages", list)
        if not raw_messages:
            raise BadInput("messages: must contain at least one message")
        messages: list[SimMessage] = []
        names: dict[str, str] = {}
        for i, m in enumerate(raw_messages):
            role = require(m, "role", str, f"messages[{i}].")
            if role not in ("system", "developer", "user", "assistant", "tool"):
                raise BadInput(f"messages[{i}].role: unsupported role {role!r}")
            text = text_of(m.get("content"))
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                names[call.get("id", "")] = fn.get("name", "")
                text += fn.get("name", "") + fn.get("arguments", "")
            tool_name = names.get(m.get("tool_call_id", "")) if role == "tool" else None
            messages.append(SimMessage(role=role, text=text, tool_name=tool_name))
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BadInput(f"max_tokens: must be a positive integer, got {max_tokens!r}")
        tools = [
            SimTool(name=t["function"]["name"], schema=t["function"].get("parameters") or {})
            for t in body.get("tools") or []
        ]
        choice = body.get("tool_choice", "auto")
        if isinstance(choice, dict):
            choice = choice.get("function", {}).get("name", "auto")
        fmt = body.get("response_format") or {}
        stop = body.get("stop") or []
        return SimRequest(
            model=model,
            messages=messages,
            max_tokens=max_tokens,
            stream=bool(body.get("stream")),
            tools=tools,
            tool_choice=choice,
            json_schema=(fmt.get("json_schema") or {}).get("schema")
            if fmt.get("type") == "json_schema"
            else None,
            json_mode=fmt.get("type") == "json_object",
            stop=[stop] if isinstance(stop, str) else list(stop),
            include_usage=bool((body.get("stream_options") or {}).get("include_usage")),
            extra_text=_json.encode(body["tools"]).decode() if body.get("tools") else "",
        )

    def error(self, kind: ErrorKind, ctx: ErrorContext) -> HttpError:
        if kind is ErrorKind.AUTH_MISSING:
            return HttpError(
                401,
                _error(
                    "You didn't provide an API key. You need to provide your API key in an "
                    "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).",
                    "invalid_request_error",
                    None,
                ),
            )
        if kind is ErrorKind.AUTH_INVALID:
            if (local := local_error("auth", ctx)) is not None:
                return local
            return HttpError(
                401,
                _error(
                    f"Incorrect API key provided: {ctx.message[:8]}****. You can find your "
                    "API key at https://platform.openai.com/account/api-keys.",
                    "invalid_request_error",
                    "invalid_api_key",
                ),
            )
        if kind is ErrorKind.NOT_FOUND:
            return HttpError(
                404,
                _error(
                    f"The model `{ctx.model}` does not exist or you do not have access to it.",
                    "invalid_request_error",
                    "model_not_found",
                ),
            )
        if kind is ErrorKind.BAD_REQUEST:
            return HttpError(400, _error(ctx.message, "invalid_request_error", None))
        if kind is ErrorKind.CONTEXT:
            if (local := local_error("context", ctx)) is not None:
                return local
            return HttpError(
                400,
                _error(
                    f"This model's maximum context length is {ctx.limit} tokens. However, you "
                    f"requested {ctx.input_tokens + ctx.max_tokens} tokens ({ctx.input_tokens} in "
                    f"the messages, {ctx.max_tokens} in the completion). Please reduce the length "
                    "of the messages or completion.",
                    "invalid_request_error",
                    "context_length_exceeded",
                    "messages",
                ),
            )
        if kind is ErrorKind.MAX_TOKENS:
            return HttpError(
                400,
                _error(
                    f"max_tokens is too large: {ctx.max_tokens}. This model supports at most "
                    f"{ctx.limit} completion tokens, whereas you provided {ctx.max_tokens}.",
                    "invalid_request_error",
                    "invalid_value",
                    "max_tokens",
                ),
            )
        if kind is ErrorKind.RATE_LIMIT:
            return self._rate_limit(ctx)
        if kind is ErrorKind.OVERLOADED:
            return HttpError(
                503,
                _error(
                    "That model is currently overloaded with other requests. You can retry "
                    "your request, or contact us if the error persists.",
                    "server_error",
                    None,
                ),
            )
        if kind is ErrorKind.UNAVAILABLE:
            return HttpError(503, _error("Service Unavailable", "server_error", None))
        return HttpError(
            500,
            _error(
                "The server had an error while processing your request. Sorry about that!",
                "server_error",
                None,
            ),
        )

    def _rate_limit(self, ctx: ErrorContext) -> HttpError:
        refusal = ctx.refusal
        if refusal is None:  # an injected fault: no limit was reached
            wait = 1.0
            message = (
                f"Rate limit reached for {ctx.model} in organization org-simulator on "
                "requests per min (RPM). Please try again in 1s."
            )
        else:
            wait, message = refusal.retry_after_s, _limit_message(ctx.model, refusal)
        kind = "requests" if refusal is None or "requests" in refusal.kind else "tokens"
        body = _error(message, kind, "rate_limit_exceeded")
        headers = [
            ("retry-after", str(max(1, math.ceil(wait)))),
            ("retry-after-ms", str(max(1, math.ceil(wait * 1000)))),
        ]
        return HttpError(429, body, headers)

    def limit_headers(self, window: Window) -> Headers:
        """``x-ratelimit-*`` for the per-minute request and token limits (no daily ones)."""
        headers: list[tuple[str, str]] = []
        for kind in ("requests", "tokens"):
            gauge = window.get(kind)
            if gauge is not None:
                headers += [
                    (f"x-ratelimit-limit-{kind}", str(gauge.limit)),
                    (f"x-ratelimit-remaining-{kind}", str(gauge.remaining)),
                    (f"x-ratelimit-reset-{kind}", go_duration(gauge.reset_s)),
                ]
        return headers

    @staticmethod
    def _usage(reply: Reply) -> dict[str, Any]:
        return {
            "prompt_tokens": reply.input_tokens,
            "completion_tokens": reply.output_tokens,
            "total_tokens": reply.input_tokens + reply.output_tokens,
            "prompt_tokens_details": {"cached_tokens": reply.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }

    @staticmethod
    def _tool_calls(reply: Reply) -> list[dict[str, Any]]:
        return [
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.name, "arguments": c.arguments_json},
            }
            for c in reply.tool_calls
        ]

    def render(self, request: SimRequest, reply: Reply, response_id: str) -> Any:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": reply.text or None,
            "refusal": None,
        }
        if reply.tool_calls:
            message["tool_calls"] = self._tool_calls(reply)
        return {
            "id": response_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": request.model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": reply.finish_reason,
                }
            ],
            "usage": self._usage(reply),
            "system_fingerprint": "fp_simulator",
        }

    def stream(self, request: SimRequest, reply: Reply, response_id: str) -> _OpenAIStream:
        return _OpenAIStream(self, request, reply, response_id)

    def models(self, specs: list[ModelSpec]) -> Any:
        return {"object": "list", "data": [openai_model(s) for s in specs if s.api in self.serves]}


class _OpenAIStream:
    def __init__(self, wire: OpenAIWire, request: SimRequest, reply: Reply, rid: str) -> None:
        self._wire, self._request, self._reply = wire, request, reply
        self._base = {
            "id": rid,
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": request.model,
            "system_fingerprint": "fp_simulator",
        }

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        body: dict[str, Any] = {**self._base, "choices": [choice]}
        if self._request.include_usage:
            body["usage"] = None
        return b"data: " + _json.encode(body) + b"\n\n"

    def opening(self) -> bytes:
        return self._chunk({"role": "assistant", "content": "", "refusal": None})

    def text(self, piece: str) -> bytes:
        return self._chunk({"content": piece})

    def closing(self) -> bytes:
        out = b""
        for i, call in enumerate(self._reply.tool_calls):
            out += self._chunk(
                {
                    "tool_calls": [
                        {
                            "index": i,
                            "id": call.id,
                            "type": "function",
                            "function": {"name": call.name, "arguments": ""},
                        }
                    ]
                }
            )
            out += self._chunk(
                {"tool_calls": [{"index": i, "function": {"arguments": call.arguments_json}}]}
            )
        out += self._chunk({}, self._reply.finish_reason)
        if self._request.include_usage:
            usage = {**self._base, "choices": [], "usage": OpenAIWire._usage(self._reply)}
            out += b"data: " + _json.encode(usage) + b"\n\n"
        return out + b"data: [DONE]\n\n"

    def error(self) -> bytes:
        body = _error(
            "The server had an error while processing your request. Sorry about that!",
            "server_error",
            None,
        )
        return b"data: " + _json.encode(body) + b"\n\n"
