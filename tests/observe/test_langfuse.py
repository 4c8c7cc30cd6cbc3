"""The Langfuse sink: one generation per request, sent by the real Langfuse SDK.

The SDK exports OTLP/HTTP (protobuf) to ``{host}/api/public/otel/v1/traces``; here the host
is a loopback server that keeps what it is sent, decoded with OpenTelemetry's protobuf
classes. Closing the SmartLLM closes the sink, which flushes synchronously.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.errors import AllModelsExhausted, ConfigError
from llmrelay.observe.langfuse import LangfuseSettings, LangfuseSink
from llmrelay.testing import SimulatorHandle
from observe.loopback import Loopback

SIM = {"context_window": 16000, "max_output_tokens": 4096}
PRICED = {
    "anthropic/sim-anthropic": {"price": {"input": 3.0, "output": 15.0}, **SIM},
    "openai/sim-openai": {"price": {"input": 1.0, "output": 4.0}, **SIM},
}
TRACES = "/api/public/otel/v1/traces"


@dataclass
class Span:
    name: str
    start: int
    end: int
    parent: bytes
    attributes: dict[str, Any]

    def json(self, key: str) -> Any:
        return json.loads(self.attributes[key])


def value(any_value: AnyValue) -> Any:
    kind = any_value.WhichOneof("value")
    if kind == "array_value":
        return [value(v) for v in any_value.array_value.values]
    return getattr(any_value, kind) if kind else None


class LangfuseServer(Loopback):
    """A loopback stand-in for Langfuse's HTTP API that keeps every request it is sent."""

    def spans(self) -> list[Span]:
        exported = ExportTraceServiceRequest()
        for method, path, _, body in self.requests:
            if (method, path) == ("POST", TRACES):
                exported.MergeFromString(body)
        return [
            Span(
                s.name,
                s.start_time_unix_nano,
                s.end_time_unix_nano,
                s.parent_span_id,
                {a.key: value(a.value) for a in s.attributes},
            )
            for resource in exported.resource_spans
            for scope in resource.scope_spans
            for s in scope.spans
        ]

    def generation(self) -> Span:
        (span,) = self.spans()
        assert span.attributes["langfuse.observation.type"] == "generation"
        return span


@pytest.fixture(autouse=True)
def no_langfuse_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK reads LANGFUSE_* variables: none of the machine's may steer these tests."""
    for name in [n for n in os.environ if n.startswith("LANGFUSE_")]:
        monkeypatch.delenv(name)


@pytest.fixture
def langfuse() -> Iterator[LangfuseServer]:
    server = LangfuseServer()
    yield server
    server.close()


def settings(server: LangfuseServer, **fields: Any) -> LangfuseSettings:
    """A public key of its own per test: the SDK keeps one pipeline per key per process."""
    fields.setdefault("public_key", f"pk-lf-{uuid.uuid4().hex}")
    return LangfuseSettings(secret_key="sk-lf-test", host=server.url, **fields)


def relay(simulator: SimulatorHandle, sink: LangfuseSink, *, cache: bool = False) -> SmartLLM:
    builder = (
        LLMBuilder()
        .with_catalog(PRICED)
        .with_primary("anthropic", "sim-anthropic", base_url=simulator.url, api_key="sk-f1")
        .with_fallback("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-f2")
        .with_routing(retries=0)
        .with_observer(sink)
    )
    if cache:
        builder.with_cache("memory", ttl_s=600)
    return builder.build()


def seconds(ns: int) -> float:
    return ns / 1e9


def iso_seconds(text: str) -> float:
    return datetime.fromisoformat(text).timestamp()


async def test_a_fallback_is_one_generation_with_its_figures_trail_and_trace_attributes(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """Model, usage, cost, input and output, the attempts that led to the answer, and the
    user, session and tags on the trace, sent with the project's keys."""
    config = settings(langfuse)
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    llm = relay(simulator, LangfuseSink(config))
    try:
        answer = await llm.ainvoke("hello there", system="Be brief.", max_tokens=50,
                                   temperature=0.3, user="ana", tags=["search", "beta"],
                                   metadata={"session_id": "s-42"}, key="team-key")  # fmt: skip
    finally:
        await llm.aclose()
    span = langfuse.generation()
    got = span.attributes
    assert span.name == "chat default" and span.parent == b""
    assert got["langfuse.observation.model.name"] == answer.model == "sim-openai"
    usage = answer.usage
    assert span.json("langfuse.observation.usage_details") == {
        "input": usage.input_tokens,
        "output": usage.output_tokens,
        "total": usage.input_tokens + usage.output_tokens,
    }
    assert span.json("langfuse.observation.cost_details") == {"total": answer.cost_usd}
    assert answer.cost_usd > 0
    assert span.json("langfuse.observation.model.parameters") == {
        "max_tokens": 50,
        "temperature": 0.3,
    }
    assert span.json("langfuse.observation.input") == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello there"},
    ]
    assert span.json("langfuse.observation.output") == {
        "role": "assistant",
        "content": answer.content,
    }
    assert (got["user.id"], got["session.id"]) == ("ana", "s-42")
    assert got["langfuse.trace.tags"] == ["search", "beta"]
    assert got["langfuse.trace.name"] == "chat default"
    assert span.json("langfuse.observation.metadata.request_id") == answer.request_id
    assert span.json("langfuse.observation.metadata.group") == "default"
    assert span.json("langfuse.observation.metadata.deployment") == "openai/sim-openai"
    trail = span.json("langfuse.observation.metadata.attempts")
    assert [(a["deployment"], a["error"]) for a in trail] == [
        ("anthropic/sim-anthropic", "Overloaded"),
        ("openai/sim-openai", None),
    ]
    assert [(a["wait_s"], a["latency_s"]) for a in trail] == [
        (a.wait_s, a.latency_s) for a in answer.attempts
    ]
    assert "langfuse.observation.level" not in got
    assert "langfuse.observation.completion_start_time" not in got
    assert span.end > span.start
    sent = [(m, p, h) for m, p, h, _ in langfuse.requests if p == TRACES]
    expected = "Basic " + base64.b64encode(f"{config.public_key}:sk-lf-test".encode()).decode()
    assert sent and all(h["authorization"] == expected for _, _, h in sent)
    everything = repr(langfuse.requests)
    assert "team-key" not in everything and "sk-f1" not in everything


async def test_a_failed_request_is_an_error_generation_without_figures(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """Every deployment failed: level ERROR with the error as status message, the group as
    model, both attempts' errors in the metadata, no output, usage or cost."""
    simulator.set_faults("sim-anthropic", {"overloaded": 1.0})
    simulator.set_faults("sim-openai", {"500": 1.0})
    llm = relay(simulator, LangfuseSink(settings(langfuse)))
    try:
        with pytest.raises(AllModelsExhausted):
            await llm.ainvoke("hello")
    finally:
        await llm.aclose()
    span = langfuse.generation()
    got = span.attributes
    assert got["langfuse.observation.level"] == "ERROR"
    assert got["langfuse.observation.status_message"].startswith(
        "AllModelsExhausted: every deployment"
    )
    assert got["langfuse.observation.model.name"] == "default"
    assert span.json("langfuse.observation.metadata.error") == "AllModelsExhausted"
    errors = [a["error"] for a in span.json("langfuse.observation.metadata.attempts")]
    assert errors == ["Overloaded", "ProviderUnavailable"]
    for absent in ("output", "usage_details", "cost_details"):
        assert f"langfuse.observation.{absent}" not in got
    assert span.json("langfuse.observation.input") == [{"role": "user", "content": "hello"}]


async def test_a_stream_has_its_completion_start_time_within_the_call(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """A streamed answer: the completion start time (first token) lies within the
    generation's start and end; the metadata says it was streamed."""
    llm = relay(simulator, LangfuseSink(settings(langfuse)))
    try:
        async for _ in llm.astream("one two three four"):
            pass
    finally:
        await llm.aclose()
    span = langfuse.generation()
    first = iso_seconds(span.json("langfuse.observation.completion_start_time"))
    assert seconds(span.start) - 1e-6 <= first <= seconds(span.end) + 1e-6
    assert span.json("langfuse.observation.metadata.streamed") is True
    assert span.json("langfuse.observation.usage_details")["output"] > 0


async def test_a_cache_hit_is_a_generation_that_cost_nothing(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """The second identical call: a generation marked as an exact hit, with zero usage and
    cost (so Langfuse infers none) and the saving in its metadata."""
    llm = relay(simulator, LangfuseSink(settings(langfuse)), cache=True)
    try:
        first = await llm.ainvoke("capital of France?", temperature=0)
        again = await llm.ainvoke("capital of France?", temperature=0)
    finally:
        await llm.aclose()
    made, hit = sorted(langfuse.spans(), key=lambda s: s.start)
    assert again.cached == "exact"
    assert made.json("langfuse.observation.metadata.request_id") == first.request_id
    assert hit.json("langfuse.observation.metadata.request_id") == again.request_id
    assert hit.json("langfuse.observation.metadata.cache_hit") == "exact"
    assert hit.json("langfuse.observation.metadata.saved_usd") == first.cost_usd
    assert hit.json("langfuse.observation.usage_details") == {"input": 0, "output": 0, "total": 0}
    assert hit.json("langfuse.observation.cost_details") == {"total": 0.0}
    assert hit.attributes["langfuse.observation.model.name"] == first.model


async def test_without_record_content_no_prompt_or_answer_is_sent(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """record_content off: the figures go, the prompt and the answer do not."""
    llm = relay(simulator, LangfuseSink(settings(langfuse, record_content=False)))
    try:
        await llm.ainvoke("a private question")
    finally:
        await llm.aclose()
    span = langfuse.generation()
    assert "langfuse.observation.input" not in span.attributes
    assert "langfuse.observation.output" not in span.attributes
    assert "langfuse.observation.usage_details" in span.attributes
    assert "private" not in repr(langfuse.requests)


async def test_the_global_tracer_provider_is_left_alone(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """The sink's client exports through a tracer provider of its own: the application's
    global provider is neither replaced nor given Langfuse's exporter."""
    before = trace.get_tracer_provider()
    llm = relay(simulator, LangfuseSink(settings(langfuse)))
    try:
        await llm.ainvoke("hello")
        assert trace.get_tracer_provider() is before
    finally:
        await llm.aclose()
    assert trace.get_tracer_provider() is before
    langfuse.generation()


async def test_a_sink_made_again_with_the_same_key_still_delivers(
    simulator: SimulatorHandle, langfuse: LangfuseServer
) -> None:
    """A SmartLLM closed and built again with the same Langfuse keys: the SDK reuses its
    pipeline for that key, and the second sink's generations still arrive."""
    config = settings(langfuse)
    for prompt in ("first", "second"):
        llm = relay(simulator, LangfuseSink(config))
        try:
            await llm.ainvoke(prompt)
        finally:
            await llm.aclose()
    sent = [s.json("langfuse.observation.input")[0]["content"] for s in langfuse.spans()]
    assert sorted(sent) == ["first", "second"]


def test_missing_keys_are_a_config_error() -> None:
    """No public or secret key in the settings nor the environment: a clear error, not a
    client that silently sends nothing."""
    with pytest.raises(ConfigError, match="LANGFUSE_PUBLIC_KEY"):
        LangfuseSink(LangfuseSettings(secret_key="sk"))
    with pytest.raises(ConfigError, match="secret_key"):
        LangfuseSink(LangfuseSettings(public_key="pk"))


def test_the_module_imports_without_langfuse() -> None:
    """Without the ``langfuse`` extra the module (and its settings) still import."""
    code = (
        "import sys\n"
        "for name in ('langfuse', 'opentelemetry', 'opentelemetry.sdk'):\n"
        "    sys.modules[name] = None\n"
        "from llmrelay.observe.langfuse import LangfuseSettings\n"
        "print(LangfuseSettings().record_content)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"
