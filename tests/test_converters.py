"""Converters on recorded wire samples: pure functions, no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import pytest

from llmrelay import errors
from llmrelay.providers import Deployment, default_registry
from llmrelay.providers.base import HttpProvider, SseEvent, parse_retry_after
from llmrelay.providers.openai import parse_duration
from llmrelay.types import (
    ChatRequest,
    ImagePart,
    Message,
    StreamEnd,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
)


def adapter(provider: str) -> HttpProvider:
    deployment = Deployment(provider=provider, model="m", api_key="k", base_url="http://h")
    made = default_registry().create(deployment)
    assert isinstance(made, HttpProvider)
    return made


def body(data: Any) -> bytes:
    return json.dumps(data).encode()


ERROR_SAMPLES = [
    (
        "openai",
        429,
        {"retry-after-ms": "1500"},
        {
            "error": {
                "message": "Rate limit reached for gpt-4o-mini on requests per min (RPM): Limit 3",
                "type": "requests",
                "param": None,
                "code": "rate_limit_exceeded",
            }
        },
        errors.RateLimited,
        {"retry_after": 1.5},
    ),
    (
        "openai",
        429,
        {},
        {
            "error": {
                "message": "You exceeded your current quota, please check your plan and billing "
                "details.",
                "type": "insufficient_quota",
                "param": None,
                "code": "insufficient_quota",
            }
        },
        errors.QuotaExhausted,
        {"retryable": False},
    ),
    (
        "openai",
        400,
        {},
        {
            "error": {
                "message": "This model's maximum context length is 128000 tokens. However, your "
                "messages resulted in 130452 tokens. Please reduce the length of the messages.",
                "type": "invalid_request_error",
                "param": "messages",
                "code": "context_length_exceeded",
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 130452, "max_tokens": 128000},
    ),
    (
        "openai",
        400,
        {},
        {
            "error": {
                "message": "Your request was rejected as a result of our safety system.",
                "type": "invalid_request_error",
                "param": None,
                "code": "content_policy_violation",
            }
        },
        errors.ContentFiltered,
        {},
    ),
    (
        "openai",
        401,
        {},
        {
            "error": {
                "message": "Incorrect API key provided",
                "type": "invalid_request_error",
                "code": "invalid_api_key",
            }
        },
        errors.AuthenticationFailed,
        {"retryable": False},
    ),
    (
        "openai",
        502,
        {},
        "<html>Bad gateway</html>",
        errors.ProviderUnavailable,
        {"retryable": True},
    ),
    (
        "anthropic",
        400,
        {},
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "prompt is too long: 210000 tokens > 200000 maximum",
            },
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 210000, "max_tokens": 200000},
    ),
    (
        "anthropic",
        400,
        {},
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "input length and `max_tokens` exceed context limit: 198000 + 8192 > 200000, decrease input length or `max_tokens` and try again",
            },
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 206192, "max_tokens": 200000},
    ),
    (
        "anthropic",
        529,
        {},
        {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}},
        errors.Overloaded,
        {"retryable": True},
    ),
    (
        "anthropic",
        429,
        {"retry-after": "7"},
        {
            "type": "error",
            "error": {
                "type": "rate_limit_error",
                "message": "Number of request tokens has exceeded your per-minute rate limit",
            },
        },
        errors.RateLimited,
        {"retry_after": 7.0},
    ),
    (
        "anthropic",
        400,
        {},
        {
            "type": "error",
            "error": {
                "type": "invalid_request_error",
                "message": "Your credit balance is too low to access the Anthropic API.",
            },
        },
        errors.QuotaExhausted,
        {},
    ),
    (
        "gemini",
        429,
        {},
        {
            "error": {
                "code": 429,
                "message": "You exceeded your current quota",
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17s"}
                ],
            }
        },
        errors.RateLimited,
        {"retry_after": 17.0},
    ),
    (
        "gemini",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "The input token count (1200000) exceeds the "
                "maximum number of tokens allowed (1048576).",
                "status": "INVALID_ARGUMENT",
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 1200000, "max_tokens": 1048576},
    ),
    (
        "gemini",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "API key not valid. Please pass a valid API key.",
                "status": "INVALID_ARGUMENT",
                "details": [
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            }
        },
        errors.AuthenticationFailed,
        {},
    ),
    (
        "gemini",
        503,
        {},
        {
            "error": {
                "code": 503,
                "message": "The model is overloaded. Please try again later.",
                "status": "UNAVAILABLE",
            }
        },
        errors.Overloaded,
        {},
    ),
    (
        "gemini",
        400,
        {},
        {"error": {"code": 400, "message": "Invalid JSON payload", "status": "INVALID_ARGUMENT"}},
        errors.BadRequest,
        {},
    ),
    (
        "ollama",
        404,
        {},
        {"error": 'model "llama9" not found, try pulling it first'},
        errors.NotFound,
        {},
    ),
    (
        "ollama",
        503,
        {},
        {"error": "server busy, please try again.  maximum pending requests exceeded"},
        errors.Overloaded,
        {},
    ),
]


@pytest.mark.parametrize(
    ("provider", "status", "headers", "payload", "cls", "attrs"),
    ERROR_SAMPLES,
    ids=[f"{s[0]}-{s[1]}-{s[4].__name__}" for s in ERROR_SAMPLES],
)
def test_error_samples(
    provider: str,
    status: int,
    headers: dict[str, str],
    payload: Any,
    cls: type[errors.ProviderError],
    attrs: dict[str, Any],
) -> None:
    """Each recorded error body maps to its taxonomy class with the figures it states."""
    raw = payload.encode() if isinstance(payload, str) else body(payload)
    error = adapter(provider)._failure(status, headers, raw)
    assert type(error) is cls
    assert (
        error.status_code == status
        and error.provider == provider
        and error.deployment == f"{provider}/m"
    )
    for name, value in attrs.items():
        assert getattr(error, name) == value


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("20ms", 0.02),
        ("1s", 1.0),
        ("1.5s", 1.5),
        ("6m0s", 360.0),
        ("1m30.5s", 90.5),
        ("1h2m3s", 3723.0),
        ("", None),
        ("soon", None),
    ],
)
def test_openai_reset_durations(text: str, seconds: float | None) -> None:
    """OpenAI's x-ratelimit-reset-* durations are read in seconds."""
    assert parse_duration(text) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_forms() -> None:
    """retry-after-ms wins; retry-after may be seconds or an HTTP date."""
    assert parse_retry_after({"retry-after-ms": "250", "retry-after": "9"}) == 0.25
    assert parse_retry_after({"retry-after": "3"}) == 3.0
    later = (datetime.now(UTC) + timedelta(seconds=30)).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 28 <= (parse_retry_after({"retry-after": later}) or 0) <= 31
    assert parse_retry_after({}) is None


def test_anthropic_rate_limit_headers() -> None:
    """anthropic-ratelimit-* headers with RFC 3339 resets become RateLimitInfo."""
    reset = (datetime.now(UTC) + timedelta(seconds=20)).strftime("%Y-%m-%dT%H:%M:%SZ")
    info = adapter("anthropic").rate_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": "30000",
            "anthropic-ratelimit-tokens-remaining": "29000",
            "anthropic-ratelimit-tokens-reset": reset,
        }
    )
    assert (
        info.requests_limit,
        info.requests_remaining,
        info.tokens_limit,
        info.tokens_remaining,
    ) == (50, 49, 30000, 29000)
    assert info.requests_reset_s is not None and 18 <= info.requests_reset_s <= 21


CONVERSATION = ChatRequest(
    system="Be terse.",
    max_tokens=64,
    messages=[
        Message(
            role="user", content=[TextPart("What is in "), ImagePart("data:image/png;base64,AAAA")]
        ),
        Message(
            role="assistant", content="", tool_calls=[ToolCall("call_1", "look", '{"q": "x"}')]
        ),
        Message(role="tool", content="a cat", tool_call_id="call_1", name="look"),
    ],
)


def wire_json(provider: str, request: ChatRequest) -> Any:
    return msgspec.json.decode(adapter(provider).encode(request).body)


def test_openai_encoding() -> None:
    """OpenAI: system first, image parts, assistant tool_calls, tool message by id."""
    wire = wire_json("openai", CONVERSATION)
    assert wire["max_completion_tokens"] == 64
    assert [m["role"] for m in wire["messages"]] == ["system", "user", "assistant", "tool"]
    assert wire["messages"][1]["content"][1] == {
        "type": "image_url",
        "image_url": {"url": "data:image/png;base64,AAAA"},
    }
    assert wire["messages"][2]["tool_calls"][0]["function"] == {
        "name": "look",
        "arguments": '{"q": "x"}',
    }
    assert wire["messages"][3] == {"role": "tool", "tool_call_id": "call_1", "content": "a cat"}
    assert wire_json("openai_compatible", CONVERSATION)["max_tokens"] == 64


def test_anthropic_encoding() -> None:
    """Anthropic: top-level system, base64 image source, tool_use input object, tool_result as user."""
    adapter_ = adapter("anthropic")
    wire_request = adapter_.encode(CONVERSATION)
    assert wire_request.headers["x-api-key"] == "k" and wire_request.headers["anthropic-version"]
    wire = msgspec.json.decode(wire_request.body)
    assert wire["system"] == "Be terse." and wire["max_tokens"] == 64
    assert wire["messages"][0]["content"][1]["source"] == {
        "type": "base64",
        "media_type": "image/png",
        "data": "AAAA",
    }
    assert wire["messages"][1]["content"] == [
        {"type": "tool_use", "id": "call_1", "name": "look", "input": {"q": "x"}}
    ]
    assert wire["messages"][2] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "a cat"}],
    }
    no_max = msgspec.json.decode(
        adapter_.encode(ChatRequest(messages=[Message(role="user", content="x")])).body
    )
    assert no_max["max_tokens"] == 4096


def test_gemini_encoding() -> None:
    """Gemini: systemInstruction, model role, inlineData, functionResponse named after the call."""
    wire_request = adapter("gemini").encode(CONVERSATION)
    assert wire_request.url == "http://h/v1beta/models/m:generateContent"
    wire = msgspec.json.decode(wire_request.body)
    assert wire["systemInstruction"] == {"parts": [{"text": "Be terse."}]}
    assert [c["role"] for c in wire["contents"]] == ["user", "model", "user"]
    assert wire["contents"][0]["parts"][1] == {
        "inlineData": {"mimeType": "image/png", "data": "AAAA"}
    }
    assert wire["contents"][2]["parts"][0]["functionResponse"]["name"] == "look"
    assert wire["generationConfig"] == {"maxOutputTokens": 64}
    streamed = adapter("gemini").encode(ChatRequest(messages=CONVERSATION.messages, stream=True))
    assert streamed.url.endswith(":streamGenerateContent?alt=sse")


def test_ollama_encoding() -> None:
    """Ollama: options.num_predict, base64 images, tool-call arguments as an object."""
    wire = wire_json("ollama", CONVERSATION)
    assert wire["options"] == {"num_predict": 64} and wire["stream"] is False
    assert wire["messages"][1]["images"] == ["AAAA"]
    assert wire["messages"][2]["tool_calls"] == [
        {"function": {"name": "look", "arguments": {"q": "x"}}}
    ]


def sse(*frames: tuple[str, Any]) -> list[SseEvent]:
    return [
        SseEvent(event, data if isinstance(data, bytes) else body(data)) for event, data in frames
    ]


def test_openai_stream_sample() -> None:
    """A recorded OpenAI stream with a tool call and a usage chunk."""
    decoder = adapter("openai").stream_decoder()
    frames = sse(
        (
            "",
            {
                "id": "c1",
                "model": "gpt",
                "choices": [{"index": 0, "delta": {"role": "assistant", "content": "Hi"}}],
            },
        ),
        (
            "",
            {
                "id": "c1",
                "choices": [
                    {
                        "index": 0,
                        "delta": {
                            "tool_calls": [
                                {
                                    "index": 0,
                                    "id": "call_a",
                                    "type": "function",
                                    "function": {"name": "f", "arguments": ""},
                                }
                            ]
                        },
                    }
                ],
            },
        ),
        (
            "",
            {
                "id": "c1",
                "choices": [
                    {
                        "index": 0,
                        "delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]},
                    }
                ],
            },
        ),
        ("", {"id": "c1", "choices": [{"index": 0, "delta": {}, "finish_reason": "tool_calls"}]}),
        ("", {"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}),
        ("", b"[DONE]"),
    )
    events = [e for f in frames for e in decoder.feed(f)]
    assert TextDelta("Hi") in events
    assert ToolCallDelta(index=0, id="call_a", name="f", arguments="") in events
    end = decoder.close()
    assert (
        end.finish_reason == "tool_calls" and end.usage is not None and end.usage.output_tokens == 2
    )


def test_anthropic_stream_sample_cut_before_stop() -> None:
    """An Anthropic stream without message_stop is an interruption, not an answer."""
    decoder = adapter("anthropic").stream_decoder()
    for frame in sse(
        (
            "message_start",
            {"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}},
        ),
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": "Hel"},
            },
        ),
    ):
        list(decoder.feed(frame))
    with pytest.raises(errors.StreamInterrupted, match="before message_stop"):
        decoder.close()


def test_gemini_stream_error_inside_200() -> None:
    """An error object inside a Gemini stream raises StreamInterrupted."""
    decoder = adapter("gemini").stream_decoder()
    with pytest.raises(errors.StreamInterrupted, match="internal"):
        list(
            decoder.feed(
                sse(("", {"error": {"code": 500, "message": "internal", "status": "INTERNAL"}}))[0]
            )
        )


def test_ollama_stream_sample() -> None:
    """Ollama's NDJSON: text lines then a done line with counts."""
    decoder = adapter("ollama").stream_decoder()
    lines = [
        {"model": "m", "message": {"role": "assistant", "content": "Hi"}, "done": False},
        {
            "model": "m",
            "message": {"role": "assistant", "content": ""},
            "done": True,
            "done_reason": "stop",
            "prompt_eval_count": 7,
            "eval_count": 1,
        },
    ]
    events = [e for line in lines for e in decoder.feed(SseEvent("", body(line)))]
    assert TextDelta("Hi") in events
    assert decoder.close() == StreamEnd(finish_reason="stop", usage=decoder.close().usage)
    assert decoder.close().usage is not None and decoder.close().usage.input_tokens == 7  # type: ignore[union-attr]


def test_malformed_body_is_typed() -> None:
    """Garbage where JSON was promised becomes MalformedResponse."""
    decoder = adapter("openai").stream_decoder()
    with pytest.raises(errors.MalformedResponse):
        list(decoder.feed(SseEvent("", b'{"id": "broken", "choices": [')))


def test_unknown_provider_is_a_clear_error() -> None:
    """An unknown provider name lists the known ones."""
    with pytest.raises(errors.UnknownProvider, match="known providers: anthropic, gemini"):
        default_registry().create(Deployment(provider="cohere", model="x"))


def test_capabilities_fail_loudly() -> None:
    """A feature an adapter lacks is refused before any I/O."""
    from llmrelay.types import ResponseFormat

    with pytest.raises(errors.BadRequest, match="no JSON-object mode"):
        adapter("anthropic").check(
            ChatRequest(
                messages=[Message(role="user", content="x")],
                response_format=ResponseFormat(type="json_object"),
            )
        )


def test_api_key_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no api_key given, the provider's environment variable is used."""
    monkeypatch.setenv("GEMINI_API_KEY", "from-env")
    made = default_registry().create(Deployment(provider="gemini", model="m"))
    assert isinstance(made, HttpProvider)
    assert (
        made.encode(ChatRequest(messages=[Message(role="user", content="x")])).headers[
            "x-goog-api-key"
        ]
        == "from-env"
    )
