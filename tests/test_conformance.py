"""One conformance suite that every provider adapter passes against the simulator."""

from __future__ import annotations

import json

import pytest

from conftest import FAST_TIMEOUTS, AdapterCase, ProviderFactory
from llmrelay import errors
from llmrelay.providers import HttpClient, HttpProvider, Provider
from llmrelay.testing import SimulatorHandle
from llmrelay.types import (
    ChatRequest,
    Message,
    ResponseFormat,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
    TextDelta,
    ToolCall,
    ToolSpec,
)

WEATHER = ToolSpec(
    name="get_weather",
    description="Current weather for a city",
    parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
)


def ask(text: str, **kw: object) -> ChatRequest:
    return ChatRequest(messages=[Message(role="user", content=text)], **kw)  # type: ignore[arg-type]


async def collect(provider: Provider, request: ChatRequest) -> list[StreamEvent]:
    return [event async for event in provider.stream(request)]


async def test_plain_answer(make_provider: ProviderFactory) -> None:
    """A plain request comes back with the model's text, a stop reason and usage."""
    response = await make_provider().send(ask("Hello there", system="Be brief."))
    assert response.content == "Echo: Hello there"
    assert response.finish_reason == "stop"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 4
    assert response.latency_s > 0


async def test_streamed_answer_matches_plain(make_provider: ProviderFactory) -> None:
    """A stream yields text deltas and exactly one final StreamEnd carrying usage."""
    provider = make_provider()
    events = await collect(provider, ask("Stream me a reply"))
    assert sum(isinstance(e, StreamEnd) for e in events) == 1 and isinstance(events[-1], StreamEnd)
    assert len([e for e in events if isinstance(e, TextDelta)]) > 1
    acc = StreamAccumulator()
    for event in events:
        acc.add(event)
    streamed = acc.response()
    plain = await provider.send(ask("Stream me a reply"))
    assert streamed.content == plain.content
    assert streamed.usage.output_tokens == plain.usage.output_tokens
    assert streamed.usage.input_tokens == plain.usage.input_tokens


async def test_usage_is_what_the_provider_billed(
    make_provider: ProviderFactory, simulator: SimulatorHandle, case: AdapterCase
) -> None:
    """Reported usage equals what the simulator's ledger recorded for the key and model."""
    response = await make_provider(api_key="sk-usage").send(ask("count my tokens please"))
    entry = simulator.usage("sk-usage", case.model)
    assert entry["requests"] == 1
    assert entry["input_tokens"] == response.usage.input_tokens
    assert entry["output_tokens"] == response.usage.output_tokens


async def test_max_tokens_truncates_with_length(make_provider: ProviderFactory) -> None:
    """max_tokens is sent in the provider's field and a cut answer says 'length'."""
    response = await make_provider().send(ask("one two three four five six seven", max_tokens=3))
    assert response.finish_reason == "length"
    assert response.usage.output_tokens == 3


@pytest.mark.parametrize("stream", [False, True], ids=["send", "stream"])
async def test_tool_call_round_trip(make_provider: ProviderFactory, stream: bool) -> None:
    """The model calls a tool; the tool's result goes back and the model answers with it."""
    provider = make_provider()
    first = ask("Use get_weather for Paris", tools=[WEATHER], tool_choice="auto")
    if stream:
        acc = StreamAccumulator()
        for event in await collect(provider, first):
            acc.add(event)
        response = acc.response()
    else:
        response = await provider.send(first)
    assert response.finish_reason == "tool_calls"
    [call] = response.tool_calls
    assert call.name == "get_weather" and json.loads(call.arguments) == {"city": "example city"}
    follow_up = ChatRequest(
        messages=[
            first.messages[0],
            Message(
                role="assistant",
                content="",
                tool_calls=[ToolCall(call.id, call.name, call.arguments)],
            ),
            Message(role="tool", content="sunny, 21 C", tool_call_id=call.id, name=call.name),
        ],
        tools=[WEATHER],
    )
    answer = await provider.send(follow_up)
    assert answer.finish_reason == "stop"
    assert answer.content == "The tool get_weather returned: " + (
        '{"result":"sunny, 21 C"}' if provider.name == "gemini" else "sunny, 21 C"
    )


async def test_forced_tool_choice(make_provider: ProviderFactory, case: AdapterCase) -> None:
    """A named tool_choice forces that tool; an adapter that cannot force says so before I/O."""
    request = ask("what now?", tools=[WEATHER], tool_choice="get_weather")
    provider = make_provider()
    if not provider.SUPPORTS_FORCED_TOOL_CHOICE:
        with pytest.raises(errors.BadRequest, match="cannot force a tool call"):
            await provider.send(request)
        return
    response = await provider.send(request)
    assert [c.name for c in response.tool_calls] == ["get_weather"]


async def test_json_schema_output(make_provider: ProviderFactory) -> None:
    """A JSON-schema response_format yields a JSON document of that shape."""
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "year": {"type": "integer"},
            "tags": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["title", "year", "tags"],
    }
    fmt = ResponseFormat(type="json_schema", json_schema=schema, name="movie")
    response = await make_provider().send(ask("Describe a movie", response_format=fmt))
    document = json.loads(response.content)
    assert set(document) == {"title", "year", "tags"}
    assert isinstance(document["year"], int) and isinstance(document["tags"], list)


async def test_json_object_output(
    make_provider: ProviderFactory, simulator: SimulatorHandle, case: AdapterCase
) -> None:
    """JSON-object mode yields a JSON object; an adapter without it refuses before any I/O."""
    request = ask("Describe a movie", response_format=ResponseFormat(type="json_object"))
    provider = make_provider(api_key="sk-json")
    assert isinstance(provider, HttpProvider)  # the capability is declared on the class
    if not provider.SUPPORTS_JSON_OBJECT:
        with pytest.raises(errors.BadRequest, match="no JSON-object mode"):
            await provider.send(request)
        with pytest.raises(errors.BadRequest, match="no JSON-object mode"):
            await collect(provider, request)
        assert simulator.usage("sk-json", case.model)["requests"] == 0
        return
    provider.check(request, stream=True)
    response = await provider.send(request)
    assert isinstance(json.loads(response.content), dict)


async def test_rate_limit_headers_parsed(
    make_provider: ProviderFactory, simulator: SimulatorHandle, case: AdapterCase
) -> None:
    """Every response's rate-limit headers become RateLimitInfo; a breach raises RateLimited."""
    simulator.set_limits(case.model, rpm=3, tpm=100_000, short_window_s=0)  # the minute only
    provider = make_provider()
    info = (await provider.send(ask("hi"))).rate_limits
    if case.provider in ("openai", "openai_compatible", "anthropic"):
        assert info.requests_limit == 3 and info.requests_remaining == 2
        assert info.tokens_limit == 100_000 and info.tokens_remaining is not None
        assert info.requests_reset_s is not None and 0 <= info.requests_reset_s <= 60
    else:  # Gemini and native Ollama send no limit headers
        assert info.is_empty
    await provider.send(ask("hi"))
    await provider.send(ask("hi"))
    with pytest.raises(errors.RateLimited) as caught:
        await provider.send(ask("hi"))
    assert caught.value.retry_after is not None and 0 < caught.value.retry_after <= 21
    assert caught.value.status_code == 429 and caught.value.retryable


FAULTS = [
    ("500", False, errors.ProviderUnavailable),
    ("503", False, errors.ProviderUnavailable),
    ("overloaded", False, errors.Overloaded),
    ("rate_limit", False, errors.RateLimited),
    ("timeout", False, errors.Timeout),
    ("disconnect", False, errors.ProviderUnavailable),
    ("malformed", False, errors.MalformedResponse),
    ("malformed", True, errors.MalformedResponse),
    ("stream_error", True, errors.StreamInterrupted),
    ("stream_cut", True, errors.StreamInterrupted),
    ("500", True, errors.ProviderUnavailable),
    ("overloaded", True, errors.Overloaded),
]


@pytest.mark.parametrize(
    ("fault", "stream", "expected"),
    FAULTS,
    ids=[f"{f}-{'stream' if s else 'send'}" for f, s, _ in FAULTS],
)
async def test_fault_maps_to_error(
    make_provider: ProviderFactory,
    simulator: SimulatorHandle,
    case: AdapterCase,
    fault: str,
    stream: bool,
    expected: type[errors.ProviderError],
) -> None:
    """Each injected fault surfaces as its taxonomy error, stamped with provider and deployment."""
    simulator.set_faults(case.model, {fault: 1.0})
    provider = make_provider(timeouts=FAST_TIMEOUTS)
    request = ask("a reply long enough to be cut in the middle of its stream")
    with pytest.raises(expected) as caught:
        if stream:
            await collect(provider, request)
        else:
            await provider.send(request)
    assert type(caught.value) is expected
    assert caught.value.provider == provider.name
    assert caught.value.deployment == provider.deployment.id
    assert simulator.usage("sk-test", case.model)["refused"] == {f"fault:{fault}": 1}


async def test_authentication_failure(make_provider: ProviderFactory) -> None:
    """An invalid key is the caller's fault: AuthenticationFailed, not retryable."""
    with pytest.raises(errors.AuthenticationFailed) as caught:
        await make_provider(api_key="invalid-key").send(ask("hi"))
    assert not caught.value.retryable and caught.value.status_code in (400, 401, 403)


async def test_unknown_model(
    simulator: SimulatorHandle, http_client: HttpClient, case: AdapterCase
) -> None:
    """A model the server does not have raises NotFound naming it."""
    from llmrelay.providers import Deployment, default_registry

    deployment = Deployment(
        provider=case.provider,
        model="no-such-model",
        api_key="sk-test",
        base_url=simulator.url + case.path,
    )
    with pytest.raises(errors.NotFound) as caught:
        await default_registry().create(deployment, http_client).send(ask("hi"))
    assert "no-such-model" in caught.value.message


async def test_context_window_exceeded(
    make_provider: ProviderFactory, simulator: SimulatorHandle, case: AdapterCase
) -> None:
    """A prompt longer than the window raises ContextWindowExceeded with the figures."""
    simulator.set_model(case.model, context_window=50)
    with pytest.raises(errors.ContextWindowExceeded) as caught:
        await make_provider().send(ask("word " * 100))
    if case.provider != "ollama" and case.model != "sim-ollama":
        assert caught.value.max_tokens == 50
        assert caught.value.required_tokens is not None and caught.value.required_tokens > 50


async def test_discovered_window_is_the_servers(
    make_provider: ProviderFactory, simulator: SimulatorHandle, case: AdapterCase
) -> None:
    """Discovery reports the window the server is configured with, or None; it never raises."""
    simulator.set_model(case.model, context_window=12_345)
    window = await make_provider().discover_context_window()
    assert window in (None, 12_345)
    if case.provider in ("openai", "anthropic"):  # hosted APIs publish no window
        assert window is None
