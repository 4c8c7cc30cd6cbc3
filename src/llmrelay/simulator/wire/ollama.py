"""Ollama's native chat API (``POST /api/chat``, NDJSON stream) as a local Ollama serves it.

One difference on purpose: a real Ollama silently truncates a prompt longer than the
model's context (``num_ctx``), keeping its end, and answers 200. The simulator answers
400 instead ("the input length exceeds the context length"), so that a prompt that does
not fit is visible to the caller rather than answered from a cut conversation. Clients
learn the context from ``POST /api/show`` (:func:`~llmrelay.simulator.wire.local.ollama_show`).
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
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
from llmrelay.simulator.wire.local import LOCAL_KEY, ollama_tag

_json = msgspec.json.Encoder()


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


def _line(data: Any) -> bytes:
    return _json.encode(data) + b"\n"


class OllamaWire:
    """Ollama has no authentication; a bearer key, when a proxy adds one, is accounted to."""

    api: ClassVar[Api] = "ollama"
    serves: ClassVar[frozenset[Api]] = frozenset({"ollama"})
    stream_content_type: ClassVar[str] = "application/x-ndjson"

    def api_key(self, headers: dict[str, str], query: dict[str, str]) -> str | None:
        scheme, _, token = headers.get("authorization", "").partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None

    def missing_key(self) -> str | None:
        return LOCAL_KEY

    def parse(self, body: Any, path: dict[str, str], query: dict[str, str]) -> SimRequest:
        model = require(body, "model", str)
        raw_messages = require(body, "messages", list)
        if not raw_messages:
            raise BadInput("messages: at least one message is required")
        messages: list[SimMessage] = []
        for i, m in enumerate(raw_messages):
            role = require(m, "role", str, f"messages[{i}].")
            content = m.get("content") or ""
            if not isinstance(content, str):
                raise BadInput(f"messages[{i}].content: expected a string")
            for call in m.get("tool_calls") or []:
                fn = call.get("function", {})
                content += fn.get("name", "") + _json.encode(fn.get("arguments", {})).decode()
            messages.append(SimMessage(role=role, text=content, tool_name=m.get("tool_name")))
        options = body.get("options") or {}
        num_predict = options.get("num_predict")
        fmt = body.get("format")
        return SimRequest(
            model=model,
            messages=messages,
            max_tokens=num_predict if isinstance(num_predict, int) and num_predict > 0 else None,
            stream=body.get("stream", True) is not False,
            tools=[
                SimTool(name=t["function"]["name"], schema=t["function"].get("parameters") or {})
                for t in body.get("tools") or []
            ],
            json_schema=fmt if isinstance(fmt, dict) else None,
            json_mode=fmt == "json",
            stop=list(options.get("stop") or []),
            extra_text=_json.encode(body["tools"]).decode() if body.get("tools") else "",
        )

    def error(self, kind: ErrorKind, ctx: ErrorContext) -> HttpError:
        if kind in (ErrorKind.AUTH_MISSING, ErrorKind.AUTH_INVALID):
            return HttpError(401, {"error": "unauthorized"})
        if kind is ErrorKind.NOT_FOUND:
            return HttpError(404, {"error": f'model "{ctx.model}" not found, try pulling it first'})
        if kind is ErrorKind.BAD_REQUEST:
            return HttpError(400, {"error": ctx.message})
        if kind is ErrorKind.CONTEXT:
            return HttpError(
                400,
                {
                    "error": f"the input length exceeds the context length "
                    f"({ctx.input_tokens + ctx.max_tokens} > {ctx.limit})"
                },
            )
        if kind is ErrorKind.MAX_TOKENS:
            return HttpError(
                400,
                {"error": f"num_predict {ctx.max_tokens} exceeds the model's limit of {ctx.limit}"},
            )
        if kind is ErrorKind.RATE_LIMIT:
            wait = ctx.refusal.retry_after_s if ctx.refusal else 1.0
            return HttpError(
                429,
                {"error": "rate limit exceeded"},
                [("retry-after", str(max(1, math.ceil(wait))))],
            )
        if kind is ErrorKind.OVERLOADED:
            return HttpError(
                503, {"error": "server busy, please try again. maximum pending requests exceeded"}
            )
        if kind is ErrorKind.UNAVAILABLE:
            return HttpError(503, {"error": "service unavailable"})
        return HttpError(500, {"error": "llama runner process has terminated: exit status 2"})

    def limit_headers(self, window: Window) -> Headers:
        return []  # Ollama reports no limits

    @staticmethod
    def _final(request: SimRequest, reply: Reply, content: str, with_calls: bool) -> Any:
        message: dict[str, Any] = {"role": "assistant", "content": content}
        if with_calls and reply.tool_calls:
            message["tool_calls"] = [
                {"function": {"name": c.name, "arguments": c.arguments}} for c in reply.tool_calls
            ]
        return {
            "model": request.model,
            "created_at": _now(),
            "message": message,
            "done": True,
            "done_reason": "length" if reply.finish_reason == "length" else "stop",
            "total_duration": 0,
            "load_duration": 0,
            "prompt_eval_count": reply.input_tokens,
            "prompt_eval_duration": 0,
            "eval_count": reply.output_tokens,
            "eval_duration": 0,
        }

    def render(self, request: SimRequest, reply: Reply, response_id: str) -> Any:
        return self._final(request, reply, reply.text, with_calls=True)

    def stream(self, request: SimRequest, reply: Reply, response_id: str) -> _OllamaStream:
        return _OllamaStream(request, reply)

    def models(self, specs: list[ModelSpec]) -> Any:
        """``GET /api/tags``: every Ollama model under its tagged name."""
        modified = _now()
        return {"models": [ollama_tag(s, modified) for s in specs if s.api == "ollama"]}


class _OllamaStream:
    def __init__(self, request: SimRequest, reply: Reply) -> None:
        self._request, self._reply = request, reply

    def opening(self) -> bytes:
        return b""

    def text(self, piece: str) -> bytes:
        return _line(
            {
                "model": self._request.model,
                "created_at": _now(),
                "message": {"role": "assistant", "content": piece},
                "done": False,
            }
        )

    def closing(self) -> bytes:
        out = b""
        if self._reply.tool_calls:
            calls = [
                {"function": {"name": c.name, "arguments": c.arguments}}
                for c in self._reply.tool_calls
            ]
            out = _line(
                {
                    "model": self._request.model,
                    "created_at": _now(),
                    "done": False,
                    "message": {"role": "assistant", "content": "", "tool_calls": calls},
                }
            )
        return out + _line(OllamaWire._final(self._request, self._reply, "", with_calls=False))

    def error(self) -> bytes:
        return _line({"error": "an error was encountered while running the model"})
