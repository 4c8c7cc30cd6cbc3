"""What SmartLLM accepts: our types and the OpenAI SDK's shapes; mistakes are BadRequests."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay import inputs as inputs_module
from llmrelay.errors import BadRequest
from llmrelay.inputs import checked, to_request
from llmrelay.testing import SimulatorHandle
from llmrelay.types import (
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    TextPart,
    ToolCall,
    ToolSpec,
)

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
WEATHER_SPEC = ToolSpec(
    name="get_weather",
    description="The weather in a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}},
)


def test_a_plain_string_becomes_one_user_message_without_any_checking(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The common call skips every check: it works even with the checks made to fail."""

    def refuse(*_: Any) -> Any:
        raise AssertionError("checked")

    monkeypatch.setattr(inputs_module, "_fields", refuse)
    monkeypatch.setattr(inputs_module, "checked", refuse)
    monkeypatch.setattr(inputs_module, "_messages", refuse)
    assert to_request("hi", {}) == ChatRequest(messages=[Message(role="user", content="hi")])


def test_openai_message_dicts_become_messages() -> None:
    """Content strings and parts, assistant tool calls, tool answers, the developer role."""
    request = to_request(
        [
            {"role": "developer", "content": "be brief"},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this?"},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x/cat.png", "detail": "low"},
                    },
                ],
            },
            {
                "role": "assistant",
                "content": None,
                "refusal": None,
                "tool_calls": [
                    {
                        "id": "call_1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": "sunny"},
        ],
        {},
    )
    assert request.messages == [
        Message(role="system", content="be brief"),
        Message(
            role="user",
            content=[TextPart(text="what is this?"), ImagePart(url="https://x/cat.png")],
        ),
        Message(
            role="assistant",
            content="",
            tool_calls=[ToolCall(id="call_1", name="get_weather", arguments='{"city": "Paris"}')],
        ),
        Message(role="tool", content="sunny", tool_call_id="call_1"),
    ]


def test_tool_call_arguments_given_as_a_mapping_are_sent_as_json_text() -> None:
    """OpenAI carries arguments as JSON text; a mapping is encoded to it."""
    request = to_request(
        [
            {"role": "user", "content": "weather?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": {"city": "Oslo"}},
                    }
                ],
            },
        ],
        {},
    )
    assert request.messages[1].tool_calls == [
        ToolCall(id="c", name="get_weather", arguments='{"city":"Oslo"}')
    ]


def test_openai_parameters_become_request_fields() -> None:
    """tools, tool_choice, response_format, max_completion_tokens, stop, user, metadata."""
    request = to_request(
        "weather in Paris?",
        {
            "tools": [WEATHER],
            "tool_choice": {"type": "function", "function": {"name": "get_weather"}},
            "response_format": {"type": "json_object"},
            "max_completion_tokens": 50,
            "temperature": 0,
            "top_p": 0.5,
            "stop": "END",
            "user": "u-1",
            "metadata": {"team": "search"},
            "system": "be brief",
        },
    )
    assert request == ChatRequest(
        messages=[Message(role="user", content="weather in Paris?")],
        tools=[WEATHER_SPEC],
        tool_choice="get_weather",
        response_format=ResponseFormat(type="json_object"),
        max_tokens=50,
        temperature=0,
        top_p=0.5,
        stop=["END"],
        user="u-1",
        metadata={"team": "search"},
        system="be brief",
    )


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ({"type": "text"}, None),
        ({"type": "json_object"}, ResponseFormat(type="json_object")),
        (
            {"type": "json_schema", "json_schema": {"name": "city", "schema": {"type": "object"},
                                                    "strict": True}},
            ResponseFormat(type="json_schema", json_schema={"type": "object"}, name="city",
                           strict=True),
        ),
        (
            {"type": "json_schema", "json_schema": {"schema": {"type": "object"}}},
            ResponseFormat(type="json_schema", json_schema={"type": "object"}, strict=False),
        ),
        (ResponseFormat(type="json_object"), ResponseFormat(type="json_object")),
    ],
)  # fmt: skip
def test_response_formats_in_openai_shapes_and_ours(given: Any, expected: Any) -> None:
    """Text is no constraint; json_schema without strict is not strict, as at OpenAI."""
    assert to_request("hi", {"response_format": given}).response_format == expected


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ("get_weather", "get_weather"),
        ({"type": "function", "function": {"name": "get_weather"}}, "get_weather"),
        ({"type": "function", "name": "get_weather"}, "get_weather"),
    ],
)
def test_tool_choices_in_openai_shapes_and_ours(choice: Any, expected: str) -> None:
    """Every tool_choice OpenAI takes names the same choice."""
    assert to_request("hi", {"tools": [WEATHER], "tool_choice": choice}).tool_choice == expected


def test_tools_in_both_shapes_and_none_means_not_given() -> None:
    """ToolSpec and OpenAI tool dicts mix; a None parameter is left out, as in the SDK."""
    request = to_request("hi", {"tools": [WEATHER_SPEC, {"type": "function", "function": {
        "name": "now"}}], "temperature": None})  # fmt: skip
    assert request.tools == [WEATHER_SPEC, ToolSpec(name="now")]
    assert request.temperature is None


def test_messages_may_be_given_by_keyword() -> None:
    """messages= works as in client.chat.completions.create."""
    request = to_request(None, {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 9})
    assert request == ChatRequest(messages=[Message(role="user", content="hi")], max_tokens=9)


@pytest.mark.parametrize(
    ("prompt", "params", "message"),
    [
        ("hi", {"temperature": "hot"}, "temperature: expected a number between 0 and 2, got 'hot'"),
        ("hi", {"top_p": [1]}, "top_p: expected a number between 0 and 1, got list"),
        ("hi", {"max_tokens": 2.5}, "max_tokens: expected a positive integer, got 2.5"),
        ("hi", {"max_tokens": True}, "max_tokens: expected a positive integer, got True"),
        (123, {}, "prompt: expected a string, a list of messages or a ChatRequest, got int"),
        (None, {}, "prompt: required (a string, a list of messages or a ChatRequest)"),
        ("hi", {"messages": []}, "give the prompt or messages=, not both"),
        ("hi", {"stop": ["a", 3]}, "stop[1]: expected a string, got 3"),
        ("hi", {"metadata": {"a": 1}}, "metadata.a: expected a string, got 1"),
        ("hi", {"user": {"id": 1}}, "user: expected a string, got dict"),
        ("hi", {"tools": [{"type": "function", "function": {}}]},
         "tools[0].function.name: required"),
        ("hi", {"tools": [{"type": "retrieval"}]},
         "tools[0].type: expected 'function', got 'retrieval'"),
        ("hi", {"tools": {"name": "x"}}, "tools: expected a list of tools, got dict"),
        ("hi", {"tools": [WEATHER, WEATHER]}, "tools[1]: a second tool named 'get_weather'"),
        ("hi", {"tools": [{"function": {"name": "f", "parameters": []}}]},
         "tools[0].function.parameters: expected a JSON schema object, got list"),
        ("hi", {"tool_choice": "get_time", "tools": [WEATHER]},
         "tool_choice: no tool named 'get_time' (tools: get_weather)"),
        ("hi", {"tool_choice": "required"}, "tool_choice: 'required' needs tools, and none were given"),
        ("hi", {"tool_choice": 1}, "tool_choice: expected 'auto', 'none', 'required', a tool name"),
        ("hi", {"response_format": {"type": "xml"}},
         "response_format.type: expected 'text', 'json_object' or 'json_schema', got 'xml'"),
        ("hi", {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
         "response_format.json_schema.schema: expected a JSON schema object, got nothing"),
        ("hi", {"max_tokens": 5, "max_completion_tokens": 6},
         "max_tokens and max_completion_tokens: give one of them"),
        ([{"role": "robot", "content": "x"}], {},
         "messages[0].role: expected one of assistant, system, tool, user, got 'robot'"),
        ([{"content": "x"}], {}, "messages[0].role: required"),
        ([{"role": "tool", "content": "x"}], {},
         "messages[0].tool_call_id: required for a tool message"),
        ([{"role": "user", "content": [{"type": "input_audio"}]}], {},
         "messages[0].content[0].type: expected 'text' or 'image_url', got 'input_audio'"),
        ([{"role": "user", "content": 5}], {},
         "messages[0].content: expected a string or a list of parts, got 5"),
        ([{"role": "user", "content": "x", "contents": "y"}], {},
         "messages[0]: unknown message key 'contents'"),
        ([{"role": "user", "tool_calls": []}], {},
         "messages[0].tool_calls: only an assistant message carries tool calls"),
        ([{"role": "assistant", "tool_calls": [{"type": "function"}]}], {},
         "messages[0].tool_calls[0].id: required"),
        (["hello"], {}, "messages[0]: expected a message (a Message, or a dict with 'role' and "
                        "'content'), got 'hello'"),
        (b"hi", {}, "prompt: expected a string, a list of messages or a ChatRequest, got bytes"),
    ],
)  # fmt: skip
def test_mistakes_name_the_field_what_was_expected_and_what_came(
    prompt: Any, params: dict[str, Any], message: str
) -> None:
    """Each bad input is a BadRequest whose message starts by naming the field."""
    with pytest.raises(BadRequest) as caught:
        to_request(prompt, params)
    assert str(caught.value).startswith(message)


def test_an_unknown_parameter_lists_the_accepted_ones() -> None:
    """A typo is named, with what would have been accepted."""
    with pytest.raises(BadRequest) as caught:
        to_request("hi", {"foo": 1})
    assert str(caught.value) == (
        "unknown request parameter 'foo' (accepted: system, max_tokens, temperature, top_p, "
        "stop, tools, tool_choice, response_format, user, metadata, key, tags, "
        "max_completion_tokens, "
        "messages)"
    )


def test_a_long_value_is_shown_short() -> None:
    """What came is quoted briefly, never as the whole object."""
    with pytest.raises(BadRequest) as caught:
        to_request("hi", {"temperature": "warm " * 100})
    assert len(str(caught.value)) < 120


WEIRD: list[Any] = [None, 0, -1, 1.5, "", "x", b"x", [], [1], [None], {}, {"type": 1},
                    {"function": 1}, {"function": {"name": 1}}, object(), ("a",), True]  # fmt: skip


@pytest.mark.parametrize("value", WEIRD, ids=repr)
@pytest.mark.parametrize(
    "name",
    ["system", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "tools",
     "tool_choice", "response_format", "user", "metadata"],
)  # fmt: skip
def test_odd_values_are_accepted_or_refused_never_crash(name: str, value: Any) -> None:
    """Whatever comes, the answer is a request or a BadRequest: no TypeError or KeyError."""
    with contextlib.suppress(BadRequest):
        to_request("hi", {name: value})


@pytest.mark.parametrize("value", WEIRD, ids=repr)
def test_odd_messages_are_accepted_or_refused_never_crash(value: Any) -> None:
    """Odd messages, message fields and parts: a request or a BadRequest."""
    for prompt in (
        [value],
        [{"role": "user", "content": value}],
        [{"role": "user", "content": [value]}],
        [{"role": "assistant", "tool_calls": [value]}],
        [{"role": "assistant", "tool_calls": value}],
        [{"role": "tool", "tool_call_id": value, "content": "x"}],
        [{"role": value, "content": "x"}],
        [{"role": "user", "content": "x", "name": value}],
    ):
        with contextlib.suppress(BadRequest):
            to_request(prompt, {})


def test_a_request_passed_directly_is_checked_and_its_openai_shapes_converted() -> None:
    """Mistyped fields of a ChatRequest are refused; dict messages and tools are converted."""
    with pytest.raises(BadRequest, match=r"^temperature: expected a number between 0 and 2"):
        to_request(ChatRequest(messages=[Message(role="user", content="x")],
                               temperature="hot"), {})  # type: ignore[arg-type]  # fmt: skip
    with pytest.raises(BadRequest, match=r"^messages: expected a list of messages, got str"):
        checked(ChatRequest(messages="hi"))  # type: ignore[arg-type]
    request = checked(
        ChatRequest(messages=[{"role": "user", "content": "hi"}], tools=[WEATHER])  # type: ignore[list-item]
    )
    assert request.messages == [Message(role="user", content="hi")]
    assert request.tools == [WEATHER_SPEC]


def test_a_well_formed_request_is_passed_through_as_it_is() -> None:
    """Nothing is copied when nothing needs converting."""
    request = ChatRequest(
        messages=[Message(role="user", content=[TextPart(text="hi")])],
        tools=[WEATHER_SPEC],
        stop=["x"],
        temperature=0.2,
    )
    assert checked(request) is request
    assert to_request(request, {}) is request


def test_parameters_apply_to_a_request_passed_directly() -> None:
    """Keywords given with a ChatRequest replace its fields."""
    request = ChatRequest(messages=[Message(role="user", content="hi")], max_tokens=5)
    assert to_request(request, {"max_tokens": 7, "stop": "z"}) == ChatRequest(
        messages=[Message(role="user", content="hi")], max_tokens=7, stop=["z"]
    )


@pytest.fixture
async def llm(simulator: SimulatorHandle) -> Any:
    built = LLMBuilder().with_primary(
        "openai", "sim-openai", base_url=simulator.openai_base_url, api_key="sk-in"
    ).build()  # fmt: skip
    yield built
    await built.aclose()


async def test_openai_style_call_is_answered(llm: SmartLLM, simulator: SimulatorHandle) -> None:
    """A call written for the OpenAI SDK goes through SmartLLM as it is."""
    response = await llm.ainvoke(
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
        ],
        max_completion_tokens=50,
        temperature=0.2,
        stop=["\n\n"],
    )
    assert response.content == "Echo: hi"
    assert simulator.usage("sk-in", "sim-openai")["requests"] == 1


async def test_bad_input_is_refused_before_routing(
    llm: SmartLLM, simulator: SimulatorHandle
) -> None:
    """A malformed call raises BadRequest, sends nothing and is not a routed request."""
    with pytest.raises(BadRequest, match=r"^prompt: expected a string"):
        await llm.ainvoke(123)  # type: ignore[arg-type]
    with pytest.raises(BadRequest, match=r"^unknown request parameter 'foo'"):
        await llm.ainvoke("hi", foo=1)
    assert simulator.ledger()["totals"]["requests"] == 0
    assert llm.get_stats()["requests"] == 0
