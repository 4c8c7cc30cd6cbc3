"""OpenTelemetry spans from the router's events (extra ``otel``).

Each routed request becomes a span ``chat {group}`` (kind ``CLIENT``) with a child span
``chat {model}`` per attempt, named and described by the OpenTelemetry GenAI semantic
conventions (``gen_ai.operation.name``, ``gen_ai.provider.name``, ``gen_ai.request.*``,
``gen_ai.response.*``, ``gen_ai.usage.*``, ``error.type``); what only llmrelay knows is
under ``llmrelay.*`` (request id, group, deployment, attempts, queue wait, fallback reason,
cost, cache hit, time to first token, tags); a request's ``metadata["session_id"]`` is its
``gen_ai.conversation.id``. A ``cache_hit`` event becomes a request span of no duration
with ``llmrelay.cache_hit`` (``exact`` or ``semantic``) and ``llmrelay.saved_usd``, and no
usage (no tokens were spent).

The request span's parent is the caller's current span: the sink asks for the caller's
context (``wants_context``), so a call made inside ``tracer.start_as_current_span(...)``
lands in that trace.

Spans are made after the request ended, from its ``finished`` event, with explicit times:
the request span runs from ``started_at`` for ``latency_s``. The event gives each attempt's
queue wait and latency but not when it began, so attempts are laid out in order from the
request's start, back to back, each as its queue wait then its send; an attempt span covers
the send. Time the events do not account for (backoff between retries, budget checks) is
not placed, so a later attempt may be drawn a little earlier than it ran; hedged attempts,
which ran side by side, are drawn one after the other; every span ends by the request's end.

Content (prompts, system instructions, answers) is recorded only with ``record_content``, as
JSON in ``gen_ai.input.messages``, ``gen_ai.system_instructions`` and
``gen_ai.output.messages`` on the request span, in the conventions' message shape (``role``
and ``parts``). API keys and the request's ``key`` field are never recorded; error messages
are masked like log lines (:func:`~llmrelay.observe.logs.redact`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import msgspec

from llmrelay.events import Event, EventKind
from llmrelay.observe.logs import redact
from llmrelay.observe.sink import Live
from llmrelay.types import Attempt, ChatRequest, ChatResponse, ImagePart, Message, TextPart

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer


class OtelSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.otel:`` — a span per routed request and one per attempt."""

    record_content: bool = False
    """Record prompts and answers on the spans (off: they often hold personal data)."""
    endpoint: str | None = None
    """An OTLP/HTTP traces endpoint (``http://collector:4318/v1/traces``): llmrelay then
    exports there with a tracer provider of its own. Unset: spans go to the application's
    global tracer provider (what ``opentelemetry-instrument`` or the app configured)."""
    service_name: str = "llmrelay"
    """``service.name`` of llmrelay's own tracer provider (with ``endpoint``)."""


# GenAI semantic conventions (opentelemetry-semantic-conventions, gen_ai_attributes), spelt
# out so that the names do not depend on which release of that package is installed.
OPERATION = "gen_ai.operation.name"
PROVIDER = "gen_ai.provider.name"
REQUEST_MODEL = "gen_ai.request.model"
MAX_TOKENS = "gen_ai.request.max_tokens"
TEMPERATURE = "gen_ai.request.temperature"
TOP_P = "gen_ai.request.top_p"
STOP_SEQUENCES = "gen_ai.request.stop_sequences"
STREAM = "gen_ai.request.stream"
OUTPUT_TYPE = "gen_ai.output.type"
CONVERSATION_ID = "gen_ai.conversation.id"
RESPONSE_MODEL = "gen_ai.response.model"
RESPONSE_ID = "gen_ai.response.id"
FINISH_REASONS = "gen_ai.response.finish_reasons"
TIME_TO_FIRST_CHUNK = "gen_ai.response.time_to_first_chunk"
INPUT_TOKENS = "gen_ai.usage.input_tokens"
OUTPUT_TOKENS = "gen_ai.usage.output_tokens"
CACHE_READ_TOKENS = "gen_ai.usage.cache_read.input_tokens"
CACHE_CREATION_TOKENS = "gen_ai.usage.cache_creation.input_tokens"
REASONING_TOKENS = "gen_ai.usage.reasoning.output_tokens"
INPUT_MESSAGES = "gen_ai.input.messages"
OUTPUT_MESSAGES = "gen_ai.output.messages"
SYSTEM_INSTRUCTIONS = "gen_ai.system_instructions"
ERROR_TYPE = "error.type"
HTTP_STATUS = "http.response.status_code"

PROVIDER_NAMES: Mapping[str, str] = MappingProxyType(
    {"openai": "openai", "anthropic": "anthropic", "gemini": "gcp.gemini"}
)
"""llmrelay's provider names → ``gen_ai.provider.name``; others are passed as they are."""

_NS = 1_000_000_000


class OtelSink:
    """Turns ``finished`` and ``cache_hit`` events into spans (see the module docstring).

    ``tracer_provider`` given: spans go there (the caller owns it). Else, with
    ``settings.endpoint``, a tracer provider of the sink's own exports over OTLP/HTTP and is
    shut down (flushed) by :meth:`close`; else the global tracer provider is used.
    """

    name = "otel"
    wants_context = True

    def __init__(
        self,
        settings: OtelSettings | None = None,
        *,
        tracer_provider: TracerProvider | None = None,
    ) -> None:
        from opentelemetry import trace

        from llmrelay import __version__

        self._kind = trace.SpanKind.CLIENT
        self.settings = settings = settings or OtelSettings()
        self._owned: TracerProvider | None = None
        if tracer_provider is None and settings.endpoint:
            tracer_provider = self._owned = _exporting_provider(settings)
        self._tracer: Tracer = (
            trace.get_tracer("llmrelay", __version__)
            if tracer_provider is None
            else tracer_provider.get_tracer("llmrelay", __version__)
        )
        self._live: Live | None = None
        self._models: dict[str, tuple[str, str]] = {}

    def attach(self, live: Live) -> None:
        """Read each deployment's provider and model from the router (names may be custom)."""
        self._live = live

    def close(self) -> None:
        if self._owned is not None:
            self._owned.shutdown()

    def handle(self, event: Event) -> None:
        if event.kind is EventKind.FINISHED:
            self._finished(event)
        elif event.kind is EventKind.CACHE_HIT:
            self._cache_hit(event)

    # -- spans ----------------------------------------------------------------------------

    def _finished(self, event: Event) -> None:
        from opentelemetry import trace

        start = _ns(event.started_at)
        end = start + _ns(event.latency_s)
        response, attempts = event.response, event.attempts
        attributes = self._request_attributes(event)
        attributes["llmrelay.attempts"] = len(attempts)
        if len(attempts) > 1 and attempts[0].error:
            attributes["llmrelay.fallback_reason"] = attempts[0].error
        if response is not None:
            attributes["llmrelay.cost_usd"] = response.cost_usd
            attributes.update(_response_attributes(response, self._provider(response)))
            if self.settings.record_content:
                attributes[OUTPUT_MESSAGES] = _json(_output_messages(response))
        elif attempts:
            provider = self._deployment(attempts[-1].deployment)[0]
            if provider:
                attributes[PROVIDER] = provider
        span = self._tracer.start_span(f"chat {event.group}", kind=self._kind,
                                       attributes=attributes, start_time=start)  # fmt: skip
        if event.error:
            _failed(span, event.error, event.message)
        parent = trace.set_span_in_context(span)
        answered = len(attempts) - 1 if response is not None else -1
        for index, (attempt, sent, ended) in enumerate(_layout(start, end, attempts)):
            self._attempt(parent, event, index, attempt, sent, ended,
                          response if index == answered else None)  # fmt: skip
        span.end(end_time=end)

    def _attempt(
        self,
        parent: Context,
        event: Event,
        index: int,
        attempt: Attempt,
        sent: int,
        ended: int,
        response: ChatResponse | None,
    ) -> None:
        provider, model = self._deployment(attempt.deployment)
        attributes: dict[str, Any] = {
            OPERATION: "chat",
            REQUEST_MODEL: model or attempt.deployment,
            "llmrelay.request_id": event.request_id,
            "llmrelay.deployment": attempt.deployment,
            "llmrelay.attempt": index,
            "llmrelay.queue_wait_s": attempt.wait_s,
        }
        if provider:
            attributes[PROVIDER] = provider
        if event.request is not None:
            attributes.update(_parameters(event.request, event.streamed))
        if attempt.status_code is not None:
            attributes[HTTP_STATUS] = attempt.status_code
        if response is not None:
            attributes.update(_response_attributes(response, provider))
        span = self._tracer.start_span(f"chat {model or attempt.deployment}", context=parent,
                                       kind=self._kind, attributes=attributes,
                                       start_time=sent)  # fmt: skip
        if attempt.error:
            # a hedge's loser was cancelled because another answered: not a failure
            _failed(span, attempt.error, attempt.message, status=attempt.error != "Cancelled")
        span.end(end_time=ended)

    def _cache_hit(self, event: Event) -> None:
        start = _ns(event.started_at)
        attributes = self._request_attributes(event)
        attributes.update({"llmrelay.cache_hit": event.message, "llmrelay.cost_usd": 0.0,
                           "llmrelay.saved_usd": event.cost_usd})  # fmt: skip
        response = event.response
        if response is not None:
            provider = self._provider(response)
            if provider:
                attributes[PROVIDER] = provider
            if response.model:
                attributes[RESPONSE_MODEL] = response.model
            attributes[FINISH_REASONS] = (response.finish_reason,)
            if self.settings.record_content:
                attributes[OUTPUT_MESSAGES] = _json(_output_messages(response))
        span = self._tracer.start_span(f"chat {event.group}", kind=self._kind,
                                       attributes=attributes, start_time=start)  # fmt: skip
        span.end(end_time=start + _ns(event.latency_s))

    def _request_attributes(self, event: Event) -> dict[str, Any]:
        """What the request span says whatever its outcome: the ask and llmrelay's ids."""
        attributes: dict[str, Any] = {
            OPERATION: "chat",
            REQUEST_MODEL: event.group,
            "llmrelay.request_id": event.request_id,
            "llmrelay.group": event.group,
            "llmrelay.streamed": event.streamed,
        }
        if event.deployment:
            attributes["llmrelay.deployment"] = event.deployment
        request = event.request
        if request is None:
            return attributes
        attributes.update(_parameters(request, event.streamed))
        if request.metadata and request.metadata.get("session_id"):
            attributes[CONVERSATION_ID] = request.metadata["session_id"]
        if request.tags:
            attributes["llmrelay.tags"] = tuple(request.tags)
        if self.settings.record_content:
            attributes[INPUT_MESSAGES] = _json(_input_messages(request.chat_messages()))
            system = request.system_text()
            if system:
                attributes[SYSTEM_INSTRUCTIONS] = _json([{"type": "text", "content": system}])
        return attributes

    # -- deployments ----------------------------------------------------------------------

    def _provider(self, response: ChatResponse) -> str:
        if response.provider:
            return PROVIDER_NAMES.get(response.provider, response.provider)
        return self._deployment(response.deployment)[0]

    def _deployment(self, deployment: str) -> tuple[str, str]:
        """``(gen_ai.provider.name, model)`` of a deployment: from the router when attached,
        else read from an id of the ``provider/model`` form (``("", "")`` for a custom name
        the router does not list)."""
        known = self._models.get(deployment)
        if known is None:
            if self._live is not None:
                for d in self._live.deployments():
                    self._models[d.deployment] = (PROVIDER_NAMES.get(d.provider, d.provider),
                                                  d.model)  # fmt: skip
            provider, _, model = deployment.partition("/")
            guess = (PROVIDER_NAMES.get(provider, provider), model) if model else ("", "")
            known = self._models.setdefault(deployment, guess)
        return known


def _exporting_provider(settings: OtelSettings) -> TracerProvider:
    """A tracer provider exporting over OTLP/HTTP (protobuf) in batches."""
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": settings.service_name}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(endpoint=settings.endpoint)))
    return provider


def _layout(start: int, end: int, attempts: tuple[Attempt, ...]) -> list[tuple[Attempt, int, int]]:
    """Each attempt with when its send began and ended, laid out back to back from the
    request's start (see the module docstring), within the request's span."""
    placed = []
    cursor = start
    for attempt in attempts:
        sent = min(cursor + _ns(attempt.wait_s), end)
        ended = min(sent + _ns(attempt.latency_s), end)
        placed.append((attempt, sent, ended))
        cursor = ended
    return placed


def _parameters(request: ChatRequest, streamed: bool) -> dict[str, Any]:
    attributes: dict[str, Any] = {}
    if request.max_tokens is not None:
        attributes[MAX_TOKENS] = request.max_tokens
    if request.temperature is not None:
        attributes[TEMPERATURE] = request.temperature
    if request.top_p is not None:
        attributes[TOP_P] = request.top_p
    if request.stop:
        attributes[STOP_SEQUENCES] = tuple(request.stop)
    if streamed:
        attributes[STREAM] = True
    if request.response_format is not None and request.response_format.type != "text":
        attributes[OUTPUT_TYPE] = "json"
    return attributes


def _response_attributes(response: ChatResponse, provider: str) -> dict[str, Any]:
    usage = response.usage
    attributes: dict[str, Any] = {
        FINISH_REASONS: (response.finish_reason,),
        INPUT_TOKENS: usage.input_tokens,
        OUTPUT_TOKENS: usage.output_tokens,
    }
    if provider:
        attributes[PROVIDER] = provider
    if response.model:
        attributes[RESPONSE_MODEL] = response.model
    if response.id:
        attributes[RESPONSE_ID] = response.id
    if usage.cached_input_tokens:
        attributes[CACHE_READ_TOKENS] = usage.cached_input_tokens
    if usage.cache_write_input_tokens:
        attributes[CACHE_CREATION_TOKENS] = usage.cache_write_input_tokens
    if usage.reasoning_tokens:
        attributes[REASONING_TOKENS] = usage.reasoning_tokens
    if response.ttft_s is not None:
        attributes[TIME_TO_FIRST_CHUNK] = response.ttft_s
        attributes["llmrelay.ttft_s"] = response.ttft_s
    return attributes


def _failed(span: Span, error: str, message: str, *, status: bool = True) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(ERROR_TYPE, error)
    if status:
        span.set_status(Status(StatusCode.ERROR, redact(message) or error))


def _ns(seconds: float) -> int:
    return int(seconds * _NS)


def _json(value: object) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


# -- content in the conventions' message shape -----------------------------------------------


def _input_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [{"role": m.role, "parts": _parts(m)} for m in messages]


def _parts(message: Message) -> list[dict[str, Any]]:
    if message.role == "tool":
        return [{"type": "tool_call_response", "id": message.tool_call_id or "",
                 "response": message.text}]  # fmt: skip
    parts: list[dict[str, Any]] = []
    if isinstance(message.content, str):
        if message.content:
            parts.append({"type": "text", "content": message.content})
    else:
        for part in message.content:
            if isinstance(part, TextPart):
                parts.append({"type": "text", "content": part.text})
            elif isinstance(part, ImagePart):
                parts.append(_image(part.url))
    for call in message.tool_calls or ():
        parts.append({"type": "tool_call", "id": call.id, "name": call.name,
                      "arguments": _arguments(call.arguments)})  # fmt: skip
    return parts


def _image(url: str) -> dict[str, Any]:
    if url.startswith("data:") and ";base64," in url:
        mime, _, data = url[5:].partition(";base64,")
        return {"type": "blob", "modality": "image", "mime_type": mime, "content": data}
    return {"type": "uri", "modality": "image", "uri": url}


def _arguments(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _output_messages(response: ChatResponse) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    if response.content:
        parts.append({"type": "text", "content": response.content})
    for call in response.tool_calls:
        parts.append({"type": "tool_call", "id": call.id, "name": call.name,
                      "arguments": _arguments(call.arguments)})  # fmt: skip
    return [{"role": "assistant", "parts": parts, "finish_reason": response.finish_reason}]


def open_sink(settings: OtelSettings) -> OtelSink:
    return OtelSink(settings)


__all__ = ["PROVIDER_NAMES", "OtelSettings", "OtelSink", "open_sink"]
