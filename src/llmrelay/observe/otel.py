"""OpenTelemetry spans from the router's events (extra ``otel``)."""

from __future__ import annotations

import msgspec


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
