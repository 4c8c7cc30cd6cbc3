"""The sinks that configuration names: ``observe.<name>:`` → settings struct and opener.

Each opener imports its sink's libraries only when called, so an extra that is not
installed matters only to those who configure its sink.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import msgspec

from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.observe.langfuse import LangfuseSettings
from llmrelay.observe.logs import LogSettings
from llmrelay.observe.otel import OtelSettings
from llmrelay.observe.prometheus import PrometheusSettings
from llmrelay.observe.sink import Sink


@dataclass(frozen=True, slots=True)
class SinkKind:
    settings: type[msgspec.Struct]
    opener: str
    """``module:function`` taking the settings and returning the sink."""

    def open(self, settings: Any) -> Sink:
        module, _, name = self.opener.partition(":")
        opened: Callable[[Any], Sink] = getattr(importlib.import_module(module), name)
        return opened(settings)


SINKS: Mapping[str, SinkKind] = MappingProxyType(
    {
        "logs": SinkKind(LogSettings, "llmrelay.observe.logs:open_sink"),
        "prometheus": SinkKind(PrometheusSettings, "llmrelay.observe.prometheus:open_sink"),
        "otel": SinkKind(OtelSettings, "llmrelay.observe.otel:open_sink"),
        "langfuse": SinkKind(LangfuseSettings, "llmrelay.observe.langfuse:open_sink"),
        "analytics": SinkKind(AnalyticsSettings, "llmrelay.analytics:open_sink"),
    }
)

__all__ = ["SINKS", "SinkKind"]
