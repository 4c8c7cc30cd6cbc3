"""The official ``anthropic`` SDK accepts the gateway as the service: messages, streams,
tools, prompt caching passed through, the headers the gateway adds, and every error as the
SDK's own class."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anthropic
import pytest
from anthropic.types import MessageParam, TextBlockParam, ToolParam

from gateway.gateway_support import API_KEY, MASTER, new_key, running_gateway
from llmrelay.gateway.server import GatewayServer
from llmrelay.testing import SimulatorHandle

HELLO: list[MessageParam] = [{"role": "user", "content": "Hello SDK"}]
WEATHER: list[ToolParam] = [
    {
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    }
]


@pytest.fixture
def gateway(simulator: SimulatorHandle, tmp_path: Path) -> Iterator[GatewayServer]:
    # No retries: a failing deployment is left at once for the next (no backoff to wait).
    with running_gateway(simulator, tmp_path, routing={"retries": 0}) as server:
        yield server


@pytest.fixture
def client(gateway: GatewayServer) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(base_url=gateway.url, api_key=MASTER, max_retries=0) as made:
        yield made


@pytest.fixture
async def async_client(gateway: GatewayServer) -> AsyncIterator[anthropic.AsyncAnthropic]:
    async with anthropic.AsyncAnthropic(
        base_url=gateway.url, api_key=MASTER, max_retries=0
    ) as made:
        yield made


def make_key(gateway: GatewayServer, **spec: Any) -> str:
    """The secret of a new virtual key made through the admin API."""
    return str(new_key(gateway.url, **spec)["secret"])


def client_for(gateway: GatewayServer, secret: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gateway.url, api_key=secret, max_retries=0)


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# -- answers ---------------------------------------------------------------------------------


def test_create_message(client: anthropic.Anthropic) -> None:
    """A message parses into the SDK's types, with the answer and its usage."""
    message = client.messages.create(model="claude", max_tokens=100, messages=HELLO)
    assert message.type == "message" and message.role == "assistant"
    assert text_of(message) == "Echo: Hello SDK"
    assert message.stop_reason == "end_turn"
    assert message.usage.output_tokens == 4 and message.usage.input_tokens > 0


async def test_async_create_message(async_client: anthropic.AsyncAnthropic) -> None:
    """The async client gets the same answer, through a group whose primary is OpenAI's."""
    message = await async_client.messages.create(model="default", max_tokens=100, messages=HELLO)
    assert text_of(message) == "Echo: Hello SDK"


def test_stream_final_message(client: anthropic.Anthropic) -> None:
    """messages.stream gives the text as it comes and a final message with usage."""
    with client.messages.stream(model="claude", max_tokens=100, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "Echo: Hello SDK"
    assert text_of(final) == "Echo: Hello SDK" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4 and final.usage.input_tokens > 0


async def test_async_stream_from_an_openai_deployment(
    async_client: anthropic.AsyncAnthropic,
) -> None:
    """An OpenAI deployment's stream is written as Anthropic's events the SDK assembles."""
    async with async_client.messages.stream(
        model="default", max_tokens=100, messages=HELLO
    ) as stream:
        final = await stream.get_final_message()
    assert text_of(final) == "Echo: Hello SDK"


def test_tool_use_round_trip(client: anthropic.Anthropic) -> None:
    """A tool_use comes back in the SDK's types, and its tool_result sent back is answered."""
    messages: list[MessageParam] = [{"role": "user", "content": "Call get_weather for 'Paris'"}]
    first = client.messages.create(model="claude", max_tokens=200, messages=messages, tools=WEATHER)
    assert first.stop_reason == "tool_use"
    uses = [block for block in first.content if block.type == "tool_use"]
    assert len(uses) == 1 and uses[0].name == "get_weather"
    assert uses[0].input == {"city": "Paris"}
    messages += [
        {"role": "assistant", "content": [
            {"type": "tool_use", "id": uses[0].id, "name": "get_weather", "input": uses[0].input}
        ]},
        {"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": uses[0].id, "content": "18 C and sunny"}
        ]},
    ]  # fmt: skip
    second = client.messages.create(
        model="claude", max_tokens=200, messages=messages, tools=WEATHER
    )
    assert second.stop_reason == "end_turn"
    assert text_of(second) == "The tool get_weather returned: 18 C and sunny"


def test_streamed_tool_use(client: anthropic.Anthropic) -> None:
    """A streamed tool_use is assembled by the SDK into the call and its input."""
    with client.messages.stream(
        model="default",
        max_tokens=200,
        messages=[{"role": "user", "content": "Call get_weather for 'Oslo'"}],
        tools=WEATHER,
    ) as stream:
        final = stream.get_final_message()
    uses = [block for block in final.content if block.type == "tool_use"]
    assert final.stop_reason == "tool_use"
    assert len(uses) == 1 and uses[0].input == {"city": "Oslo"}


def test_cache_control_reaches_the_provider(
    client: anthropic.Anthropic, simulator: SimulatorHandle
) -> None:
    """A system block marked cache_control is cached by the provider: the first call writes
    it, the second reads it, in the usage the SDK parses and in the provider's own ledger."""
    simulator.set_model("sim-anthropic", min_cacheable_tokens=1024)
    system: list[TextBlockParam] = [
        {"type": "text", "text": "word" + " word" * 1999, "cache_control": {"type": "ephemeral"}}
    ]
    first = client.messages.create(model="claude", max_tokens=50, system=system, messages=HELLO)
    second = client.messages.create(model="claude", max_tokens=50, system=system, messages=HELLO)
    assert (first.usage.cache_creation_input_tokens or 0) >= 2000
    assert first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0
    assert second.usage.input_tokens == first.usage.input_tokens  # the uncached rest
    ledger = simulator.usage(API_KEY, "sim-anthropic")
    assert ledger["cache_write_input_tokens"] == first.usage.cache_creation_input_tokens
    assert ledger["cached_input_tokens"] == second.usage.cache_read_input_tokens


def test_models_list(client: anthropic.Anthropic) -> None:
    """The model groups are listed in Anthropic's format."""
    assert {m.id for m in client.models.list()} == {"default", "claude", "backup"}


# -- what the gateway adds -------------------------------------------------------------------


def test_answer_headers(client: anthropic.Anthropic) -> None:
    """A message says which deployment served it, in how many attempts, from the cache or
    not, and at what cost."""
    raw = client.messages.with_raw_response.create(model="claude", max_tokens=100, messages=HELLO)
    assert text_of(raw.parse()) == "Echo: Hello SDK"
    headers = raw.headers
    assert headers["x-request-id"]
    assert headers["x-llmrelay-deployment"] == "anthropic/sim-anthropic"
    assert headers["x-llmrelay-attempts"] == "1"
    assert headers["x-llmrelay-cache"] == "miss"
    assert float(headers["x-llmrelay-cost-usd"]) > 0


def test_fallback_shows_two_attempts(
    client: anthropic.Anthropic, simulator: SimulatorHandle
) -> None:
    """When the primary fails, the fallback answers and the headers say so."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    raw = client.messages.with_raw_response.create(model="default", max_tokens=100, messages=HELLO)
    assert text_of(raw.parse()) == "Echo: Hello SDK"
    assert raw.headers["x-llmrelay-deployment"] == "anthropic/sim-anthropic"
    assert raw.headers["x-llmrelay-attempts"] == "2"


# -- errors, as the SDK's classes ------------------------------------------------------------


def test_bad_key_is_authentication_error(gateway: GatewayServer) -> None:
    """An unknown key raises AuthenticationError."""
    with pytest.raises(anthropic.AuthenticationError) as caught:
        client_for(gateway, "sk-relay-not-a-key").messages.create(
            model="claude", max_tokens=100, messages=HELLO
        )
    assert caught.value.status_code == 401
    body = caught.value.body
    assert isinstance(body, dict) and body["error"]["type"] == "authentication_error"


def test_key_not_allowed_the_group_is_permission_denied(gateway: GatewayServer) -> None:
    """A key limited to other groups raises PermissionDeniedError naming the group."""
    secret = make_key(gateway, groups=["backup"])
    with pytest.raises(anthropic.PermissionDeniedError) as caught:
        client_for(gateway, secret).messages.create(model="claude", max_tokens=100, messages=HELLO)
    assert "'claude'" in caught.value.message and "backup" in caught.value.message


def test_unknown_group_is_not_found(client: anthropic.Anthropic) -> None:
    """An unknown model group raises NotFoundError naming it."""
    with pytest.raises(anthropic.NotFoundError) as caught:
        client.messages.create(model="no-such-group", max_tokens=100, messages=HELLO)
    assert "no-such-group" in caught.value.message


def test_bad_field_is_bad_request_naming_it(client: anthropic.Anthropic) -> None:
    """A field of the wrong type raises BadRequestError whose message names it."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude", max_tokens=100, messages=HELLO, extra_body={"temperature": "hot"}
        )
    assert "temperature" in caught.value.message


def test_tool_result_without_its_id_names_the_block(client: anthropic.Anthropic) -> None:
    """A tool_result with an empty tool_use_id is refused naming the block, as sent."""
    messages: Any = [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "", "content": "18 C"}]}]  # fmt: skip
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude", max_tokens=100, messages=messages)
    assert "messages.0.content.0.tool_use_id" in caught.value.message


def test_tool_choice_naming_no_tool_is_bad_request(client: anthropic.Anthropic) -> None:
    """tool_choice naming a tool that was not given is refused in Anthropic's terms."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(
            model="claude",
            max_tokens=100,
            messages=HELLO,
            tools=WEATHER,
            tool_choice={"type": "tool", "name": "get_time"},
        )
    assert "tool_choice.name" in caught.value.message and "get_time" in caught.value.message


def test_a_prompt_no_window_holds_is_bad_request(client: anthropic.Anthropic) -> None:
    """Asking more than any model of the group holds is the caller's to fix: a 400
    invalid_request_error, not a provider failure."""
    with pytest.raises(anthropic.BadRequestError) as caught:
        client.messages.create(model="claude", max_tokens=20_000, messages=HELLO)
    assert "16000" in caught.value.message


def test_key_rate_limit_is_rate_limit_error(gateway: GatewayServer) -> None:
    """Past a key's RPM the next call raises RateLimitError with retry-after."""
    client = client_for(gateway, make_key(gateway, rpm=1))
    client.messages.create(model="claude", max_tokens=100, messages=HELLO)
    with pytest.raises(anthropic.RateLimitError) as caught:
        client.messages.create(model="claude", max_tokens=100, messages=HELLO)
    assert int(caught.value.response.headers["retry-after"]) >= 1


def test_budget_exceeded_is_a_400_naming_the_budget(gateway: GatewayServer) -> None:
    """A key whose budget cannot afford the call gets a 400 invalid_request_error naming
    the budget, as Anthropic answers an empty credit balance, and no retry."""
    secret = make_key(gateway, name="tiny", budgets=[{"usd": 0.000001}])
    with pytest.raises(anthropic.BadRequestError) as caught:
        client_for(gateway, secret).messages.create(model="claude", max_tokens=100, messages=HELLO)
    assert caught.value.status_code == 400
    assert "/day" in caught.value.message and "key 'tiny'" in caught.value.message
    assert caught.value.response.headers["x-should-retry"] == "false"


def test_every_deployment_failing_is_503(
    client: anthropic.Anthropic, simulator: SimulatorHandle
) -> None:
    """When every deployment of the group fails, the SDK raises InternalServerError for a
    503 with retry-after."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    simulator.set_faults("sim-anthropic", {"500": 1.0})
    with pytest.raises(anthropic.InternalServerError) as caught:
        client.messages.create(model="default", max_tokens=100, messages=HELLO)
    assert caught.value.status_code == 503
    assert int(caught.value.response.headers["retry-after"]) >= 1
