"""``/openapi.json``: every route the gateway serves, its body and its answers.

Request bodies are described from the structs that decode them (msgspec writes the JSON
schema), so the description cannot drift from what is decoded; what is checked after
decoding (OpenAI's messages, tools and formats by :mod:`llmrelay.inputs`, value ranges,
which blocks belong to which role) is laid over it here, so that a body the description
allows is one the gateway routes. Answers are described here, in the shape the wire
modules write.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec

from llmrelay import __version__
from llmrelay.gateway.anthropic_wire import MessagesBody
from llmrelay.gateway.keys import NAME_MAX_CHARS, KeyChanges, KeySpec
from llmrelay.gateway.openai_wire import ChatBody

_REF = "#/components/schemas/{name}"
_OBJECT: dict[str, Any] = {"type": "object"}
_COUNT: dict[str, Any] = {"type": "integer", "minimum": 0}


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

_STREAM_EVENTS = [
    "message_start",
    "ping",
    "content_block_start",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
    "error",
]


def _json_text(schema: dict[str, Any]) -> dict[str, Any]:
    """A string holding a JSON document that ``schema`` describes."""
    return {"type": "string", "contentMediaType": "application/json", "contentSchema": schema}


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
            "choices": {"type": "array", "minItems": 1, "maxItems": 1, "items": {
                "type": "object", "required": ["index", "message", "finish_reason"],
                "properties": {
                    "index": {"const": 0},
                    "message": {"type": "object", "required": ["role", "content"], "properties": {
                        "role": {"const": "assistant"},
                        "content": {"type": ["string", "null"]},
                        "tool_calls": {"type": "array", "items": _ref("OutToolCall")}}},
                    "finish_reason": {"enum": ["stop", "length", "tool_calls",
                                               "content_filter"]}}}},
            "usage": _ref("ChatUsage"),
        },
    },
    "OutToolCall": {
        "type": "object", "required": ["id", "type", "function"],
        "properties": {"id": {"type": "string"}, "type": {"const": "function"},
                       "function": {"type": "object", "required": ["name", "arguments"],
                                    "properties": {"name": {"type": "string"},
                                                   "arguments": {"type": "string"}}}},
    },
    "ChatUsage": {
        "type": "object", "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
        "properties": {name: _COUNT for name in (
            "prompt_tokens", "completion_tokens", "total_tokens")},
    },
    "Message": {
        "type": "object",
        "required": ["id", "type", "role", "model", "content", "stop_reason", "usage"],
        "properties": {
            "id": {"type": "string"}, "type": {"const": "message"},
            "role": {"const": "assistant"}, "model": {"type": "string"},
            "content": {"type": "array", "items": {"anyOf": [
                {"type": "object", "required": ["type", "text"],
                 "properties": {"type": {"const": "text"}, "text": {"type": "string"}}},
                {"type": "object", "required": ["type", "id", "name", "input"],
                 "properties": {"type": {"const": "tool_use"}, "id": {"type": "string"},
                                "name": {"type": "string"}, "input": _OBJECT}},
            ]}},
            "stop_reason": {"enum": ["end_turn", "max_tokens", "stop_sequence", "tool_use",
                                     "refusal"]},
            "usage": {"type": "object", "required": ["input_tokens", "output_tokens"],
                      "properties": {name: _COUNT for name in (
                          "input_tokens", "output_tokens", "cache_creation_input_tokens",
                          "cache_read_input_tokens")}},
        },
    },
    "ChatStreamEvent": {
        "description": "One server-sent event: a chat.completion.chunk, an error, or [DONE]",
        "type": "object", "required": ["data"],
        "properties": {"data": {"anyOf": [{"const": "[DONE]"}, _json_text({"anyOf": [
            _ref("ChatChunk"), _ref("Error")]})]}},
    },
    "ChatChunk": {
        "type": "object", "required": ["id", "object", "created", "model", "choices"],
        "properties": {
            "id": {"type": "string"}, "object": {"const": "chat.completion.chunk"},
            "created": {"type": "integer"}, "model": {"type": "string"},
            "choices": {"type": "array", "maxItems": 1, "items": {
                "type": "object", "required": ["index", "delta", "finish_reason"],
                "properties": {
                    "index": {"const": 0}, "delta": _OBJECT,
                    "finish_reason": {"enum": ["stop", "length", "tool_calls",
                                               "content_filter", None]}}}},
            "usage": {"anyOf": [_ref("ChatUsage"), {"type": "null"}]},
        },
    },
    "MessageStreamEvent": {
        "description": "One server-sent event of Anthropic's Messages stream",
        "type": "object", "required": ["event", "data"],
        "properties": {"event": {"enum": _STREAM_EVENTS}, "data": _json_text({
            "type": "object", "required": ["type"],
            "properties": {"type": {"enum": _STREAM_EVENTS}}})},
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


# -- what is checked after decoding ------------------------------------------------------

_TEXT: dict[str, Any] = {"type": "string"}
_NAME: dict[str, Any] = {"type": "string", "minLength": 1}
_NULL: dict[str, Any] = {"type": "null"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, _NULL]}


def _number(low: float, high: float) -> dict[str, Any]:
    return _nullable({"type": "number", "minimum": low, "maximum": high})


def _closed(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties,
            "additionalProperties": False}  # fmt: skip


_OPENAI_PART = {"anyOf": [
    {"type": "object", "required": ["type", "text"], "properties": {
        "type": {"const": "text"}, "text": _TEXT, "cache_control": _ref("CacheControl")}},
    {"type": "object", "required": ["type", "image_url"], "properties": {
        "type": {"const": "image_url"},
        "image_url": {"type": "object", "required": ["url"], "properties": {"url": _TEXT}}}},
]}  # fmt: skip
_OPENAI_CONTENT = {"anyOf": [_TEXT, {"type": "array", "items": _OPENAI_PART}]}

_OPENAI_REQUEST: dict[str, Any] = {
    "ChatMessage": {
        "description": "An OpenAI message (llmrelay.inputs checks it): 'tool' messages name "
                       "the call they answer; only an assistant message carries tool calls",
        "anyOf": [
            _closed(["role"], role={"enum": ["system", "developer", "user"]}, name=_TEXT,
                    content={"anyOf": [*_OPENAI_CONTENT["anyOf"], _NULL]}),
            _closed(["role"], role={"const": "assistant"}, name=_TEXT,
                    content={"anyOf": [*_OPENAI_CONTENT["anyOf"], _NULL]},
                    tool_calls={"type": "array", "items": _ref("InToolCall")}),
            _closed(["role", "tool_call_id"], role={"const": "tool"}, name=_TEXT,
                    content={"anyOf": [*_OPENAI_CONTENT["anyOf"], _NULL]},
                    tool_call_id=_NAME),
        ],
    },
    "InToolCall": {"type": "object", "required": ["id", "function"], "properties": {
        "id": _NAME, "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": _NAME, "arguments": {"anyOf": [_TEXT, _OBJECT, _NULL]}}}}},
    "FunctionTool": {"type": "object", "required": ["function"], "properties": {
        "type": {"const": "function"},
        "function": {"type": "object", "required": ["name"], "properties": {
            "name": _NAME, "description": {"anyOf": [_TEXT, _NULL]},
            "parameters": {"anyOf": [_OBJECT, _NULL]}}}},
        "description": "tool names are unique within a request"},
    "ResponseFormat": {"anyOf": [
        {"type": "object", "required": ["type"], "properties": {
            "type": {"enum": ["text", "json_object"]}}},
        {"type": "object", "required": ["type", "json_schema"], "properties": {
            "type": {"const": "json_schema"},
            "json_schema": {"type": "object", "required": ["schema"], "properties": {
                "name": {"anyOf": [_TEXT, _NULL]}, "schema": _OBJECT,
                "strict": {"type": ["boolean", "null"]}}}}},
    ]},
}  # fmt: skip
_CHAT_FIELDS: dict[str, Any] = {
    "messages": {"type": "array", "minItems": 1, "items": _ref("ChatMessage")},
    "n": {"enum": [1, None]},
    "max_tokens": _nullable({"type": "integer", "minimum": 1}),
    "max_completion_tokens": _nullable({"type": "integer", "minimum": 1}),
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "stop": _nullable({"anyOf": [_TEXT, {"type": "array", "items": _TEXT}]}),
    "tools": _nullable({"type": "array", "items": _ref("FunctionTool")}),
    "tool_choice": {**_nullable({"anyOf": [
        _NAME,
        {"type": "object", "required": ["type", "function"], "properties": {
            "type": {"const": "function"},
            "function": {"type": "object", "required": ["name"], "properties": {
                "name": _NAME}}}},
    ]}), "description": "'auto', 'none', 'required' (tools must be given) or the name of "
                        "one of the tools"},
    "response_format": _nullable(_ref("ResponseFormat")),
    "metadata": _nullable({"type": "object", "additionalProperties": _TEXT}),
}  # fmt: skip


def _blocks(*names: str) -> dict[str, Any]:
    return {"anyOf": [_TEXT, {"type": "array", "minItems": 1,
                              "items": {"anyOf": [_ref(n) for n in names]}}]}  # fmt: skip


_ANTHROPIC_REQUEST: dict[str, Any] = {
    "UserMessage": _closed(
        ["role", "content"],
        role={"const": "user"},
        content=_blocks("TextBlock", "ImageBlock", "ToolResultBlock"),
    ),
    "AssistantMessage": _closed(
        ["role", "content"],
        role={"const": "assistant"},
        content=_blocks("TextBlock", "ImageBlock", "ToolUseBlock"),
    ),
}
_MESSAGES_FIELDS: dict[str, Any] = {
    "max_tokens": {"type": "integer", "minimum": 1},
    "messages": {
        "type": "array",
        "minItems": 1,
        "items": {"anyOf": [_ref("UserMessage"), _ref("AssistantMessage")]},
    },
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "tool_choice": {
        **_nullable(_ref("ToolChoice")),
        "description": "type 'any' or 'tool' needs tools; 'tool' names one of them",
    },
}


_KEY_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "maxLength": NAME_MAX_CHARS},
    "groups": _nullable({"type": "array", "items": {"type": "string", "pattern": r"\S"}}),
    "rpm": _nullable({"type": "integer", "minimum": 1}),
    "tpm": _nullable({"type": "integer", "minimum": 1}),
    "expires_at": _nullable({"type": "number", "exclusiveMinimum": 0}),
}
"""What :meth:`KeySpec.check` refuses."""


def _keeping_default(schema: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "default": given["default"]} if "default" in given else schema


def _lay_over(schemas: dict[str, Any]) -> dict[str, Any]:
    """``schemas`` (as msgspec writes them) with what is checked after decoding."""
    out = {**schemas, **_OPENAI_REQUEST, **_ANTHROPIC_REQUEST}
    for name, fields in (("ChatBody", _CHAT_FIELDS), ("MessagesBody", _MESSAGES_FIELDS),
                         ("KeySpec", _KEY_FIELDS), ("KeyChanges", _KEY_FIELDS)):  # fmt: skip
        given = schemas[name]["properties"]
        laid = {field: _keeping_default(schema, given[field]) for field, schema in fields.items()}
        out[name] = {**schemas[name], "properties": {**given, **laid}}
    source = schemas["ImageSource"]
    out["ImageSource"] = {"anyOf": [
        {**source, "required": ["type", "url"], "properties": {
            **source["properties"], "type": {"const": "url"}, "url": _NAME}},
        {**source, "required": ["type", "media_type", "data"], "properties": {
            **source["properties"], "type": {"const": "base64"}, "media_type": _NAME,
            "data": _NAME}},
    ]}  # fmt: skip
    result = schemas["ToolResultBlock"]
    out["ToolResultBlock"] = {**result, "properties": {
        **result["properties"], "tool_use_id": _NAME, "content": {"anyOf": [_TEXT, {
            "type": "array", "items": _ref("TextBlock")}], "default": ""}}}  # fmt: skip
    use = schemas["ToolUseBlock"]
    out["ToolUseBlock"] = {**use, "properties": {**use["properties"], "id": _NAME}}
    choice = schemas["ToolChoice"]
    out["ToolChoice"] = {"anyOf": [
        {**choice, "properties": {**choice["properties"],
                                  "type": {"enum": ["auto", "any", "none"]}}},
        {**choice, "required": ["type", "name"], "properties": {
            **choice["properties"], "type": {"const": "tool"}, "name": _NAME}},
    ]}  # fmt: skip
    budget = schemas["KeyBudget"]
    out["KeyBudget"] = {**budget, "properties": {
        **budget["properties"], "usd": {"type": "number", "minimum": 0}}}  # fmt: skip
    return out


def _operation(summary: str, ok: dict[str, Any], body: str | None = None,
               status: str = "200", auth: bool = True) -> dict[str, Any]:  # fmt: skip
    operation: dict[str, Any] = {"summary": summary, "responses": {status: ok, **_ERRORS}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(body)}}}  # fmt: skip
    if not auth:
        operation["security"] = []
    return operation


def _ready() -> dict[str, Any]:
    """``/ready`` answers its report with 503 too, when it is not ready."""
    operation = _operation("Readiness: the key store and a reachable deployment per group",
                           _json(_ref("Status"), "ready"), auth=False)  # fmt: skip
    operation["responses"]["503"] = _json(_ref("Status"), "not ready, and why")
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
        "content": {
            "application/json": {"schema": _ref("ChatCompletion")},
            "text/event-stream": {"schema": _ref("ChatStreamEvent")},
        },
    }
    message_ok = {
        "description": "the answer (server-sent events when stream is true)",
        "content": {
            "application/json": {"schema": _ref("Message")},
            "text/event-stream": {"schema": _ref("MessageStreamEvent")},
        },
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
        "/ready": {"get": _ready()},
        "/metrics": {"get": _operation("Prometheus metrics", {
            "description": "the exposition",
            "content": {"text/plain": {"schema": {"type": "string"}}}})},
        "/openapi.json": {"get": _operation(
            "This description", _json(_OBJECT, "OpenAPI"), auth=False)},
        "/admin/keys": {
            "get": _operation("List keys (all=true: with revoked ones)",
                              _json(_ref("KeyList"), "keys")),
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
            "schemas": {**_lay_over(schemas), **_COMPONENTS},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"}},
        },
        "security": [{"bearer": []}, {"apiKey": []}],
    })  # fmt: skip


__all__ = ["document"]
