"""What ``SmartLLM.invoke`` and friends accept: our types, and what the OpenAI SDK takes.

A prompt is a string, a list of messages (:class:`~llmrelay.types.Message` or OpenAI's
message dicts: content as a string or parts, assistant ``tool_calls``, ``tool`` messages
with ``tool_call_id``) or a :class:`~llmrelay.types.ChatRequest`. Request parameters are
keywords, in OpenAI's shapes or ours: ``tools``, ``tool_choice``, ``response_format``,
``max_tokens`` / ``max_completion_tokens``, ``temperature``, ``top_p``, ``stop``, ``user``,
``metadata`` and ``system``. ``None`` means "not given", as in the OpenAI SDK.

Shapes and types are checked here, before anything is routed, and a mistake is a
:class:`~llmrelay.errors.BadRequest` naming the field, what was expected and what came
(``temperature: expected a number between 0 and 2, got 'hot'``). Values of the right type
are the router's to judge (:func:`llmrelay.router.validate`), so a refused value is
counted like any other routed request. A plain string with no parameters is turned into a
request with no checking at all: the common call costs nothing extra.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, TypeVar, get_args

import msgspec

from llmrelay.errors import BadRequest, shorten
from llmrelay.types import (
    CacheControl,
    ChatRequest,
    ContentPart,
    ImagePart,
    Message,
    ResponseFormat,
    Role,
    TextPart,
    ToolCall,
    ToolSpec,
)

T = TypeVar("T")
Prompt = str | ChatRequest | Sequence[Message] | Sequence[Mapping[str, Any]]

_ROLES = frozenset(get_args(Role))
_ROLE_NAMES: Mapping[str, Role] = MappingProxyType(
    {"system": "system", "developer": "system", "user": "user", "assistant": "assistant",
     "tool": "tool"}
)  # fmt: skip
"""Role names as given → ours; ``developer`` is OpenAI's newer name for the system role."""
_COMMON_ROLES = ("user", "system", "assistant")
_MESSAGE_KEYS = frozenset(("role", "content", "tool_calls", "tool_call_id", "name"))
_IGNORED_WHEN_EMPTY = frozenset(("refusal", "annotations", "audio", "function_call"))
"""Keys of a message the OpenAI SDK returns that carry nothing to send back when empty."""
_TOOL_CHOICE_WORDS = frozenset(("auto", "none", "required"))
_encode_json = msgspec.json.Encoder().encode


def to_request(prompt: object, params: Mapping[str, Any]) -> ChatRequest:
    """``prompt`` and request keywords as one checked :class:`ChatRequest`."""
    if type(prompt) is str and not params:
        return ChatRequest(messages=[Message(role="user", content=prompt)])
    if "messages" in params:
        if prompt is not None:
            raise BadRequest("give the prompt or messages=, not both")
        prompt, params = params["messages"], {k: v for k, v in params.items() if k != "messages"}
    fields = _fields(params) if params else {}
    if isinstance(prompt, str):
        request = ChatRequest(messages=[Message(role="user", content=str(prompt))], **fields)
    elif isinstance(prompt, ChatRequest):
        request = checked(prompt)
        if fields:
            request = msgspec.structs.replace(request, **fields)
    elif isinstance(prompt, Sequence) and not isinstance(prompt, bytes | bytearray):
        request = ChatRequest(messages=_messages(prompt), **fields)
    elif prompt is None:
        raise BadRequest("prompt: required (a string, a list of messages or a ChatRequest)")
    else:
        raise BadRequest(
            "prompt: expected a string, a list of messages or a ChatRequest, "
            f"got {type(prompt).__name__}"
        )
    if request.tool_choice is not None:
        _check_tool_choice(request.tool_choice, request.tools)
    return request


def checked(request: ChatRequest) -> ChatRequest:
    """``request`` with its field types checked (message dicts and OpenAI shapes converted)."""
    messages = request.messages
    if type(messages) is not list:
        raise BadRequest(f"messages: expected a list of messages, got {type(messages).__name__}")
    if not all(type(m) is Message and _plain(m) for m in messages):
        messages = _unchanged(messages, _messages(messages))
    changes: dict[str, Any] = {} if messages is request.messages else {"messages": messages}
    for name, check in _PARAMS.items():
        value = getattr(request, name, None)
        if value is not None:
            fixed = check(value, name)
            if fixed is not value:
                changes[name] = fixed
    return msgspec.structs.replace(request, **changes) if changes else request


# -- request parameters --------------------------------------------------------------------


def _fields(params: Mapping[str, Any]) -> dict[str, Any]:
    fields: dict[str, Any] = {}
    for name, value in params.items():
        check = _PARAMS.get(name) or _ALIASES.get(name)
        if check is None:
            raise BadRequest(
                f"unknown request parameter {name!r} (accepted: {', '.join(_ACCEPTED)})"
            )
        if value is not None:
            fields[_TARGET.get(name, name)] = check(value, name)
    if "max_tokens" in params and "max_completion_tokens" in params:
        given = params["max_tokens"], params["max_completion_tokens"]
        if None not in given and given[0] != given[1]:
            raise BadRequest("max_tokens and max_completion_tokens: give one of them")
    return fields


def _number(low: float, high: float) -> Callable[[Any, str], float]:
    def check(value: Any, where: str) -> float:
        if type(value) not in (int, float) or math.isnan(value):
            raise BadRequest(f"{where}: expected a number between {low:g} and {high:g}, "
                             f"got {_got(value)}")  # fmt: skip
        return float(value)  # a float is returned as it is

    return check


def _count(value: Any, where: str) -> int:
    if type(value) is not int:
        raise BadRequest(f"{where}: expected a positive integer, got {_got(value)}")
    return value


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise BadRequest(f"{where}: expected a string, got {_got(value)}")
    return value


def _stop(value: Any, where: str) -> list[str]:
    if isinstance(value, str):
        return [value]
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{where}: expected a string or a list of strings, got {_got(value)}")
    for i, item in enumerate(value):
        _text(item, f"{where}[{i}]")
    return value if type(value) is list else list(value)


def _metadata(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected a mapping of strings to strings, got {_got(value)}")
    for key, item in value.items():
        _text(key, f"{where} key")
        _text(item, f"{where}.{key}")
    return value if type(value) is dict else dict(value)


def _tools(value: Any, where: str) -> list[ToolSpec]:
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{where}: expected a list of tools, got {_got(value)}")
    tools = [_tool(item, f"{where}[{i}]") for i, item in enumerate(value)]
    seen: set[str] = set()
    for i, tool in enumerate(tools):
        if tool.name in seen:
            raise BadRequest(f"{where}[{i}]: a second tool named {tool.name!r}")
        seen.add(tool.name)
    return _unchanged(value, tools)


def _tool(value: Any, where: str) -> ToolSpec:
    if isinstance(value, ToolSpec):
        if not value.name:
            raise BadRequest(f"{where}.name: required")
        _text(value.name, f"{where}.name")
        if not isinstance(value.parameters, dict):
            raise BadRequest(f"{where}.parameters: expected a JSON schema object, "
                             f"got {_got(value.parameters)}")  # fmt: skip
        return value
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected a tool ({{'type': 'function', 'function': "
                         f"{{...}}}} or a ToolSpec), got {_got(value)}")  # fmt: skip
    kind = value.get("type", "function")
    if kind != "function":
        raise BadRequest(f"{where}.type: expected 'function', got {_got(kind)}")
    function: Any = value
    if "function" in value:
        where, function = f"{where}.function", value["function"]
        if not isinstance(function, Mapping):
            raise BadRequest(f"{where}: expected a mapping, got {_got(function)}")
    name = function.get("name")
    if not name:
        raise BadRequest(f"{where}.name: required")
    _text(name, f"{where}.name")
    description = function.get("description") or ""
    _text(description, f"{where}.description")
    parameters = function.get("parameters")
    if parameters is None:
        return ToolSpec(name=name, description=description)
    if not isinstance(parameters, Mapping):
        raise BadRequest(f"{where}.parameters: expected a JSON schema object, "
                         f"got {_got(parameters)}")  # fmt: skip
    return ToolSpec(name=name, description=description, parameters=dict(parameters))


def _tool_choice(value: Any, where: str) -> str:
    if isinstance(value, str) and value:
        return value
    if isinstance(value, Mapping) and value.get("type") == "function":
        function = value.get("function", value)
        name = function.get("name") if isinstance(function, Mapping) else None
        if isinstance(name, str) and name:
            return name
        raise BadRequest(f"{where}.function.name: required")
    raise BadRequest(
        f"{where}: expected 'auto', 'none', 'required', a tool name or "
        f"{{'type': 'function', 'function': {{'name': ...}}}}, got {_got(value)}"
    )


def _check_tool_choice(choice: str, tools: list[ToolSpec] | None) -> None:
    if choice in ("auto", "none"):
        return
    if not tools:
        raise BadRequest(f"tool_choice: {choice!r} needs tools, and none were given")
    if choice not in _TOOL_CHOICE_WORDS and all(t.name != choice for t in tools):
        names = ", ".join(t.name for t in tools)
        raise BadRequest(f"tool_choice: no tool named {choice!r} (tools: {names})")


def _response_format(value: Any, where: str) -> ResponseFormat | None:
    if isinstance(value, ResponseFormat):
        return value
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected {{'type': 'text' | 'json_object' | 'json_schema'"
                         f", ...}} or a ResponseFormat, got {_got(value)}")  # fmt: skip
    kind = value.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ResponseFormat(type="json_object")
    if kind != "json_schema":
        raise BadRequest(f"{where}.type: expected 'text', 'json_object' or 'json_schema', "
                         f"got {_got(kind)}")  # fmt: skip
    spec = value.get("json_schema")
    if not isinstance(spec, Mapping):
        raise BadRequest(f"{where}.json_schema: expected {{'name': ..., 'schema': {{...}}}}, "
                         f"got {_got(spec)}")  # fmt: skip
    schema = spec.get("schema")
    if not isinstance(schema, Mapping):
        got = "nothing" if schema is None else _got(schema)
        raise BadRequest(f"{where}.json_schema.schema: expected a JSON schema object, got {got}")
    name = _text(spec.get("name") or "response", f"{where}.json_schema.name")
    strict = spec.get("strict") or False  # OpenAI's default: not strict
    if not isinstance(strict, bool):
        raise BadRequest(f"{where}.json_schema.strict: expected true or false, got {_got(strict)}")
    return ResponseFormat(type="json_schema", json_schema=dict(schema), name=name, strict=strict)


def _tags(value: Any, where: str) -> list[str]:
    if isinstance(value, str) or not isinstance(value, list | tuple):
        raise BadRequest(f"{where}: expected a list of strings, got {_got(value)}")
    return _unchanged(value, [_text(t, f"{where}[{i}]") for i, t in enumerate(value)])


_PARAMS: Mapping[str, Callable[[Any, str], Any]] = MappingProxyType({
    "system": _text,
    "max_tokens": _count,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "stop": _stop,
    "tools": _tools,
    "tool_choice": _tool_choice,
    "response_format": _response_format,
    "user": _text,
    "metadata": _metadata,
    "key": _text,
    "tags": _tags,
})  # fmt: skip
"""Each request field a caller may set, and its check (which may convert the value)."""
_ALIASES: Mapping[str, Callable[[Any, str], Any]] = MappingProxyType(
    {"max_completion_tokens": _count}
)
_TARGET = MappingProxyType({"max_completion_tokens": "max_tokens"})
_ACCEPTED = (*_PARAMS, *_ALIASES, "messages")


# -- messages -------------------------------------------------------------------------------


def _plain(message: Message) -> bool:
    """Whether a :class:`Message` is what its type says (msgspec does not check on init)."""
    return type(message.content) is str and message.role in _COMMON_ROLES


def _messages(value: Sequence[Any]) -> list[Message]:
    return [_message(item, f"messages[{i}]") for i, item in enumerate(value)]


def _message(value: Any, where: str) -> Message:
    if isinstance(value, Message):
        return _checked_message(value, where)
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected a message (a Message, or a dict with 'role' and "
                         f"'content'), got {_got(value)}")  # fmt: skip
    given = value.get("role")
    role = _ROLE_NAMES.get(given) if isinstance(given, str) else None
    content = value.get("content")
    if type(content) is str and len(value) == 2 and role in _COMMON_ROLES:
        return Message(role=role, content=content)  # the common shape, nothing more to check
    if given is None:
        raise BadRequest(f"{where}.role: required")
    if role is None:
        raise BadRequest(f"{where}.role: expected one of {', '.join(sorted(_ROLES))}, "
                         f"got {_got(given)}")  # fmt: skip
    for key in value:
        if key not in _MESSAGE_KEYS and not (key in _IGNORED_WHEN_EMPTY and not value[key]):
            raise BadRequest(f"{where}: unknown message key {str(key)!r} "
                             f"(accepted: {', '.join(sorted(_MESSAGE_KEYS))})")  # fmt: skip
    tool_calls = value.get("tool_calls")
    if tool_calls is not None and role != "assistant":
        raise BadRequest(f"{where}.tool_calls: only an assistant message carries tool calls")
    tool_call_id = value.get("tool_call_id")
    if role == "tool" and not tool_call_id:
        raise BadRequest(f"{where}.tool_call_id: required for a tool message")
    name = value.get("name")
    return Message(
        role=role,
        content=_content(content, f"{where}.content"),
        tool_calls=_tool_calls(tool_calls, f"{where}.tool_calls") if tool_calls else None,
        tool_call_id=None if tool_call_id is None else _text(tool_call_id, f"{where}.tool_call_id"),
        name=None if name is None else _text(name, f"{where}.name"),
    )


def _checked_message(message: Message, where: str) -> Message:
    if not isinstance(message.role, str) or message.role not in _ROLES:
        raise BadRequest(f"{where}.role: expected one of {', '.join(sorted(_ROLES))}, "
                         f"got {_got(message.role)}")  # fmt: skip
    if message.role == "tool" and not message.tool_call_id:
        raise BadRequest(f"{where}.tool_call_id: required for a tool message")
    content = _content(message.content, f"{where}.content")
    calls = message.tool_calls
    if calls is not None:
        calls = _tool_calls(calls, f"{where}.tool_calls")
    if content is message.content and calls is message.tool_calls:
        return message
    return msgspec.structs.replace(message, content=content, tool_calls=calls)


def _content(value: Any, where: str) -> str | list[ContentPart]:
    if type(value) is str:
        return value
    if value is None:
        return ""
    if isinstance(value, str):
        return str(value)
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{where}: expected a string or a list of parts, got {_got(value)}")
    return _unchanged(value, [_part(item, f"{where}[{i}]") for i, item in enumerate(value)])


def _part(value: Any, where: str) -> ContentPart:
    if isinstance(value, TextPart | ImagePart):
        return value
    if isinstance(value, str):
        return TextPart(text=value)
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected a content part, got {_got(value)}")
    kind = value.get("type")
    if kind == "text":
        text = _text(value.get("text"), f"{where}.text")
        marker = value.get("cache_control")
        if marker is None:
            return TextPart(text=text)
        return TextPart(text=text, cache_control=_cache_control(marker, f"{where}.cache_control"))
    if kind == "image_url":
        image = value.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return ImagePart(url=_text(url, f"{where}.image_url.url"))
    raise BadRequest(f"{where}.type: expected 'text' or 'image_url', got {_got(kind)}")


def _cache_control(value: Any, where: str) -> CacheControl:
    """Anthropic's ``{"type": "ephemeral"}`` (with an optional ``ttl`` of 5m or 1h)."""
    try:
        return msgspec.convert(value, CacheControl)
    except msgspec.ValidationError as exc:
        raise BadRequest(f"{where}: expected {{'type': 'ephemeral'}} with an optional 'ttl' "
                         f"of '5m' or '1h' ({exc})") from None  # fmt: skip


def _tool_calls(value: Any, where: str) -> list[ToolCall]:
    if not isinstance(value, list | tuple):
        raise BadRequest(f"{where}: expected a list of tool calls, got {_got(value)}")
    return _unchanged(value, [_tool_call(item, f"{where}[{i}]") for i, item in enumerate(value)])


def _tool_call(value: Any, where: str) -> ToolCall:
    if isinstance(value, ToolCall):
        return value
    if not isinstance(value, Mapping):
        raise BadRequest(f"{where}: expected {{'id': ..., 'type': 'function', 'function': "
                         f"{{'name': ..., 'arguments': ...}}}}, got {_got(value)}")  # fmt: skip
    call_id = value.get("id")
    if not call_id:
        raise BadRequest(f"{where}.id: required")
    function = value.get("function")
    if not isinstance(function, Mapping):
        got = "nothing" if function is None else _got(function)
        raise BadRequest(f"{where}.function: expected {{'name': ..., 'arguments': ...}}, got {got}")
    name = function.get("name")
    if not name:
        raise BadRequest(f"{where}.function.name: required")
    arguments = function.get("arguments")
    if isinstance(arguments, Mapping):  # OpenAI sends JSON text; a mapping is encoded for it
        arguments = _encode_json(arguments).decode()
    elif arguments is None:
        arguments = "{}"
    return ToolCall(
        id=_text(call_id, f"{where}.id"),
        name=_text(name, f"{where}.function.name"),
        arguments=_text(arguments, f"{where}.function.arguments"),
    )


def _unchanged(given: object, checked: list[T]) -> list[T]:
    """``given`` itself when checking kept each of its items: nothing is copied needlessly."""
    if type(given) is list and all(a is b for a, b in zip(checked, given, strict=True)):
        return given
    return checked


def _got(value: object) -> str:
    """What came, briefly: a short value as written, anything bigger by its type."""
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(shorten(value, 40))
    return type(value).__name__


__all__ = ["Prompt", "checked", "to_request"]
