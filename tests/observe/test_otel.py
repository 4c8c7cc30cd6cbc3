"""The OpenTelemetry sink: a GenAI span per request, a child per attempt, in the caller's trace.

A real SmartLLM calls the simulator; the spans go to the SDK's in-memory exporter (or, for
the sink's own exporting provider, over OTLP/HTTP to a loopback collector).
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
from opentelemetry.trace import SpanKind, StatusCode

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import AllModelsExhausted
from llmrelay.observe.otel import OtelSettings, OtelSink
from llmrelay.testing import SimulatorHandle
from observe.loopback import Loopback

SIM = {"context_window": 16000, "max_output_tokens": 4096}
PRICED = {
    "anthropic/sim-anthropic": {"price": {"input": 3.0, "output": 15.0}, **SIM},
    "openai/sim-openai": {"price": {"input": 1.0, "output": 4.0}, **SIM},
}


class Traced:
    """An in-memory tracer provider and the spans it ended."""

    def __init__(self) -> None:
        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider()
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def spans(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return sorted((s for s in self.spans() if s.name == name), key=start)

    def children(self, parent: ReadableSpan) -> list[ReadableSpan]:
        return sorted(
            (s for s in self.spans() if parent_of(s) == parent.context.span_id), key=start
        )


def start(span: ReadableSpan) -> int:
    assert span.start_time is not None
    return span.start_time


def end(span: ReadableSpan) -> int:
    assert span.end_time is not None
    return span.end_time


def parent_of(span: ReadableSpan) -> int | None:
    return span.parent.span_id if span.parent is not None else None


def attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.fixture
def traced() -> Iterator[Traced]:
    made = Traced()
    yield made
    made.provider.shutdown()


def two_deployments(simulator: SimulatorHandle, sink: OtelSink, **routing: Any) -> LLMBuilder:
    return (
        LLMBuilder()
        .with_catalog(PRICED)
        .with_primary("anthropic", "sim-anthropic", base_url=simulator.url, api_key="sk-o1")
        .with_fallback("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-o2")
        .with_routing(retries=0, **routing)
        .with_observer(sink)
    )


@pytest.fixture
async def llm(simulator: SimulatorHandle, traced: Traced) -> AsyncIterator[SmartLLM]:
    built = two_deployments(simulator, OtelSink(tracer_provider=traced.provider)).build()
    yield built
    await built.aclose()


def flush(llm: SmartLLM) -> None:
    assert llm.observer is not None and llm.observer.flush(10)


async def test_a_request_is_a_span_in_the_callers_trace_with_a_child_per_attempt(
    llm: SmartLLM, traced: Traced
) -> None:
    """The request span's parent is the caller's current span; its attempt span is its child;
    both carry the GenAI attributes of the answer; no content and no key is recorded."""
    with traced.tracer.start_as_current_span("caller") as caller:
        answer = await llm.ainvoke("hello there", max_tokens=64, temperature=0.5, top_p=0.9,
                                   key="team-key", user="ana")  # fmt: skip
    flush(llm)
    (request,) = traced.named("chat default")
    assert request.kind is SpanKind.CLIENT
    assert parent_of(request) == caller.get_span_context().span_id
    assert request.context.trace_id == caller.get_span_context().trace_id
    (attempt,) = traced.children(request)
    assert attempt.name == "chat sim-anthropic" and attempt.kind is SpanKind.CLIENT
    usage = answer.usage
    common = {
        gen_ai.GEN_AI_OPERATION_NAME: "chat",
        gen_ai.GEN_AI_PROVIDER_NAME: "anthropic",
        gen_ai.GEN_AI_REQUEST_MAX_TOKENS: 64,
        gen_ai.GEN_AI_REQUEST_TEMPERATURE: 0.5,
        gen_ai.GEN_AI_REQUEST_TOP_P: 0.9,
        gen_ai.GEN_AI_RESPONSE_MODEL: answer.model,
        gen_ai.GEN_AI_RESPONSE_ID: answer.id,
        gen_ai.GEN_AI_RESPONSE_FINISH_REASONS: ("stop",),
        gen_ai.GEN_AI_USAGE_INPUT_TOKENS: usage.input_tokens,
        gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS: usage.output_tokens,
        "llmrelay.request_id": answer.request_id,
    }
    assert attrs(request) == {
        **common,
        gen_ai.GEN_AI_REQUEST_MODEL: "default",
        "llmrelay.group": "default",
        "llmrelay.deployment": "anthropic/sim-anthropic",
        "llmrelay.attempts": 1,
        "llmrelay.streamed": False,
        "llmrelay.cost_usd": answer.cost_usd,
    }
    assert answer.cost_usd > 0 and answer.id and usage.input_tokens > 0
    assert attrs(attempt) == {
        **common,
        gen_ai.GEN_AI_REQUEST_MODEL: "sim-anthropic",
        "llmrelay.deployment": "anthropic/sim-anthropic",
        "llmrelay.attempt": 0,
        "llmrelay.queue_wait_s": answer.attempts[0].wait_s,
        "http.response.status_code": 200,
    }
    assert request.status.status_code is StatusCode.UNSET
    assert start(request) <= start(attempt) <= end(attempt) <= end(request)
    recorded = json.dumps([attrs(s) for s in traced.spans()], default=str)
    assert "sk-o1" not in recorded and "team-key" not in recorded and "hello" not in recorded


async def test_a_fallback_shows_both_attempts_in_order_and_why_it_fell_back(
    llm: SmartLLM, traced: Traced, simulator: SimulatorHandle
) -> None:
    """The primary overloaded: two attempt spans, the first failed (error.type, status
    ERROR, 529), the second answered; the request span names the fallback's reason."""
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    answer = await llm.ainvoke("hello")
    flush(llm)
    (request,) = traced.named("chat default")
    first, second = traced.children(request)
    assert attrs(request)["llmrelay.attempts"] == 2
    assert attrs(request)["llmrelay.fallback_reason"] == "Overloaded"
    assert attrs(request)["llmrelay.deployment"] == "openai/sim-openai"
    assert attrs(request)[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs(request)["llmrelay.request_id"] == answer.request_id
    assert request.status.status_code is StatusCode.UNSET
    assert first.name == "chat sim-anthropic"
    assert attrs(first)["error.type"] == "Overloaded"
    assert attrs(first)[gen_ai.GEN_AI_PROVIDER_NAME] == "anthropic"
    assert attrs(first)["http.response.status_code"] == 529
    assert first.status.status_code is StatusCode.ERROR
    assert gen_ai.GEN_AI_RESPONSE_MODEL not in attrs(first)
    assert second.name == "chat sim-openai"
    assert attrs(second)[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs(second)[gen_ai.GEN_AI_RESPONSE_MODEL] == answer.model
    assert "error.type" not in attrs(second)
    assert [attrs(s)["llmrelay.attempt"] for s in (first, second)] == [0, 1]
    assert end(first) <= start(second) <= end(second) <= end(request)


async def test_a_failed_request_is_an_error_span_with_its_error_type(
    llm: SmartLLM, traced: Traced, simulator: SimulatorHandle
) -> None:
    """Every deployment failed: the request span has error.type AllModelsExhausted and
    status ERROR, and each attempt span its own error."""
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    simulator.set_faults("sim-openai", {"500": 1.0})
    with pytest.raises(AllModelsExhausted):
        await llm.ainvoke("hello")
    flush(llm)
    (request,) = traced.named("chat default")
    assert attrs(request)["error.type"] == "AllModelsExhausted"
    assert request.status.status_code is StatusCode.ERROR
    assert "every deployment" in (request.status.description or "")
    assert attrs(request)["llmrelay.attempts"] == 2
    assert attrs(request)["llmrelay.fallback_reason"] == "Overloaded"
    assert gen_ai.GEN_AI_USAGE_INPUT_TOKENS not in attrs(request)
    assert "llmrelay.cost_usd" not in attrs(request)
    assert [(s.name, attrs(s)["error.type"], s.status.status_code)
            for s in traced.children(request)] == [
        ("chat sim-anthropic", "Overloaded", StatusCode.ERROR),
        ("chat sim-openai", "ProviderUnavailable", StatusCode.ERROR),
    ]  # fmt: skip


async def test_a_stream_records_its_time_to_first_token(llm: SmartLLM, traced: Traced) -> None:
    """A streamed call: streamed flags and the time to first chunk, within the request."""
    async for _ in llm.astream("one two three four"):
        pass
    flush(llm)
    (request,) = traced.named("chat default")
    (attempt,) = traced.children(request)
    for span in (request, attempt):
        ttft = attrs(span)[gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK]
        assert attrs(span)["llmrelay.ttft_s"] == ttft
        assert 0 < ttft * 1e9 <= end(request) - start(request)
        assert attrs(span)[gen_ai.GEN_AI_REQUEST_STREAM] is True
        assert attrs(span)[gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS] > 0
    assert attrs(request)["llmrelay.streamed"] is True


async def test_a_cache_hit_is_a_request_span_without_attempts(
    simulator: SimulatorHandle, traced: Traced
) -> None:
    """The second identical call is answered from the cache: a request span in the caller's
    trace marked exact, with the saved cost and no usage and no attempt spans."""
    builder = two_deployments(simulator, OtelSink(tracer_provider=traced.provider))
    llm = builder.with_cache("memory", ttl_s=600).build()
    try:
        first = await llm.ainvoke("capital of France?", temperature=0)
        with traced.tracer.start_as_current_span("caller") as caller:
            again = await llm.ainvoke("capital of France?", temperature=0)
        flush(llm)
    finally:
        await llm.aclose()
    made, hit = traced.named("chat default")
    assert again.cached == "exact"
    assert attrs(made)["llmrelay.request_id"] == first.request_id
    assert "llmrelay.cache_hit" not in attrs(made)
    assert parent_of(hit) == caller.get_span_context().span_id
    assert traced.children(hit) == []
    assert start(hit) == end(hit)
    hit_attrs = attrs(hit)
    assert hit_attrs["llmrelay.cache_hit"] == "exact"
    assert hit_attrs["llmrelay.saved_usd"] == first.cost_usd > 0
    assert hit_attrs["llmrelay.cost_usd"] == 0.0
    assert hit_attrs["llmrelay.request_id"] == again.request_id
    assert hit_attrs[gen_ai.GEN_AI_RESPONSE_MODEL] == first.model
    assert gen_ai.GEN_AI_USAGE_INPUT_TOKENS not in hit_attrs


async def test_content_is_recorded_only_when_asked(
    simulator: SimulatorHandle, traced: Traced
) -> None:
    """With record_content: the input, system instructions and output as the conventions'
    JSON messages on the request span (never on attempt spans)."""
    sink = OtelSink(OtelSettings(record_content=True), tracer_provider=traced.provider)
    llm = two_deployments(simulator, sink).build()
    try:
        answer = await llm.ainvoke("Say hi", system="Be brief.")
        flush(llm)
    finally:
        await llm.aclose()
    (request,) = traced.named("chat default")
    (attempt,) = traced.children(request)
    recorded = attrs(request)
    assert json.loads(recorded[gen_ai.GEN_AI_INPUT_MESSAGES]) == [
        {"role": "user", "parts": [{"type": "text", "content": "Say hi"}]}
    ]
    assert json.loads(recorded[gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS]) == [
        {"type": "text", "content": "Be brief."}
    ]
    assert json.loads(recorded[gen_ai.GEN_AI_OUTPUT_MESSAGES]) == [
        {
            "role": "assistant",
            "parts": [{"type": "text", "content": answer.content}],
            "finish_reason": "stop",
        }
    ]
    assert answer.content
    assert not {gen_ai.GEN_AI_INPUT_MESSAGES, gen_ai.GEN_AI_OUTPUT_MESSAGES} & set(attrs(attempt))


async def test_a_named_deployment_is_described_by_the_routers_provider_and_model(
    simulator: SimulatorHandle, traced: Traced
) -> None:
    """A deployment with a name of its own: the attempt span still names its model and
    provider, read from the router."""
    llm = (
        LLMBuilder()
        .with_catalog(PRICED)
        .with_primary(
            "openai", "sim-openai", name="main", base_url=simulator.url + "/v1", api_key="sk-o3"
        )
        .with_observer(OtelSink(tracer_provider=traced.provider))
        .build()
    )
    try:
        await llm.ainvoke("hello")
        flush(llm)
    finally:
        await llm.aclose()
    (request,) = traced.named("chat default")
    (attempt,) = traced.children(request)
    assert attempt.name == "chat sim-openai"
    assert attrs(attempt)["llmrelay.deployment"] == "main"
    assert attrs(attempt)[gen_ai.GEN_AI_PROVIDER_NAME] == "openai"
    assert attrs(attempt)[gen_ai.GEN_AI_REQUEST_MODEL] == "sim-openai"


def test_by_default_spans_go_to_the_global_tracer_provider() -> None:
    """Neither a provider nor an endpoint: spans go to the global provider, even one the
    application sets after the sink was made."""
    code = (
        "import time\n"
        "from opentelemetry import trace\n"
        "from opentelemetry.sdk.trace import TracerProvider\n"
        "from opentelemetry.sdk.trace.export import SimpleSpanProcessor\n"
        "from opentelemetry.sdk.trace.export.in_memory_span_exporter import "
        "InMemorySpanExporter\n"
        "from llmrelay.events import Event, EventKind\n"
        "from llmrelay.observe.otel import OtelSink\n"
        "sink = OtelSink()\n"
        "exporter = InMemorySpanExporter()\n"
        "provider = TracerProvider()\n"
        "provider.add_span_processor(SimpleSpanProcessor(exporter))\n"
        "trace.set_tracer_provider(provider)\n"
        "sink.handle(Event(kind=EventKind.FINISHED, group='g', request_id='r',\n"
        "                  started_at=time.time(), latency_s=0.01))\n"
        "sink.close()\n"
        "print([s.name for s in exporter.get_finished_spans()])\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "['chat g']"


@pytest.fixture
def collector() -> Iterator[Loopback]:
    made = Loopback()
    yield made
    made.close()


async def test_with_an_endpoint_the_sink_exports_over_otlp_and_flushes_on_close(
    simulator: SimulatorHandle, collector: Loopback
) -> None:
    """A tracer provider of the sink's own: spans reach the OTLP endpoint, with llmrelay's
    service name, by the time the SmartLLM is closed."""
    settings = OtelSettings(endpoint=collector.url + "/v1/traces", service_name="relay-test")
    llm = two_deployments(simulator, OtelSink(settings)).build()
    try:
        await llm.ainvoke("hello")
    finally:
        await llm.aclose()
    exported = ExportTraceServiceRequest()
    for _, path, _, body in collector.requests:
        assert path == "/v1/traces"
        exported.MergeFromString(body)
    (resource,) = exported.resource_spans
    service = {a.key: a.value.string_value for a in resource.resource.attributes}
    assert service["service.name"] == "relay-test"
    names = sorted(s.name for scope in resource.scope_spans for s in scope.spans)
    assert names == ["chat default", "chat sim-anthropic"]


def test_the_module_imports_without_opentelemetry() -> None:
    """Without the ``otel`` extra the module (and its settings) still import."""
    code = (
        "import sys\n"
        "for name in ('opentelemetry', 'opentelemetry.trace', 'opentelemetry.sdk'):\n"
        "    sys.modules[name] = None\n"
        "from llmrelay.observe.otel import OtelSettings\n"
        "print(OtelSettings().record_content)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
