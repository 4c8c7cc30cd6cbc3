"""Observability: the router's events fed to sinks (Prometheus, OpenTelemetry, logs,
Langfuse, analytics, or your own).

A sink is any object with ``handle(event)`` and ``close()`` (:class:`Sink`). The
:class:`Observer` gives each sink a bounded queue and a thread: a failing or slow sink never
fails or slows a call. Configure sinks under ``observe:`` in the YAML file, or pass them to
``LLMBuilder.with_observer``.
"""

from llmrelay.observe.observer import DEFAULT_QUEUE_SIZE, Observer
from llmrelay.observe.sink import DeploymentNow, Live, Sink

__all__ = ["DEFAULT_QUEUE_SIZE", "DeploymentNow", "Live", "Observer", "Sink"]
