"""``/openapi.json``: every route the gateway serves, its body and its answers.

Request bodies are described from the structs that decode them (msgspec writes the JSON
schema), so the description cannot drift from what is accepted; answers are described
here, in the shape the wire modules write.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from llmrelay import __version__
from llmrelay.gateway.anthropic_wire import MessagesBody
from llmrelay.gateway.keys import KeyChanges, KeySpec
from llmrelay.gateway.openai_wire import ChatBody

_REF = "#/components/schemas/{name}"
_OBJECT: dict[str, Any] = {"type": "object"}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(name=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_ERRORS = {
    status: _json(_ref("Error"), text)
    for status, text in (
        ("400", "the request is invalid (the message names the field)"),
        ("401", "no key, or an unknown, revoked or expired key"),
        ("403", "the key may not do this"),
        ("404", "unknown model group or key"),
        ("405", "the path does not take this method"),
        ("413", "the body is too large"),
        ("429", "the key's own rate limit, or a budget"),
        ("500", "internal error"),
        ("502", "a provider failed in a way the caller cannot fix"),
        ("503", "every deployment of the group is failing or busy"),
        ("504", "no answer in time"),
    )
}
_SSE = {"text/event-stream": {"schema": {"type": "string"}}}

_COMPONENTS: dict[str, Any] = {
    "Error": {
        "type": "object",
        "description": "OpenAI's {error: {...}} or Anthropic's {type: error, error: {...}}",
        "properties": {"error": {"type": "object", "required": ["type", "message"],
                                 "properties": {"type": {"type": "string"},
                                                "message": {"type": "string"}}}},
        "required": ["error"],
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["id", "object", "created", "model", "choices", "usage"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "chat.completion"},
            "created": {"type": "integer"}, "model": {"type": "string"},
            "choices": {"type": "array", "items": _OBJECT}, "usage": _OBJECT,
        },
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": {"type": "string"}, "type": {"const": "message"},
            "role": {"const": "assistant"}, "model": {"type": "string"},
            "content": {"type": "array", "items": _OBJECT},
            "stop_reason": {"type": "string"}, "usage": _OBJECT,
        },
    },
    "ModelList": {"type": "object", "required": ["data"],
                  "properties": {"data": {"type": "array", "items": _OBJECT}}},
    "Key": {
        "type": "object",
        "required": ["id", "prefix", "created_at", "status"],
        "properties": {"id": {"type": "string"}, "prefix": {"type": "string"},
                       "created_at": {"type": "number"}, "status": {"type": "string"}},
    },
    "KeyList": {"type": "object", "required": ["data"],
                "properties": {"data": {"type": "array", "items": _ref("Key")}}},
    "Status": {"type": "object", "required": ["status"],
               "properties": {"status": {"type": "string"}}},
}  # fmt: skip


def _operation(summary: str, ok: dict[str, Any], body: str | None = None,
               status: str = "200", auth: bool = True) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "responses": {status: ok, **_ERRORS}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(body)}}}  # fmt: skip
    if not auth:
        operation["security"] = []
    return operation


_KEY_ID = [{"name": "key_id", "in": "path", "required": True, "schema": {"type": "string"}}]


@functools.cache
def document() -> bytes:
    """The OpenAPI 3.1 description, encoded once."""
    _, schemas = msgspec.json.schema_components(
        [ChatBody, MessagesBody, KeySpec, KeyChanges], ref_template=_REF
    )
    chat_ok = {
        "description": "the answer (server-sent events when stream is true)",
        "content": {"application/json": {"schema": _ref("ChatCompletion")}, **_SSE},
    }
    message_ok = {
        "description": "the answer (server-sent events when stream is true)",
        "content": {"application/json": {"schema": _ref("Message")}, **_SSE},
    }
    key = _json(_ref("Key"), "the key")
    paths = {
        "/v1/chat/completions": {"post": _operation(
            "OpenAI chat completion through the router", chat_ok, "ChatBody")},
        "/v1/messages": {"post": _operation(
            "Anthropic message through the router", message_ok, "MessagesBody")},
        "/v1/models": {"get": _operation(
            "The model groups the key may use", _json(_ref("ModelList"), "the groups"))},
        "/health": {"get": _operation("Liveness", _json(_ref("Status"), "alive"), auth=False)},
        "/ready": {"get": _operation(
            "Readiness: the key store and a reachable deployment per group",
            _json(_ref("Status"), "ready"), auth=False)},
        "/metrics": {"get": _operation("Prometheus metrics", {
            "description": "the exposition", "content": {"text/plain": {"schema": {"type": "string"}}}})},
        "/openapi.json": {"get": _operation("This description", _json(_OBJECT, "OpenAPI"), auth=False)},
        "/admin/keys": {
            "get": _operation("List keys (all=true: with revoked ones)", _json(_ref("KeyList"), "keys")),
            "post": _operation("Make a key; its secret is in this answer only",
                               _json(_ref("Key"), "the key and its secret"), "KeySpec", "201"),
        },
        "/admin/keys/{key_id}": {
            "parameters": _KEY_ID,
            "get": _operation("Show a key", key),
            "patch": _operation("Change a key", key, "KeyChanges"),
            "delete": _operation("Revoke a key", key),
        },
    }  # fmt: skip
    return msgspec.json.encode({
        "openapi": "3.1.0",
        "info": {"title": "llmrelay gateway", "version": __version__},
        "paths": paths,
        "components": {
            "schemas": {**schemas, **_COMPONENTS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    })  # fmt: skip


__all__ = ["document"]
