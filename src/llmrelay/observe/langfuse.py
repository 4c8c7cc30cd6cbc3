"""Langfuse generations from the router's events (extra ``langfuse``).

Each routed request (its ``finished`` event) and each answer from the response cache
(``cache_hit``) becomes one Langfuse generation named ``chat {group}``, the root of a trace
of its own: the model (the one that answered, else the group), input and output (with
``record_content``), usage and cost in USD, its start and end (and, for a stream, when the
first token came), level ``ERROR`` with the error on failure, and as metadata the request
id, group, deployment, every attempt (``deployment``, ``error``, ``wait_s``, ``latency_s``:
the fallback trail) and the cache hit. The request's ``user``, ``metadata["session_id"]``
and ``tags`` become the trace's user id, session id and tags.

The Langfuse SDK (v3 and later) is built on OpenTelemetry. Left to itself it adds its
exporter to the application's global tracer provider (or installs one as the global
provider): the application's spans that carry ``gen_ai.*`` attributes would then be sent
to Langfuse too, and Langfuse's spans to the application's exporters. The client this sink
makes is given a tracer provider of its own, so the global one is never touched. The sink
does not take the caller's context either: a generation is not made a child of the caller's
current span, whose trace Langfuse never receives. A client passed in is used as it is.

The SDK keeps one pipeline per public key in a process: if the application made a Langfuse
client with the same public key first, the sink's client shares that pipeline (and its
tracer provider), and :meth:`LangfuseSink.close` then only flushes it.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import msgspec

from llmrelay.errors import ConfigError
from llmrelay.events import Event, EventKind
from llmrelay.observe.logs import redact
from llmrelay.types import Attempt, ChatRequest, ChatResponse, ImagePart, Message, TextPart, Usage

if TYPE_CHECKING:
    from langfuse import Langfuse
    from langfuse.types import SpanLevel
    from opentelemetry.trace import Tracer


class LangfuseSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.langfuse:`` — a Langfuse generation per call."""

    public_key: str | None = None
    """Default: the ``LANGFUSE_PUBLIC_KEY`` variable."""
    secret_key: str | None = None
    """Default: the ``LANGFUSE_SECRET_KEY`` variable."""
    host: str | None = None
    """Default: the ``LANGFUSE_BASE_URL`` or ``LANGFUSE_HOST`` variable, else Langfuse
    Cloud."""
    record_content: bool = True
    """Send prompts and answers (Langfuse shows them; turn off to send only figures)."""


_NS = 1_000_000_000


class LangfuseSink:
    """Sends a Langfuse generation per request (see the module docstring).

    Without ``client`` it makes one from ``settings`` (and the ``LANGFUSE_*`` variables),
    and :meth:`close` shuts it down; a client given is only flushed.
    """

    name = "langfuse"

    def __init__(
        self, settings: LangfuseSettings | None = None, *, client: Langfuse | None = None
    ) -> None:
        self.settings = settings = settings or LangfuseSettings()
        self._owned = False
        if client is None:
            client, self._owned = _own_client(settings)
        self.client = client
        # The SDK's start_observation starts its span now; a generation here is recorded
        # after the call ended, so its span is started at the call's start on the client's
        # own tracer and wrapped as the SDK wraps it.
        self._tracer: Tracer = client._otel_tracer

    def close(self) -> None:
        if self._owned:
            self.client.shutdown()  # flushes first
        else:
            self.client.flush()

    def handle(self, event: Event) -> None:
        if event.kind in (EventKind.FINISHED, EventKind.CACHE_HIT):
            self._generation(event)

    def _generation(self, event: Event) -> None:
        from langfuse import LangfuseGeneration, propagate_attributes

        request, response = event.request, event.response
        start = _ns(event.started_at)
        end = start + _ns(event.latency_s)
        hit = event.kind is EventKind.CACHE_HIT
        level: SpanLevel | None = None
        status = None
        if event.error:
            level = "ERROR"
            status = f"{event.error}: {redact(event.message)}" if event.message else event.error
        content = self.settings.record_content
        usage, cost = _figures(response, hit)
        with propagate_attributes(trace_name=f"chat {event.group}", **_trace(request)):
            span = self._tracer.start_span(f"chat {event.group}", start_time=start)
            generation = LangfuseGeneration(
                otel_span=span,
                langfuse_client=self.client,
                model=(response.model if response is not None else "") or event.group,
                model_parameters=_parameters(request) if request is not None else None,
                input=_input(request) if content and request is not None else None,
                output=_output(response) if content and response is not None else None,
                usage_details=usage,
                cost_details=cost,
                completion_start_time=_first_token(event, end),
                level=level,
                status_message=status,
                metadata=_metadata(event, hit),
            )
        generation.end(end_time=end)


def _own_client(settings: LangfuseSettings) -> tuple[Langfuse, bool]:
    """A client on a tracer provider of its own, and whether it owns its pipeline (no
    client with the same public key was made before in this process)."""
    from langfuse import Langfuse
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider

    public_key = settings.public_key or os.environ.get("LANGFUSE_PUBLIC_KEY")
    secret_key = settings.secret_key or os.environ.get("LANGFUSE_SECRET_KEY")
    if not public_key or not secret_key:
        raise ConfigError(
            "observe.langfuse: public_key and secret_key are required "
            "(or the LANGFUSE_PUBLIC_KEY and LANGFUSE_SECRET_KEY variables)"
        )
    provider = TracerProvider(resource=Resource.create({"service.name": "llmrelay"}))
    client = Langfuse(public_key=public_key, secret_key=secret_key, base_url=settings.host,
                      tracer_provider=provider)  # fmt: skip
    # The provider is not shut down on close: the SDK keeps using the pipeline it was put
    # in for later clients with the same public key (a SmartLLM built again).
    return client, getattr(client._otel_tracer, "resource", None) is provider.resource


def _trace(request: ChatRequest | None) -> dict[str, Any]:
    """The trace's user id, session id and tags, from the request."""
    if request is None:
        return {}
    attributes: dict[str, Any] = {}
    if request.user:
        attributes["user_id"] = request.user
    if request.metadata and request.metadata.get("session_id"):
        attributes["session_id"] = request.metadata["session_id"]
    if request.tags:
        attributes["tags"] = list(request.tags)
    return attributes


def _figures(
    response: ChatResponse | None, hit: bool
) -> tuple[dict[str, int] | None, dict[str, float] | None]:
    """Usage in Langfuse's exclusive kinds (cached and written input apart from the rest,
    reasoning apart from the other output) and cost in USD; a cache hit spent nothing. None
    on failure: what a failed call was billed is not known."""
    if response is None:
        return None, None
    if hit:
        return {"input": 0, "output": 0, "total": 0}, {"total": 0.0}
    return _usage(response.usage), {"total": response.cost_usd}


def _usage(usage: Usage) -> dict[str, int]:
    cached, written = usage.cached_input_tokens, usage.cache_write_input_tokens
    details = {
        "input": max(0, usage.input_tokens - cached - written),
        "input_cache_read": cached,
        "input_cache_creation": written,
        "output": max(0, usage.output_tokens - usage.reasoning_tokens),
        "output_reasoning": usage.reasoning_tokens,
    }
    kept = {k: v for k, v in details.items() if v or k in ("input", "output")}
    return {**kept, "total": usage.total_tokens}


def _first_token(event: Event, end: int) -> datetime | None:
    """When a stream's first token came: the answering attempt began after the attempts
    before it (their queue wait and latency, back to back), and its ``ttft_s`` counts
    from there."""
    response = event.response
    if response is None or response.ttft_s is None:
        return None
    before = sum(a.wait_s + a.latency_s for a in event.attempts[:-1])
    at = min(_ns(event.started_at + before + response.ttft_s), end)
    return datetime.fromtimestamp(at / _NS, tz=UTC)


def _metadata(event: Event, hit: bool) -> dict[str, Any]:
    metadata: dict[str, Any] = {
        "request_id": event.request_id,
        "group": event.group,
        "streamed": event.streamed,
        "attempts": [_attempt(a) for a in event.attempts],
    }
    if event.deployment:
        metadata["deployment"] = event.deployment
    if event.error:
        metadata["error"] = event.error
    if hit:
        metadata["cache_hit"] = event.message
        metadata["saved_usd"] = event.cost_usd
    return metadata


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {"deployment": attempt.deployment, "error": attempt.error,
            "wait_s": attempt.wait_s, "latency_s": attempt.latency_s}  # fmt: skip


def _parameters(request: ChatRequest) -> dict[str, Any]:
    parameters: dict[str, Any] = {
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "top_p": request.top_p,
        "stop": request.stop,
    }
    return {k: v for k, v in parameters.items() if v is not None}


def _input(request: ChatRequest) -> list[dict[str, Any]]:
    """The prompt as chat messages, the system prompt first (as Langfuse shows chats)."""
    system = request.system_text()
    messages = [{"role": "system", "content": system}] if system else []
    return messages + [_message(m) for m in request.chat_messages()]


def _message(message: Message) -> dict[str, Any]:
    content: Any = message.content
    if not isinstance(content, str):
        content = [_part(part) for part in content]
    out: dict[str, Any] = {"role": message.role, "content": content}
    if message.tool_calls:
        out["tool_calls"] = [_call(c.id, c.name, c.arguments) for c in message.tool_calls]
    if message.tool_call_id:
        out["tool_call_id"] = message.tool_call_id
    return out


def _part(part: TextPart | ImagePart) -> dict[str, Any]:
    if isinstance(part, TextPart):
        return {"type": "text", "text": part.text}
    return {"type": "image_url", "image_url": {"url": part.url}}


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function",
            "function": {"name": name, "arguments": arguments}}  # fmt: skip


def _output(response: ChatResponse) -> dict[str, Any]:
    out: dict[str, Any] = {"role": "assistant", "content": response.content}
    if response.tool_calls:
        out["tool_calls"] = [_call(c.id, c.name, c.arguments) for c in response.tool_calls]
    return out


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


def open_sink(settings: LangfuseSettings) -> LangfuseSink:
    return LangfuseSink(settings)


__all__ = ["LangfuseSettings", "LangfuseSink", "open_sink"]
