"""The official SDKs accept the simulator as the real service."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from anthropic.types import MessageParam, ToolParam
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from llmrelay.testing import SimulatorHandle

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello SDK"}]
HELLO_ANTHROPIC: list[MessageParam] = [{"role": "user", "content": "Hello SDK"}]


def test_openai_sync(simulator: SimulatorHandle) -> None:
    """openai: a chat completion with content and usage."""
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="sk-sdk")
    response = client.chat.completions.create(model="sim-openai", messages=HELLO)
    assert response.choices[0].message.content == "Echo: Hello SDK"
    assert response.usage is not None and response.usage.completion_tokens == 4


async def test_openai_async_stream_with_usage(simulator: SimulatorHandle) -> None:
    """openai async: a stream with include_usage ends with a usage-only chunk."""
    client = openai.AsyncOpenAI(base_url=simulator.openai_base_url, api_key="sk-sdk")
    stream = await client.chat.completions.create(
        model="sim-openai",
        messages=HELLO,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Hello SDK"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4
    await client.close()


def test_openai_tool_call(simulator: SimulatorHandle) -> None:
    """openai: a tool call comes back in the SDK's own types."""
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="sk-sdk")
    tools: list[ChatCompletionToolParam] = [
        {
            "type": "function",
            "function": {
                "name": "lookup",
                "parameters": {"type": "object", "properties": {"q": {"type": "string"}}},
            },
        }
    ]
    response = client.chat.completions.create(
        model="sim-openai",
        messages=[{"role": "user", "content": "please lookup x"}],
        tools=tools,
    )
    calls = response.choices[0].message.tool_calls
    assert calls is not None and calls[0].type == "function"
    assert calls[0].function.name == "lookup" and response.choices[0].finish_reason == "tool_calls"


def test_openai_rate_limit_error_carries_retry_after(simulator: SimulatorHandle) -> None:
    """openai: a limit breach raises RateLimitError with the retry-after the SDK reads."""
    simulator.set_limits("sim-openai", rpm=1)
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="sk-sdk", max_retries=0)
    client.chat.completions.create(model="sim-openai", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="sim-openai", messages=HELLO)
    headers = caught.value.response.headers
    assert float(headers["retry-after"]) > 0 and float(headers["retry-after-ms"]) > 0
    assert headers["x-ratelimit-limit-requests"] == "1"
    assert caught.value.code == "rate_limit_exceeded"
    # The SDK's own retry rule reads the header: the delay it computes is the header's.
    options = openai._models.FinalRequestOptions.construct(method="post", url="/chat/completions")
    delay = client._calculate_retry_timeout(1, options, headers)
    assert delay == pytest.approx(float(headers["retry-after-ms"]) / 1000, rel=0.01)


def test_openai_authentication_error(simulator: SimulatorHandle) -> None:
    """openai: an invalid key raises AuthenticationError."""
    client = openai.OpenAI(base_url=simulator.openai_base_url, api_key="invalid-key", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="sim-openai", messages=HELLO)


def test_anthropic_messages_and_stream(simulator: SimulatorHandle) -> None:
    """anthropic: messages.create and messages.stream with usage."""
    client = anthropic.Anthropic(base_url=simulator.url, api_key="sk-ant")
    message = client.messages.create(
        model="sim-anthropic", max_tokens=100, messages=HELLO_ANTHROPIC
    )
    block = message.content[0]
    assert block.type == "text" and block.text == "Echo: Hello SDK"
    assert message.stop_reason == "end_turn" and message.usage.output_tokens == 4
    with client.messages.stream(
        model="sim-anthropic", max_tokens=100, messages=HELLO_ANTHROPIC
    ) as stream:
        assert "".join(stream.text_stream) == "Echo: Hello SDK"
        final = stream.get_final_message()
    assert final.usage.output_tokens == 4 and final.stop_reason == "end_turn"


def test_anthropic_tool_use_stream(simulator: SimulatorHandle) -> None:
    """anthropic: a streamed tool_use block accumulates into the tool's input."""
    client = anthropic.Anthropic(base_url=simulator.url, api_key="sk-ant")
    tools: list[ToolParam] = [
        {
            "name": "lookup",
            "input_schema": {"type": "object", "properties": {"q": {"type": "string"}}},
        }
    ]
    with client.messages.stream(
        model="sim-anthropic",
        max_tokens=100,
        tools=tools,
        messages=[{"role": "user", "content": "lookup it"}],
    ) as stream:
        final = stream.get_final_message()
    block = final.content[0]
    assert block.type == "tool_use" and block.input == {"q": "example q"}
    assert final.stop_reason == "tool_use"


def test_anthropic_rate_limit_and_overloaded(simulator: SimulatorHandle) -> None:
    """anthropic: RateLimitError on a breach, OverloadedError on 529."""
    client = anthropic.Anthropic(base_url=simulator.url, api_key="sk-ant", max_retries=0)
    simulator.set_limits("sim-anthropic", rpm=1)
    client.messages.create(model="sim-anthropic", max_tokens=10, messages=HELLO_ANTHROPIC)
    with pytest.raises(anthropic.RateLimitError) as limited:
        client.messages.create(model="sim-anthropic", max_tokens=10, messages=HELLO_ANTHROPIC)
    assert int(limited.value.response.headers["retry-after"]) >= 1
    simulator.reset()
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        client.messages.create(model="sim-anthropic", max_tokens=10, messages=HELLO_ANTHROPIC)
    assert overloaded.value.status_code == 529


def test_anthropic_error_inside_stream(simulator: SimulatorHandle) -> None:
    """anthropic: an error event inside a 200 stream raises in the SDK."""
    simulator.set_faults("sim-anthropic", {"stream_error": 1.0})
    client = anthropic.Anthropic(base_url=simulator.url, api_key="sk-ant", max_retries=0)
    with (
        pytest.raises(anthropic.APIStatusError, match="Overloaded"),
        client.messages.stream(
            model="sim-anthropic",
            max_tokens=100,
            messages=[{"role": "user", "content": "a long answer to cut"}],
        ) as stream,
    ):
        list(stream.text_stream)


def _genai(simulator: SimulatorHandle, key: str = "g-key") -> genai.Client:
    return genai.Client(api_key=key, http_options=genai_types.HttpOptions(base_url=simulator.url))


def test_genai_generate_and_stream(simulator: SimulatorHandle) -> None:
    """google-genai: generate_content and generate_content_stream."""
    client = _genai(simulator)
    response = client.models.generate_content(model="sim-gemini", contents="Hello SDK")
    assert response.text == "Echo: Hello SDK"
    assert (
        response.usage_metadata is not None and response.usage_metadata.candidates_token_count == 4
    )
    chunks = list(client.models.generate_content_stream(model="sim-gemini", contents="Hello SDK"))
    assert "".join(c.text or "" for c in chunks) == "Echo: Hello SDK"
    candidates = chunks[-1].candidates
    assert candidates is not None
    assert candidates[0].finish_reason == genai_types.FinishReason.STOP


async def test_genai_async_structured_output(simulator: SimulatorHandle) -> None:
    """google-genai async: a response JSON schema yields parseable JSON."""
    config = genai_types.GenerateContentConfig(
        response_mime_type="application/json",
        response_json_schema={"type": "object", "properties": {"n": {"type": "integer"}}},
    )
    response = await _genai(simulator).aio.models.generate_content(
        model="sim-gemini", contents="give n", config=config
    )
    assert response.text == '{"n": 1}'


def test_genai_rate_limit_error(simulator: SimulatorHandle) -> None:
    """google-genai: a breach is a 429 RESOURCE_EXHAUSTED with a RetryInfo delay."""
    simulator.set_limits("sim-gemini", rpm=1)
    client = _genai(simulator)
    client.models.generate_content(model="sim-gemini", contents="one")
    with pytest.raises(genai_errors.ClientError) as caught:
        client.models.generate_content(model="sim-gemini", contents="two")
    assert caught.value.code == 429 and caught.value.status == "RESOURCE_EXHAUSTED"
    details = caught.value.details["error"]["details"]
    assert any(d["@type"].endswith("RetryInfo") and d["retryDelay"].endswith("s") for d in details)


def test_unknown_route_and_bad_json_get_clear_errors(simulator: SimulatorHandle) -> None:
    """A malformed body gets the provider's 400 with a reason, not a crash."""
    response = httpx.post(
        simulator.openai_base_url + "/chat/completions",
        content=b"{not json",
        headers={"authorization": "Bearer sk-x"},
    )
    assert response.status_code == 400
    assert "could not parse the JSON body" in response.json()["error"]["message"]
    response = httpx.post(
        simulator.openai_base_url + "/chat/completions",
        json={"model": "sim-openai"},
        headers={"authorization": "Bearer sk-x"},
    )
    assert (
        response.status_code == 400
        and "messages: Field required" in response.json()["error"]["message"]
    )
