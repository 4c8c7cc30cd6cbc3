"""What makes two requests the same question: the keys of the exact and semantic caches.

A request is reduced to what decides its answer — the model group, the system prompt, the
messages, the sampling parameters, the tools and the response format — and encoded as
canonical JSON (sorted keys, texts in Unicode NFC with their ends stripped). What does not
change the answer (``stream``, ``user``, ``metadata``) is left out, so a streamed and a
plain call share one entry.

The semantic cache compares only the last user message by meaning; everything before and
around it must match exactly, and is its *context* key.
"""

from __future__ import annotations

import hashlib
import unicodedata
from typing import Any

import msgspec

from llmrelay.types import ChatRequest, ContentPart, Message, TextPart

_encode = msgspec.json.Encoder(order="sorted").encode


def deterministic(request: ChatRequest) -> bool:
    """Whether the request asks for one answer: temperature 0 (callers may opt in to caching
    anything else)."""
    return request.temperature == 0


def exact_key(request: ChatRequest, group: str) -> str:
    """The exact cache's key: a hash of the whole normalized request."""
    return _digest(_normalized(request, group, request.messages))


def semantic_parts(request: ChatRequest, group: str) -> tuple[str, str] | None:
    """``(context key, last user text)`` for the semantic cache, or ``None`` when the
    request does not end with a user message of text alone."""
    messages = request.messages
    if not messages or messages[-1].role != "user":
        return None
    last = messages[-1]
    if not isinstance(last.content, str) and not all(
        isinstance(p, TextPart) for p in last.content
    ):
        return None
    text = _text(last.text)
    if not text:
        return None
    return _digest(_normalized(request, group, messages[:-1])), text


def _normalized(request: ChatRequest, group: str, messages: list[Message]) -> dict[str, Any]:
    return {
        "group": group.lower(),
        "system": _text(request.system or ""),
        "messages": [_message(m) for m in messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
        "tools": request.tools,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
    }


def _message(message: Message) -> dict[str, Any]:
    return {
        "role": message.role,
        "content": _content(message.content),
        "tool_calls": message.tool_calls,
        "tool_call_id": message.tool_call_id,
        "name": message.name,
    }


def _content(content: str | list[ContentPart]) -> Any:
    if isinstance(content, str):
        return _text(content)
    return [
        {"text": _text(p.text)} if isinstance(p, TextPart) else {"image": p.url} for p in content
    ]


def _text(text: str) -> str:
    return unicodedata.normalize("NFC", text).strip()


def _digest(normalized: dict[str, Any]) -> str:
    return hashlib.sha256(_encode(normalized)).hexdigest()


__all__ = ["deterministic", "exact_key", "semantic_parts"]
