"""Gemini ``generateContent`` / ``streamGenerateContent?alt=sse`` as the Gemini API serves it.

Gemini 2.5+ models cache repeated prompt prefixes implicitly (see
:mod:`llmrelay.simulator.caching`); a hit is reported as ``cachedContentTokenCount``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import msgspec

from llmrelay.simulator.config import Api, ModelSpec
from llmrelay.simulator.engine import Reply, SimMessage, SimRequest, SimTool
from llmrelay.simulator.state import Window
from llmrelay.simulator.wire.base import (
    BadInput,
    ErrorContext,
    ErrorKind,
    Headers,
    HttpError,
    require,
)

_json = msgspec.json.Encoder()
_FINISH = {"stop": "STOP", "length": "MAX_TOKENS", "tool_calls": "STOP"}
_METHODS = ("generateContent", "streamGenerateContent")
_GOOGLE_RPC = "type.googleapis.com/google.rpc."
_QUOTA_METRIC = "generativelanguage.googleapis.com/generate_content_"
_QUOTAS: dict[str, tuple[str, str]] = {
    "requests": ("requests", "GenerateRequestsPerMinutePerProjectPerModel"),
    "tokens": ("input_token_count", "GenerateContentInputTokensPerModelPerMinute"),
    "requests_per_day": ("requests", "GenerateRequestsPerDayPerProjectPerModel"),
}
"""Which quota a refusal names, per limit (Gemini has no separate input/output limits)."""


def _error(code: int, status: str, message: str, details: list[Any] | None = None) -> HttpError:
    body: dict[str, Any] = {"code": code, "message": message, "status": status}
    if details:
        body["details"] = details
    return HttpError(code, {"error": body})


def _parts_text(parts: list[Any], where: str) -> str:
    texts: list[str] = []
    for part in parts:
        if not isinstance(part, dict):
            raise BadInput(f"Invalid value at '{where}': parts must be objects")
        if "text" in part:
            texts.append(str(part["text"]))
        elif "functionCall" in part:
            call = part["functionCall"]
            texts.append(call.get("name", "") + _json.encode(call.get("args", {})).decode())
    return "".join(texts)


def _message(index: int, content: Any) -> SimMessage:
    where = f"contents[{index}]"
    parts = require(content, "parts", list, f"{where}.")
    role = content.get("role", "user")
    if role not in ("user", "model", "function", "tool"):
        raise BadInput(f"Please use a valid role: user, model. Got {role!r} in {where}.")
    for part in parts:
        response = part.get("functionResponse") if isinstance(part, dict) else None
        if response is not None:
            text = _json.encode(response.get("response", {})).decode()
            return SimMessage(role="tool", text=text, tool_name=response.get("name"))
    return SimMessage(
        role="assistant" if role == "model" else "user", text=_parts_text(parts, where)
    )


class GeminiWire:
    api: ClassVar[Api] = "gemini"
    serves: ClassVar[frozenset[Api]] = frozenset({"gemini"})
    stream_content_type: ClassVar[str] = "text/event-stream"

    def api_key(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        return headers.get("x-goog-api-key") or query.get("key") or None

    def missing_key(self) -> str | None:
        return None

    def parse(self, body: Any, path: dict[str, str], query: dict[str, str]) -> SimRequest:
        method = path.get("method", "")
        if method not in _METHODS:
            raise BadInput(f"Method {method!r} is not supported by the simulator")
        contents = require(body, "contents", list)
        if not contents:
            raise BadInput("* GenerateContentRequest.contents: contents is not specified")
        messages = [_message(i, c) for i, c in enumerate(contents)]
        system = body.get("systemInstruction") or body.get("system_instruction") or {}
        config = body.get("generationConfig") or body.get("generation_config") or {}
        max_tokens = config.get("maxOutputTokens")
        if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
            raise BadInput(
                "* GenerateContentRequest.generation_config.max_output_tokens: "
                "must be a positive integer"
            )
        tools = [
            SimTool(
                name=d["name"], schema=d.get("parametersJsonSchema") or d.get("parameters") or {}
            )
            for t in body.get("tools") or []
            for d in t.get("functionDeclarations") or []
        ]
        calling = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        mode = calling.get("mode", "AUTO")
        allowed = calling.get("allowedFunctionNames") or []
        choice = {"ANY": "required", "NONE": "none"}.get(mode, "auto")
        if mode == "ANY" and len(allowed) == 1:
            choice = allowed[0]
        schema = config.get("responseJsonSchema") or config.get("responseSchema")
        return SimRequest(
            model=path["model"],
            messages=messages,
            max_tokens=max_tokens,
            stream=method == "streamGenerateContent",
            tools=tools,
            tool_choice=choice,
            json_schema=_lower_types(schema) if schema else None,
            json_mode=config.get("responseMimeType") == "application/json",
            stop=list(config.get("stopSequences") or []),
            include_usage=True,
            extra_text=_parts_text(system.get("parts", []), "systemInstruction")
            + (_json.encode(body["tools"]).decode() if body.get("tools") else ""),
        )

    def error(self, kind: ErrorKind, ctx: ErrorContext) -> HttpError:
        if kind is ErrorKind.AUTH_MISSING:
            return _error(
                403,
                "PERMISSION_DENIED",
                "Method doesn't allow unregistered callers (callers without "
                "established identity). Please use API Key or other form of API "
                "consumer identity to call this API.",
            )
        if kind is ErrorKind.AUTH_INVALID:
            return _error(
                400,
                "INVALID_ARGUMENT",
                "API key not valid. Please pass a valid API key.",
                [
                    {
                        "@type": _GOOGLE_RPC + "ErrorInfo",
                        "reason": "API_KEY_INVALID",
                        "domain": "googleapis.com",
                    }
                ],
            )
        if kind is ErrorKind.NOT_FOUND:
            return _error(
                404,
                "NOT_FOUND",
                f"models/{ctx.model} is not found for API version v1beta, or is not "
                "supported for generateContent. Call ListModels to see the list of "
                "available models and their supported methods.",
            )
        if kind is ErrorKind.BAD_REQUEST:
            return _error(400, "INVALID_ARGUMENT", ctx.message)
        if kind is ErrorKind.CONTEXT:
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"The input token count ({ctx.input_tokens + ctx.max_tokens}) exceeds "
                f"the maximum number of tokens allowed ({ctx.limit}).",
            )
        if kind is ErrorKind.MAX_TOKENS:
            return _error(
                400,
                "INVALID_ARGUMENT",
                f"Unable to submit request because it has a maxOutputTokens value of "
                f"{ctx.max_tokens} but the supported range is from 1 (inclusive) to "
                f"{ctx.limit + 1} (exclusive). Update the value and try again.",
            )
        if kind is ErrorKind.RATE_LIMIT:
            refusal = ctx.refusal
            wait = refusal.retry_after_s if refusal else 1.0
            metric, quota_id = _QUOTAS.get(
                refusal.kind if refusal else "requests", _QUOTAS["tokens"]
            )
            details = [
                {
                    "@type": _GOOGLE_RPC + "QuotaFailure",
                    "violations": [
                        {
                            "quotaMetric": _QUOTA_METRIC + metric,
                            "quotaId": quota_id,
                            "quotaDimensions": {"location": "global", "model": ctx.model},
                            "quotaValue": str(refusal.limit if refusal else 0),
                        }
                    ],
                },
                {"@type": _GOOGLE_RPC + "RetryInfo", "retryDelay": f"{max(wait, 0.001):.3f}s"},
            ]
            return _error(
                429,
                "RESOURCE_EXHAUSTED",
                "You exceeded your current quota, please check your plan and billing "
                f"details. Please retry in {wait:.3f}s.",
                details,
            )
        if kind is ErrorKind.OVERLOADED:
            return _error(503, "UNAVAILABLE", "The model is overloaded. Please try again later.")
        if kind is ErrorKind.UNAVAILABLE:
            return _error(503, "UNAVAILABLE", "The service is currently unavailable.")
        return _error(
            500,
            "INTERNAL",
            "An internal error has occurred. Please retry or report in "
            "https://developers.generativeai.google/guide/troubleshooting",
        )

    def limit_headers(self, window: Window) -> Headers:
        return []  # the Gemini API reports limits only in 429 bodies

    @staticmethod
    def _usage(reply: Reply, output_tokens: int) -> dict[str, Any]:
        """``promptTokenCount`` counts the whole prompt, cached part included; the cached
        part is reported only when there is one, as the Gemini API does."""
        usage: dict[str, Any] = {
            "promptTokenCount": reply.input_tokens,
            "candidatesTokenCount": output_tokens,
            "totalTokenCount": reply.input_tokens + output_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": reply.input_tokens}],
        }
        if reply.cached_tokens:
            usage["cachedContentTokenCount"] = reply.cached_tokens
            usage["cacheTokensDetails"] = [{"modality": "TEXT", "tokenCount": reply.cached_tokens}]
        return usage

    @staticmethod
    def _chunk(
        request: SimRequest, rid: str, parts: list[Any], usage: Any, finish: str | None = None
    ) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
        if finish:
            candidate["finishReason"] = finish
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": request.model,
            "responseId": rid,
        }

    @staticmethod
    def _parts(reply: Reply) -> list[Any]:
        parts: list[Any] = [{"text": reply.text}] if reply.text else []
        parts += [{"functionCall": {"name": c.name, "args": c.arguments}} for c in reply.tool_calls]
        return parts

    def render(self, request: SimRequest, reply: Reply, response_id: str) -> Any:
        return self._chunk(
            request,
            response_id,
            self._parts(reply) or [{"text": ""}],
            self._usage(reply, reply.output_tokens),
            _FINISH[reply.finish_reason],
        )

    def stream(self, request: SimRequest, reply: Reply, response_id: str) -> _GeminiStream:
        return _GeminiStream(request, reply, response_id)

    def models(self, specs: list[ModelSpec]) -> Any:
        return {
            "models": [
                {
                    "name": f"models/{s.name}",
                    "displayName": s.name,
                    "version": "001",
                    "inputTokenLimit": s.context_window,
                    "outputTokenLimit": s.max_output_tokens,
                    "supportedGenerationMethods": list(_METHODS),
                }
                for s in specs
                if s.api == "gemini"
            ]
        }


def _lower_types(schema: Any) -> Any:
    """Gemini's OpenAPI-style schemas spell types in capitals (``STRING``)."""
    if isinstance(schema, dict):
        return {
            k: (v.lower() if k == "type" and isinstance(v, str) else _lower_types(v))
            for k, v in schema.items()
        }
    if isinstance(schema, list):
        return [_lower_types(v) for v in schema]
    return schema


def _sse(data: Any) -> bytes:
    return b"data: " + _json.encode(data) + b"\r\n\r\n"


class _GeminiStream:
    def __init__(self, request: SimRequest, reply: Reply, rid: str) -> None:
        self._request, self._reply, self._id = request, reply, rid
        self._sent = 0

    def opening(self) -> bytes:
        return b""

    def text(self, piece: str) -> bytes:
        self._sent += 1
        usage = GeminiWire._usage(self._reply, self._sent)
        return _sse(GeminiWire._chunk(self._request, self._id, [{"text": piece}], usage))

    def closing(self) -> bytes:
        calls = [
            {"functionCall": {"name": c.name, "args": c.arguments}} for c in self._reply.tool_calls
        ]
        usage = GeminiWire._usage(self._reply, self._reply.output_tokens)
        return _sse(
            GeminiWire._chunk(
                self._request,
                self._id,
                calls or [{"text": ""}],
                usage,
                _FINISH[self._reply.finish_reason],
            )
        )

    def error(self) -> bytes:
        return _sse(
            {
                "error": {
                    "code": 500,
                    "message": "An internal error has occurred.",
                    "status": "INTERNAL",
                }
            }
        )
