"""The official ``openai`` SDK accepts the gateway as the service: answers, streams, tools,
structured output, the headers the gateway adds, and every error as the SDK's own class."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam, ChatCompletionToolParam

from gateway.gateway_support import MASTER, new_key, running_gateway
from llmrelay.gateway.server import GatewayServer
from llmrelay.testing import SimulatorHandle

HELLO: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Hello SDK"}]
WEATHER: list[ChatCompletionToolParam] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"],
            },
        },
    }
]


@pytest.fixture
def gateway(simulator: SimulatorHandle, tmp_path: Path) -> Iterator[GatewayServer]:
    # No retries: a failing deployment is left at once for the next (no backoff to wait).
    with running_gateway(simulator, tmp_path, routing={"retries": 0}) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[openai.OpenAI]:
    with openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0) as made:
        yield made


@pytest.fixture
async def async_client(gateway: GatewayServer) -> AsyncIterator[openai.AsyncOpenAI]:
    async with openai.AsyncOpenAI(
        base_url=f"{gateway.url}/v1", api_key=MASTER, max_retries=0
    ) as made:
        yield made


def make_key(gateway: GatewayServer, **spec: Any) -> str:
    """The secret of a new virtual key made through the admin API."""
    return str(new_key(gateway.url, **spec)["secret"])


def client_for(gateway: GatewayServer, secret: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gateway.url}/v1", api_key=secret, max_retries=0)


# -- answers ---------------------------------------------------------------------------------


def test_sync_completion(client: openai.OpenAI) -> None:
    """A completion parses into the SDK's types, with the answer and its usage."""
    response = client.chat.completions.create(model="default", messages=HELLO)
    assert response.object == "chat.completion"
    assert response.choices[0].message.content == "Echo: Hello SDK"
    assert response.choices[0].finish_reason == "stop"
    assert response.usage is not None and response.usage.completion_tokens == 4
    assert response.usage.total_tokens == response.usage.prompt_tokens + 4


async def test_async_completion(async_client: openai.AsyncOpenAI) -> None:
    """The async client gets the same answer."""
    response = await async_client.chat.completions.create(model="default", messages=HELLO)
    assert response.choices[0].message.content == "Echo: Hello SDK"


async def test_stream_with_usage(async_client: openai.AsyncOpenAI) -> None:
    """A stream with include_usage gives the text in chunks, then a usage-only chunk."""
    stream = await async_client.chat.completions.create(
        model="default", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Echo: Hello SDK"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 4 and chunks[-1].usage.prompt_tokens > 0


def test_stream_without_usage(client: openai.OpenAI) -> None:
    """A stream without include_usage carries no usage at all."""
    stream = client.chat.completions.create(model="default", messages=HELLO, stream=True)
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "Echo: Hello SDK"
    assert all(c.usage is None for c in chunks)


def test_tool_call_round_trip(client: openai.OpenAI) -> None:
    """A tool call comes back in the SDK's types, and its result sent back is answered."""
    messages: list[ChatCompletionMessageParam] = [
        {"role": "user", "content": "Call get_weather for 'Paris'"}
    ]
    first = client.chat.completions.create(model="default", messages=messages, tools=WEATHER)
    assert first.choices[0].finish_reason == "tool_calls"
    calls = first.choices[0].message.tool_calls
    assert calls is not None and len(calls) == 1
    call = calls[0]
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    messages += [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": call.id,
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": call.function.arguments},
                }
            ],
        },
        {"role": "tool", "tool_call_id": call.id, "content": "18 C and sunny"},
    ]
    second = client.chat.completions.create(model="default", messages=messages, tools=WEATHER)
    assert second.choices[0].finish_reason == "stop"
    assert second.choices[0].message.content == "The tool get_weather returned: 18 C and sunny"


def test_streamed_tool_call(client: openai.OpenAI) -> None:
    """A streamed tool call accumulates, through the SDK's stream helper, into the call."""
    with client.chat.completions.stream(
        model="default",
        messages=[{"role": "user", "content": "Call get_weather for 'Oslo'"}],
        tools=WEATHER,
    ) as stream:
        final = stream.get_final_completion()
    calls = final.choices[0].message.tool_calls
    assert calls is not None and calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"city": "Oslo"}


def test_json_schema_response_format(client: openai.OpenAI) -> None:
    """response_format json_schema gets a JSON document of that schema."""
    schema = {
        "type": "object",
        "properties": {"title": {"type": "string"}, "year": {"type": "integer"}},
        "required": ["title", "year"],
        "additionalProperties": False,
    }
    response = client.chat.completions.create(
        model="default",
        messages=[{"role": "user", "content": "A film, as JSON"}],
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "film", "schema": schema, "strict": True},
        },
    )
    document = json.loads(response.choices[0].message.content or "")
    assert set(document) == {"title", "year"}
    assert isinstance(document["title"], str) and isinstance(document["year"], int)


def test_models_list(client: openai.OpenAI) -> None:
    """The model groups are listed as models."""
    assert {m.id for m in client.models.list()} == {"default", "claude", "backup"}


# -- what the gateway adds -------------------------------------------------------------------


def test_answer_headers(client: openai.OpenAI) -> None:
    """An answer says which deployment served it, in how many attempts, from the cache or
    not, and at what cost."""
    raw = client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Echo: Hello SDK"
    headers = raw.headers
    assert headers["x-request-id"]
    assert headers["x-llmrelay-deployment"] == "openai/sim-openai"
    assert headers["x-llmrelay-attempts"] == "1"
    assert headers["x-llmrelay-cache"] == "miss"
    assert float(headers["x-llmrelay-cost-usd"]) > 0


def test_request_id_is_the_callers(client: openai.OpenAI) -> None:
    """A request id the caller sends is the one the answer carries."""
    raw = client.chat.completions.with_raw_response.create(
        model="default", messages=HELLO, extra_headers={"x-request-id": "trace-42"}
    )
    assert raw.headers["x-request-id"] == "trace-42"


def test_fallback_shows_two_attempts(client: openai.OpenAI, simulator: SimulatorHandle) -> None:
    """When the primary fails, the fallback answers and the headers say so."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    raw = client.chat.completions.with_raw_response.create(model="default", messages=HELLO)
    assert raw.parse().choices[0].message.content == "Echo: Hello SDK"
    assert raw.headers["x-llmrelay-deployment"] == "anthropic/sim-anthropic"
    assert raw.headers["x-llmrelay-attempts"] == "2"


# -- errors, as the SDK's classes ------------------------------------------------------------


def test_bad_key_is_authentication_error(gateway: GatewayServer) -> None:
    """An unknown key raises AuthenticationError."""
    with pytest.raises(openai.AuthenticationError) as caught:
        client_for(gateway, "sk-relay-not-a-key").chat.completions.create(
            model="default", messages=HELLO
        )
    assert caught.value.status_code == 401
    assert caught.value.code == "invalid_api_key"


def test_key_not_allowed_the_group_is_permission_denied(gateway: GatewayServer) -> None:
    """A key limited to other groups raises PermissionDeniedError naming the group."""
    secret = make_key(gateway, groups=["claude"])
    with pytest.raises(openai.PermissionDeniedError) as caught:
        client_for(gateway, secret).chat.completions.create(model="default", messages=HELLO)
    assert "'default'" in caught.value.message and "claude" in caught.value.message


def test_unknown_group_is_not_found(client: openai.OpenAI) -> None:
    """An unknown model group raises NotFoundError."""
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-group", messages=HELLO)
    assert caught.value.code == "model_not_found"
    assert "no-such-group" in caught.value.message


def test_bad_field_is_bad_request_naming_it(client: openai.OpenAI) -> None:
    """A field of the wrong type raises BadRequestError whose message and param name it."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="default", messages=HELLO, extra_body={"temperature": "hot"}
        )
    assert "temperature" in caught.value.message
    assert caught.value.param == "temperature"


def test_unknown_field_is_bad_request_naming_it(client: openai.OpenAI) -> None:
    """A field the API does not have raises BadRequestError naming it."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(
            model="default", messages=HELLO, extra_body={"temperatur": 0.5}
        )
    assert "temperatur" in caught.value.message


def test_a_prompt_no_window_holds_is_bad_request(client: openai.OpenAI) -> None:
    """Asking more than any model of the group holds is the caller's to fix: a 400
    context_length_exceeded, not a provider failure."""
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="default", messages=HELLO, max_tokens=100_000)
    assert caught.value.code == "context_length_exceeded"
    assert "16000" in caught.value.message


def test_key_rate_limit_is_rate_limit_error(gateway: GatewayServer) -> None:
    """Past a key's RPM the next call raises RateLimitError with retry-after."""
    client = client_for(gateway, make_key(gateway, rpm=1))
    client.chat.completions.create(model="default", messages=HELLO)
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="default", messages=HELLO)
    assert caught.value.code == "rate_limit_exceeded"
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_budget_exceeded_is_insufficient_quota(gateway: GatewayServer) -> None:
    """A key whose budget cannot afford the call gets 429 insufficient_quota naming the
    budget, and the SDK is told not to retry."""
    secret = make_key(gateway, name="tiny", budgets=[{"usd": 0.000001}])
    with pytest.raises(openai.RateLimitError) as caught:
        client_for(gateway, secret).chat.completions.create(model="backup", messages=HELLO)
    assert caught.value.status_code == 429
    assert caught.value.code == "insufficient_quota"
    assert caught.value.type == "insufficient_quota"
    assert "/day" in caught.value.message and "key 'tiny'" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_every_deployment_failing_is_503(client: openai.OpenAI, simulator: SimulatorHandle) -> None:
    """When every deployment of the group fails, the SDK raises InternalServerError for a
    503 with retry-after."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    simulator.set_faults("sim-anthropic", {"500": 1.0})
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model="default", messages=HELLO)
    assert caught.value.status_code == 503
    assert caught.value.code == "service_unavailable"
    assert int(caught.value.response.headers["retry-after"]) >= 1
