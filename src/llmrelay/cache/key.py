"""What makes two requests the same question: the keys of the exact and semantic caches.

A request is reduced to what decides its answer — the model group, the system prompt, the
messages, the sampling parameters, the tools and the response format — and encoded as
canonical JSON (sorted keys, texts in Unicode NFC with their ends stripped, numbers of a
float field as floats, so ``temperature=0`` and ``0.0`` are one question). What does not
change the answer (:data:`UNKEYED`: ``stream``, ``user``, ``metadata``…) is left out, so a
streamed and a plain call share one entry.

Every other field of :class:`~llmrelay.types.ChatRequest` and
:class:`~llmrelay.types.Message` is in the key without being listed here: a field added to
them later changes the key until someone decides, in :data:`UNKEYED`, that it does not
change the answer. Too many keys only cost misses; too few would serve a wrong answer.

The semantic cache compares only the last user message by meaning; everything before and
around it must match exactly, and is its *context* key.
"""

from __future__ import annotations

import hashlib
import typing
import unicodedata
from typing import Any

import msgspec

from llmrelay.types import ChatRequest, ContentPart, Message, TextPart

UNKEYED = frozenset({"model", "stream", "user", "metadata", "key", "tags"})
"""Request fields that do not change the answer: ``model`` (the group passed beside the
request names who answers), how the answer is delivered (``stream``), and labels that are
never sent to a provider (``user``, ``metadata``, ``key``, ``tags``)."""

_encode = msgspec.json.Encoder(order="sorted").encode


def _is_float(kind: Any) -> bool:
    return kind is float or float in typing.get_args(kind)


_REQUEST_FIELDS = msgspec.structs.fields(ChatRequest)
_KEYED = tuple(f.name for f in _REQUEST_FIELDS if f.name not in UNKEYED)
_FLOATS = frozenset(f.name for f in _REQUEST_FIELDS if _is_float(f.type))


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
    if not isinstance(last.content, str) and not all(isinstance(p, TextPart) for p in last.content):
        return None
    text = _text(last.text)
    if not text:
        return None
    return _digest(_normalized(request, group, messages[:-1])), text


def _normalized(request: ChatRequest, group: str, messages: list[Message]) -> dict[str, Any]:
    normalized = {name: _field(request, name) for name in _KEYED}
    normalized["group"] = group.lower()
    normalized["system"] = _text(request.system or "")
    normalized["messages"] = [_message(m) for m in messages]
    return normalized


def _field(request: ChatRequest, name: str) -> Any:
    value = getattr(request, name)
    return float(value) if name in _FLOATS and value is not None else value


def _message(message: Message) -> dict[str, Any]:
    fields = {name: getattr(message, name) for name in message.__struct_fields__}
    fields["content"] = _content(message.content)
    return fields


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


__all__ = ["UNKEYED", "deterministic", "exact_key", "semantic_parts"]
