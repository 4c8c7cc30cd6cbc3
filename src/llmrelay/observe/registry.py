"""The built-in sinks configuration names: ``observe.<name>:`` → the function opening it.

An opener takes the sink's settings struct (``observe.<name>:`` validated by
:mod:`llmrelay.config`) and returns the sink. Each is imported when its sink is
configured, so an extra that is not installed matters only to those who use its sink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any

from llmrelay.imports import import_callable
from llmrelay.observe.sink import Sink

SINKS: Mapping[str, str] = MappingProxyType(
    {
        "logs": "llmrelay.observe.logs:open_sink",
        "prometheus": "llmrelay.observe.prometheus:open_sink",
        "otel": "llmrelay.observe.otel:open_sink",
        "langfuse": "llmrelay.observe.langfuse:open_sink",
        "analytics": "llmrelay.analytics:open_sink",
    }
)


def open_sink(name: str, settings: Any) -> Sink:
    """The built-in sink ``name`` (a key of :data:`SINKS`) opened with ``settings``."""
    opener: Callable[[Any], Sink] = import_callable(SINKS[name])
    return opener(settings)


__all__ = ["SINKS", "open_sink"]
