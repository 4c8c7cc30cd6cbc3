"""Converters on recorded wire samples: pure functions, no network."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec
import pytest

from llmrelay import errors
from llmrelay.providers import Deployment, HttpClient, OllamaProvider, default_registry
from llmrelay.providers.base import HttpProvider, SseEvent
from llmrelay.providers.http import Origin, Timeouts, WireRequest
from llmrelay.providers.ollama import ollama_host_url
from llmrelay.providers.openai import OpenAIProvider, parse_duration
from llmrelay.providers.wire import parse_retry_after
from llmrelay.types import (
    Attempt,
    ChatRequest,
    ImagePart,
    Message,
    ResponseFormat,
    StreamEnd,
    TextDelta,
    TextPart,
    ToolCall,
    ToolCallDelta,
    ToolSpec,
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
    (
        "ollama",
        400,
        {},
        {"error": "the input length exceeds the context length (9000 > 8192)"},
        errors.ContextWindowExceeded,
        {"required_tokens": 9000, "max_tokens": 8192},
    ),
    (
        "ollama",
        400,
        {},
        {"error": "input length exceeds the context length"},
        errors.ContextWindowExceeded,
        {"required_tokens": None, "max_tokens": None},
    ),
    (
        "vllm",
        400,
        {},
        {
            "error": {
                "message": "This model's maximum context length is 8192 tokens. However, you "
                "requested 9000 tokens (8000 in the messages, 1000 in the completion). Please "
                "reduce the length of the messages or completion.",
                "type": "BadRequestError",
                "param": None,
                "code": 400,
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 9000, "max_tokens": 8192},
    ),
    (
        "vllm",
        400,
        {},
        {
            "object": "error",
            "message": "'max_tokens' or 'max_completion_tokens' is too large: 1000. This model's "
            "maximum context length is 8192 tokens and your request has 7500 input tokens "
            "(1000 > 8192 - 7500).",
            "type": "BadRequestError",
            "param": None,
            "code": 400,
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 8500, "max_tokens": 8192},
    ),
    (
        "llamacpp",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "request (13392 tokens) exceeds the available context size "
                "(8192 tokens), try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 13392,
                "n_ctx": 8192,
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 13392, "max_tokens": 8192},
    ),
    (
        "llamacpp",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "the request exceeds the available context size, try increasing it",
                "type": "exceed_context_size_error",
                "n_prompt_tokens": 5000,
                "n_ctx": 4096,
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": 5000, "max_tokens": 4096},
    ),
    (
        "gemini",
        400,
        {},
        {
            "error": {
                "code": 400,
                "message": "The input token count exceeds the maximum number of tokens allowed "
                "1048576.",
                "status": "INVALID_ARGUMENT",
            }
        },
        errors.ContextWindowExceeded,
        {"required_tokens": None, "max_tokens": 1048576},
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
    made = adapter(provider)
    assert (
        error.status_code == status
        and error.provider == made.name
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
    now = datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    later = {"retry-after": "Sun, 01 Mar 2026 12:00:30 GMT"}
    assert parse_retry_after(later, now=lambda: now) == 30.0
    assert parse_retry_after(later, now=lambda: now + 60) == 0.0  # a past date: no wait
    assert parse_retry_after({}) is None


def test_anthropic_rate_limit_headers() -> None:
    """anthropic-ratelimit-* headers with RFC 3339 resets become RateLimitInfo."""
    reset = "2026-03-01T12:00:20Z"
    made = adapter("anthropic")
    made.clock = lambda: datetime(2026, 3, 1, 12, 0, 0, tzinfo=UTC).timestamp()
    info = made.rate_limits(
        {
            "anthropic-ratelimit-requests-limit": "50",
            "anthropic-ratelimit-requests-remaining": "49",
            "anthropic-ratelimit-requests-reset": reset,
            "anthropic-ratelimit-tokens-limit": "38000",
            "anthropic-ratelimit-tokens-remaining": "37000",
            "anthropic-ratelimit-tokens-reset": reset,
            "anthropic-ratelimit-input-tokens-limit": "30000",
            "anthropic-ratelimit-input-tokens-remaining": "29000",
            "anthropic-ratelimit-input-tokens-reset": reset,
            "anthropic-ratelimit-output-tokens-limit": "8000",
            "anthropic-ratelimit-output-tokens-remaining": "7900",
            "anthropic-ratelimit-output-tokens-reset": reset,
        }
    )
    assert (
        info.requests_limit,
        info.requests_remaining,
        info.tokens_limit,
        info.tokens_remaining,
    ) == (50, 49, 38000, 37000)
    assert (
        info.input_tokens_limit,
        info.input_tokens_remaining,
        info.output_tokens_limit,
        info.output_tokens_remaining,
    ) == (30000, 29000, 8000, 7900)
    assert info.requests_reset_s == 20.0 and info.tokens_reset_s == 20.0


def test_anthropic_rate_limits_without_the_split_headers() -> None:
    """A response with only the combined token headers leaves the input/output split unknown."""
    info = adapter("anthropic").rate_limits(
        {"anthropic-ratelimit-tokens-limit": "30000", "anthropic-ratelimit-tokens-remaining": "1"}
    )
    assert (info.tokens_limit, info.tokens_remaining) == (30000, 1)
    assert info.input_tokens_limit is None and info.output_tokens_remaining is None


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


# -- rendered error texts ---------------------------------------------------------------


def test_error_text_names_the_deployment_once() -> None:
    """A deployment id that starts with the provider is not prefixed with it again."""
    error = adapter("openai")._failure(
        429, {}, body({"error": {"message": "Rate limit reached", "code": "rate_limit_exceeded"}})
    )
    assert str(error) == "[openai/m HTTP 429] Rate limit reached"
    named = errors.RateLimited("slow down", provider="openai", deployment="primary")
    assert str(named) == "[openai/primary] slow down"
    assert str(errors.BadRequest("no provider yet")) == "no provider yet"


def test_alias_adapter_renders_its_deployment() -> None:
    """An aliased server's default id (vllm/m) already names it; the adapter name is not added."""
    error = adapter("vllm")._failure(500, {}, body({"error": {"message": "engine dead"}}))
    assert str(error) == "[vllm/m HTTP 500] engine dead"


@pytest.mark.parametrize(
    ("raw", "text"),
    [
        (
            b"<html>\n  <body>Bad gateway</body>\n</html>\n",
            "[openai/m HTTP 502] unrecognised error body: <html> <body>Bad gateway</body> </html>",
        ),
        (b"", "[openai/m HTTP 502] empty error body"),
        (b'{"detail": "upstream closed"}', "[openai/m HTTP 502] upstream closed"),
        (b'{"message": "gateway says no"}', "[openai/m HTTP 502] gateway says no"),
        (b'{"error": "plain string error"}', "[openai/m HTTP 502] plain string error"),
        (
            b'{"detail": [{"loc": ["body"], "msg": "field required"}]}',
            "[openai/m HTTP 502] field required",
        ),
        (
            b'{"status": "down", "code": 7}',
            '[openai/m HTTP 502] unrecognised error body: {"status": "down", "code": 7}',
        ),
        (b"\xff\xfeoops", "[openai/m HTTP 502] unrecognised error body: \ufffd\ufffdoops"),
    ],
)
def test_unrecognised_error_bodies_read_as_sentences(raw: bytes, text: str) -> None:
    """A body in no documented shape gives its own message, or its text — never a repr."""
    assert str(adapter("openai")._failure(502, {}, raw)) == text


def test_long_error_body_is_cut_at_a_word() -> None:
    """A long unrecognised body is quoted up to a word boundary and ends with an ellipsis."""
    raw = ("upstream failure " * 40).encode()
    message = adapter("gemini")._failure(503, {}, raw).message
    quoted = message.removeprefix("unrecognised error body: ")
    assert quoted.endswith("failure…") or quoted.endswith("upstream…")
    assert 250 <= len(quoted) <= 300
    assert ("upstream failure " * 40).startswith(quoted.removesuffix("…"))


def test_error_without_message_names_its_type() -> None:
    """An OpenAI-shaped error with no message says so and gives its type, not 'HTTP 500'."""
    error = adapter("openai")._failure(500, {}, body({"error": {"type": "server_error"}}))
    assert str(error) == "[openai/m HTTP 500] an error with no message (type server_error)"


def test_stream_errors_are_text_not_reprs() -> None:
    """In-stream errors quote the provider's words; raw frames are decoded text, not bytes."""
    anthropic = adapter("anthropic").stream_decoder()
    with pytest.raises(errors.StreamInterrupted) as caught:
        list(anthropic.feed(SseEvent("error", b'{"type": "error", "detail": "gone"}')))
    assert caught.value.message == ('error inside the stream: {"type": "error", "detail": "gone"}')
    with pytest.raises(errors.StreamInterrupted) as caught:
        list(
            anthropic.feed(
                SseEvent(
                    "error",
                    body(
                        {"type": "error", "error": {"type": "overloaded_error", "message": "Busy"}}
                    ),
                )
            )
        )
    assert caught.value.message == "error inside the stream: Busy"
    ollama = adapter("ollama").stream_decoder()
    with pytest.raises(errors.StreamInterrupted) as caught:
        list(ollama.feed(SseEvent("", body({"error": {"message": "model unloaded"}}))))
    assert caught.value.message == "error inside the stream: model unloaded"


def test_all_models_exhausted_gives_whole_messages() -> None:
    """Each attempt's message is whole (no mid-word cut), with its status; skips have none."""
    long = (
        "This model's maximum context length is 128000 tokens. However, your messages resulted "
        "in 130452 tokens. Please reduce the length of the messages or completion."
    )
    exhausted = errors.AllModelsExhausted(
        "every deployment of group 'default' failed",
        attempts=[
            Attempt(
                deployment="openai/gpt-4o-mini",
                error="ContextWindowExceeded",
                message=long,
                status_code=400,
            ),
            Attempt(
                deployment="anthropic/claude",
                error="ContextWindowExceeded",
                message="estimated 130000 tokens exceed 90% of the 100000-token window; not sent",
            ),
            Attempt(deployment="ollama/llama3.2", error="Timeout", status_code=None),
        ],
    )
    assert str(exhausted) == (
        "every deployment of group 'default' failed — "
        f"openai/gpt-4o-mini: ContextWindowExceeded (HTTP 400: {long}); "
        "anthropic/claude: ContextWindowExceeded (estimated 130000 tokens exceed 90% of the "
        "100000-token window; not sent); "
        "ollama/llama3.2: Timeout"
    )


def test_all_models_exhausted_bounds_huge_messages_at_a_word() -> None:
    """A message longer than the bound is cut at a word boundary, keeping at least 300 chars."""
    huge = "word " * 200
    text = str(
        errors.AllModelsExhausted(
            "all failed", attempts=[Attempt(deployment="d", error="BadRequest", message=huge)]
        )
    )
    detail = text.removeprefix("all failed — d: BadRequest (").removesuffix(")")
    assert detail.endswith("word…") and 300 <= len(detail) <= errors.ATTEMPT_MESSAGE_LIMIT


@pytest.mark.parametrize(
    ("text", "limit", "expected"),
    [
        ("short  text\n", 50, "short text"),
        ("alpha beta gamma delta", 16, "alpha beta…"),
        ("x" * 30, 10, "x" * 9 + "…"),
        ("one, two, three", 12, "one, two…"),
    ],
)
def test_shorten_cuts_at_word_boundaries(text: str, limit: int, expected: str) -> None:
    """shorten collapses whitespace and cuts between words, ellipsis included in the bound."""
    assert errors.shorten(text, limit) == expected
    assert len(errors.shorten(text, limit)) <= limit


# -- capabilities, checked before any I/O -------------------------------------------------

JSON_OBJECT = ChatRequest(
    messages=[Message(role="user", content="x")],
    response_format=ResponseFormat(type="json_object"),
)


@pytest.mark.parametrize(
    ("provider", "supported"),
    [
        ("openai", True),
        ("openai_compatible", True),
        ("vllm", True),
        ("gemini", True),
        ("ollama", True),
        ("anthropic", False),
    ],
)
def test_json_object_mode_is_declared(provider: str, supported: bool) -> None:
    """JSON-object mode is refused in check() exactly where the adapter declares no support."""
    made = adapter(provider)
    assert made.SUPPORTS_JSON_OBJECT is supported
    if supported:
        made.check(JSON_OBJECT)
        made.check(JSON_OBJECT, stream=True)
        return
    with pytest.raises(errors.BadRequest) as caught:
        made.check(JSON_OBJECT)
    assert str(caught.value) == (
        "[anthropic/m] anthropic has no JSON-object mode; use a json_schema response_format"
    )


def test_encode_no_longer_decides_capabilities() -> None:
    """encode() only converts: an unsupported request is refused by check(), not by encode()."""
    wire = wire_json("anthropic", JSON_OBJECT)
    assert "output_config" not in wire


class _TextOnly(OpenAIProvider):
    """An adapter declaring fewer capabilities, as a plugin for a simpler server would."""

    name = "text_only"
    SUPPORTS_STREAMING = False
    SUPPORTS_TOOLS = False
    SUPPORTS_JSON_SCHEMA = False
    SUPPORTS_JSON_OBJECT = False
    SUPPORTS_IMAGES = False


class _NoNetwork(HttpClient):
    """A client that records whether anything tried to reach the network."""

    def __init__(self) -> None:
        super().__init__()
        self.opened = 0

    def open(self, wire: WireRequest, timeouts: Timeouts, origin: Origin) -> Any:
        self.opened += 1
        raise AssertionError("no request may be sent")


def text_only() -> tuple[_TextOnly, _NoNetwork]:
    client = _NoNetwork()
    deployment = Deployment(provider="text_only", model="m", base_url="http://h")
    return _TextOnly(deployment, client), client


@pytest.mark.parametrize(
    ("request_", "stream", "reason"),
    [
        (
            ChatRequest(messages=[Message(role="user", content="x")]),
            True,
            "does not support streaming",
        ),
        (
            ChatRequest(messages=[Message(role="user", content="x")], tools=[ToolSpec(name="f")]),
            False,
            "does not support tool calling",
        ),
        (
            ChatRequest(
                messages=[Message(role="user", content="x")],
                response_format=ResponseFormat(type="json_schema", json_schema={}),
            ),
            False,
            "does not support JSON-schema output",
        ),
        (JSON_OBJECT, False, "has no JSON-object mode"),
        (
            ChatRequest(
                messages=[Message(role="user", content=[ImagePart("data:image/png;base64,AA")])]
            ),
            False,
            "does not accept images",
        ),
    ],
    ids=["stream", "tools", "json_schema", "json_object", "images"],
)
async def test_declared_capabilities_refuse_before_io(
    request_: ChatRequest, stream: bool, reason: str
) -> None:
    """check() refuses what is not declared; send/stream call it and never open a connection."""
    made, client = text_only()
    with pytest.raises(errors.BadRequest) as caught:
        made.check(request_, stream=stream)
    assert str(caught.value) == f"[text_only/m] text_only {reason}"
    with pytest.raises(errors.BadRequest, match=reason):
        if stream:
            [event async for event in made.stream(request_)]
        else:
            await made.send(request_)
    assert client.opened == 0


def test_plain_request_passes_every_check() -> None:
    """A text-only request is accepted, streamed or not, by an adapter that declares little."""
    made, _ = text_only()
    made.check(ChatRequest(messages=[Message(role="user", content="x")]))


def test_ollama_refuses_linked_images() -> None:
    """Ollama takes base64 images only: a linked image is refused instead of silently dropped."""
    made = adapter("ollama")
    linked = ChatRequest(
        messages=[Message(role="user", content=[ImagePart("https://example.com/cat.png")])]
    )
    with pytest.raises(errors.BadRequest, match="only as base64 data: URLs"):
        made.check(linked)
    made.check(CONVERSATION)  # its image is a data: URL
    adapter("anthropic").check(linked)


def test_forced_tool_choice_is_declared() -> None:
    """Ollama cannot force a tool; the others can, and 'auto' passes everywhere."""
    forced = ChatRequest(
        messages=[Message(role="user", content="x")],
        tools=[ToolSpec(name="f")],
        tool_choice="required",
    )
    with pytest.raises(errors.BadRequest) as caught:
        adapter("ollama").check(forced)
    assert caught.value.message == 'ollama cannot force a tool call (tool_choice "required")'
    adapter("gemini").check(forced)
    adapter("ollama").check(msgspec.structs.replace(forced, tool_choice="auto"))


# -- base URL from the environment ---------------------------------------------------------


@pytest.mark.parametrize(
    ("provider", "env", "url", "expected"),
    [
        ("openai", "OPENAI_BASE_URL", "http://proxy:8080/v1/", "http://proxy:8080/v1"),
        ("anthropic", "ANTHROPIC_BASE_URL", "https://gw.example", "https://gw.example"),
        ("gemini", "GEMINI_BASE_URL", "http://g:1", "http://g:1"),
        ("gemini", "GOOGLE_GEMINI_BASE_URL", "http://g:2", "http://g:2"),
        ("ollama", "OLLAMA_BASE_URL", "http://gpu-box:11434", "http://gpu-box:11434"),
        ("ollama", "OLLAMA_HOST", "http://gpu-box:9999", "http://gpu-box:9999"),
    ],
)
def test_base_url_from_environment(
    monkeypatch: pytest.MonkeyPatch, provider: str, env: str, url: str, expected: str
) -> None:
    """With no base_url, the provider's variable is used; a configured base_url wins over it."""
    for name in ("OPENAI_BASE_URL", "ANTHROPIC_BASE_URL", "GEMINI_BASE_URL", "OLLAMA_BASE_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("GOOGLE_GEMINI_BASE_URL", raising=False)
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    monkeypatch.setenv(env, url)
    registry = default_registry()
    made = registry.create(Deployment(provider=provider, model="m"))
    assert isinstance(made, HttpProvider) and made.base_url == expected
    configured = registry.create(Deployment(provider=provider, model="m", base_url="http://mine"))
    assert isinstance(configured, HttpProvider) and configured.base_url == "http://mine"


def test_ollama_base_url_comes_before_ollama_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """OLLAMA_BASE_URL is read first; OLLAMA_HOST is the fallback Ollama's own client reads."""
    monkeypatch.setenv("OLLAMA_HOST", "http://host-var:11434")
    monkeypatch.setenv("OLLAMA_BASE_URL", "http://base-var:11434")
    assert OllamaProvider(Deployment(provider="ollama", model="m")).base_url == (
        "http://base-var:11434"
    )
    monkeypatch.delenv("OLLAMA_BASE_URL")
    assert OllamaProvider(Deployment(provider="ollama", model="m")).base_url == (
        "http://host-var:11434"
    )
    monkeypatch.delenv("OLLAMA_HOST")
    assert OllamaProvider(Deployment(provider="ollama", model="m")).base_url == (
        "http://localhost:11434"
    )


@pytest.mark.parametrize(
    ("value", "url"),
    [
        ("0.0.0.0", "http://0.0.0.0:11434"),
        ("gpu-box:8000", "http://gpu-box:8000"),
        (":11434", "http://127.0.0.1:11434"),
        ("[::1]", "http://[::1]:11434"),
        ("https://ollama.example", "https://ollama.example"),
    ],
)
def test_ollama_host_is_read_like_ollama_reads_it(value: str, url: str) -> None:
    """A scheme-less OLLAMA_HOST means http, and a missing port 11434, as for Ollama's client."""
    assert ollama_host_url(value) == url


@pytest.mark.parametrize(
    ("base_url", "env", "message"),
    [
        (
            "localhost:11434",
            None,
            'deployment ollama/m: base URL "localhost:11434" (from base_url) must be an '
            "http:// or https:// URL",
        ),
        (
            "ftp://files.example",
            None,
            'deployment ollama/m: base URL "ftp://files.example" (from base_url) must be an '
            "http:// or https:// URL",
        ),
        (
            None,
            "gpu-box:11434",
            'deployment ollama/m: base URL "gpu-box:11434" (from OLLAMA_BASE_URL) must be an '
            "http:// or https:// URL",
        ),
        (
            "http://",
            None,
            'deployment ollama/m: base URL "http://" (from base_url) must be an '
            "http:// or https:// URL",
        ),
    ],
)
def test_base_url_must_be_http(
    monkeypatch: pytest.MonkeyPatch, base_url: str | None, env: str | None, message: str
) -> None:
    """A base URL without an http(s) scheme is refused, naming the deployment and the URL."""
    monkeypatch.delenv("OLLAMA_HOST", raising=False)
    if env is None:
        monkeypatch.delenv("OLLAMA_BASE_URL", raising=False)
    else:
        monkeypatch.setenv("OLLAMA_BASE_URL", env)
    with pytest.raises(ValueError, match=r"^deployment ollama/m: ") as caught:
        OllamaProvider(Deployment(provider="ollama", model="m", base_url=base_url))
    assert str(caught.value) == message


def test_compatible_server_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    """openai_compatible reads no variable (OPENAI_BASE_URL is OpenAI's): base_url is required."""
    monkeypatch.setenv("OPENAI_BASE_URL", "http://not-for-vllm/v1")
    with pytest.raises(ValueError, match="base_url is required") as caught:
        default_registry().create(Deployment(provider="vllm", model="m"))
    assert str(caught.value) == "deployment vllm/m: base_url is required for openai_compatible"
