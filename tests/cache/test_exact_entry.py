"""A cached answer: encoded and decoded whole, replayed as a stream that folds back into it."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from llmrelay.cache.entry import FORMAT, CachedAnswer, decode, encode, hit_response, replay
from llmrelay.types import (
    Attempt,
    ChatResponse,
    RateLimitInfo,
    StreamAccumulator,
    StreamEnd,
    StreamStart,
    TextDelta,
    ToolCall,
    Usage,
)

ANSWER = CachedAnswer(
    response=ChatResponse(
        content="Paris.",
        tool_calls=[ToolCall(id="c1", name="lookup", arguments='{"q": "Paris"}')],
        finish_reason="stop",
        usage=Usage(input_tokens=12, output_tokens=3, cached_input_tokens=4),
        model="gpt-4o-mini",
        provider="openai",
        deployment="openai/gpt-4o-mini",
        id="resp-1",
        latency_s=0.42,
        ttft_s=0.1,
        rate_limits=RateLimitInfo(requests_remaining=9),
        attempts=[Attempt(deployment="openai/gpt-4o-mini", latency_s=0.42)],
        group="default",
        cost_micros=1234,
        request_id="req-1",
    ),
    events=[StreamStart(id="resp-1", model="gpt-4o-mini"), TextDelta("Par"), TextDelta("is."),
            StreamEnd(finish_reason="stop", usage=Usage(input_tokens=12, output_tokens=3))],
    stored_at=1_000_000.0,
)  # fmt: skip


def test_an_answer_decodes_to_what_was_encoded() -> None:
    """Every field of the response and every recorded event survives the round trip."""
    assert decode(encode(ANSWER)) == ANSWER
    plain = CachedAnswer(response=ANSWER.response)
    assert decode(encode(plain)) == plain


def test_a_value_of_another_version_reads_as_no_entry() -> None:
    """Another format mark, fields that no longer decode, or garbage: None, never a raise."""
    data = encode(ANSWER)
    assert decode(b"\x02" + data[1:]) is None
    assert decode(FORMAT + b"\x93\x01\x02\x03") is None  # a msgpack array, not an answer
    assert decode(FORMAT + b"\xc1") is None  # a byte msgpack never uses
    assert decode(data[:-5]) is None
    assert decode(b"") is None


def test_a_recorded_stream_is_replayed_exactly() -> None:
    """A streamed first call is replayed event for event, as the caller first saw it."""
    assert ANSWER.events is not None
    assert replay(ANSWER) == ANSWER.events
    assert replay(ANSWER) is not ANSWER.events


def _fold(answer: CachedAnswer) -> ChatResponse:
    acc = StreamAccumulator()
    for event in replay(answer):
        acc.add(event)
    return acc.response()


_text = st.text(max_size=40)
_ids = st.text(min_size=1, max_size=12)
_calls = st.lists(
    st.builds(ToolCall, id=_ids, name=st.text(min_size=1, max_size=12), arguments=_ids),
    max_size=4,
)
_usage = st.builds(
    Usage,
    input_tokens=st.integers(0, 10**6),
    output_tokens=st.integers(0, 10**6),
    cached_input_tokens=st.integers(0, 10**6),
    reasoning_tokens=st.integers(0, 10**6),
    estimated=st.booleans(),
)
_responses = st.builds(
    ChatResponse,
    content=_text,
    tool_calls=_calls,
    finish_reason=st.sampled_from(["stop", "length", "tool_calls", "content_filter"]),
    usage=_usage,
    model=_text,
    id=_text,
)


@given(_responses)
def test_a_synthesized_stream_folds_back_into_the_response(response: ChatResponse) -> None:
    """Without a recorded stream, the accumulator rebuilds the same id, model, text, tool
    calls, finish reason and usage from the replayed events."""
    folded = _fold(CachedAnswer(response=response))
    assert folded.content == response.content
    assert folded.tool_calls == response.tool_calls
    assert folded.finish_reason == response.finish_reason
    assert folded.usage == response.usage
    assert (folded.id, folded.model) == (response.id, response.model)


def test_a_synthesized_stream_starts_once_and_ends_once() -> None:
    """One StreamStart first, one StreamEnd last, no empty text delta."""
    events = replay(CachedAnswer(response=ChatResponse(content="")))
    assert events == [StreamStart(), StreamEnd(usage=Usage())]


def test_a_hit_costs_nothing_and_saves_what_the_answer_cost() -> None:
    """The hit's response is the first answer, marked cached, without the first call's
    attempts, limits, timings or request id."""
    hit = hit_response(ANSWER, "exact")
    first = ANSWER.response
    assert (hit.content, hit.tool_calls, hit.usage) == (
        first.content,
        first.tool_calls,
        first.usage,
    )
    assert (hit.cached, hit.cost_micros, hit.saved_micros) == ("exact", 0, 1234)
    assert (hit.attempts, hit.rate_limits, hit.latency_s, hit.ttft_s) == (
        [],
        RateLimitInfo(),
        0.0,
        None,
    )
    assert hit.request_id == ""
    assert first.cost_micros == 1234 and first.cached is None
