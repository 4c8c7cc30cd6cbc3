"""Prometheus metrics from the router's events (``prometheus-client``)."""

from __future__ import annotations

import msgspec


class PrometheusSettings(msgspec.Struct, frozen=True, kw_only=True):
    """``observe.prometheus:`` — metrics in Prometheus's text format."""

    port: int | None = None
    """Serve ``/metrics`` on this port from a thread of its own (off when unset: the
    gateway serves ``/metrics``, or the application exposes the registry)."""
    addr: str = "127.0.0.1"
    """The address that server listens on."""
    namespace: str = "llmrelay"
    """The prefix of every metric name."""

    def __post_init__(self) -> None:
        if self.port is not None and not 0 <= self.port <= 65535:
            raise ValueError(f"port must be between 0 and 65535, got {self.port}")
