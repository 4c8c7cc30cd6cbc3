"""The versioned tool registry: what a plan may call, with its schemas and policies.

A tool is registered once per ``(name, version)``; a plan that names no version gets the
latest. Each tool declares whether it is idempotent (safe to call again after an
interruption), its timeout and its retries; the engine reads those, never the tool's name.
Per-tool metrics (calls, failures, latency) are counted here, in this process.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from llmrelay.agents.errors import ToolFailed, UnknownTool
from llmrelay.agents.jsonschema import validate

ToolFunc = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]
"""A tool's body: its validated input in, a JSON object out."""

_VERSION = re.compile(r"^\d+(\.\d+)*$")
_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


@dataclass(frozen=True, slots=True, kw_only=True)
class Tool:
    """One version of one tool."""

    name: str
    version: str
    description: str
    input_schema: Mapping[str, Any]
    output_schema: Mapping[str, Any]
    run: ToolFunc
    timeout_s: float = 10.0
    idempotent: bool = True
    """Calling it twice with the same input has the effect of calling it once."""
    retries: int = 0
    """Extra attempts after a failure (a raise or a timeout), with exponential backoff."""
    retry_backoff_s: float = 0.5

    def __post_init__(self) -> None:
        if not _NAME.match(self.name):
            raise ValueError(f"tool name {self.name!r}: lowercase letters, digits and _")
        if not _VERSION.match(self.version):
            raise ValueError(f"tool {self.name}: version {self.version!r} is not like 1.2.0")
        if self.timeout_s <= 0 or self.retries < 0 or self.retry_backoff_s < 0:
            raise ValueError(f"tool {self.name}: timeout_s > 0, retries >= 0, backoff >= 0")
        if self.input_schema.get("type") != "object":
            raise ValueError(f"tool {self.name}: input_schema must be an object schema")

    @property
    def key(self) -> tuple[int, ...]:
        return tuple(int(part) for part in self.version.split("."))

    def describe(self) -> dict[str, Any]:
        """What the discovery endpoint and the LLM planner are told about this tool."""
        return {
            "name": self.name,
            "version": self.version,
            "description": self.description,
            "input_schema": dict(self.input_schema),
            "output_schema": dict(self.output_schema),
            "timeout_s": self.timeout_s,
            "idempotent": self.idempotent,
            "retries": self.retries,
        }


@dataclass(slots=True)
class ToolMetrics:
    """Calls, failures and latency of one tool version in this process."""

    calls: int = 0
    failures: int = 0
    latency_s_total: float = 0.0

    def snapshot(self) -> dict[str, Any]:
        mean = self.latency_s_total / self.calls if self.calls else None
        return {"calls": self.calls, "failures": self.failures, "mean_latency_s": mean}


@dataclass
class ToolRegistry:
    """Tools by name and version, with their metrics."""

    _tools: dict[str, dict[str, Tool]] = field(default_factory=dict)
    _metrics: dict[tuple[str, str], ToolMetrics] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, tool: Tool) -> Tool:
        """Add ``tool``; registering the same name and version twice is an error."""
        versions = self._tools.setdefault(tool.name, {})
        if tool.version in versions:
            raise ValueError(f"tool {tool.name} {tool.version} is already registered")
        versions[tool.version] = tool
        self._metrics[(tool.name, tool.version)] = ToolMetrics()
        return tool

    def get(self, name: str, version: str | None = None) -> Tool:
        """The tool ``name`` at ``version`` (default: the latest)."""
        versions = self._tools.get(name)
        if not versions:
            known = ", ".join(sorted(self._tools)) or "none"
            raise UnknownTool(f"unknown tool {name!r} (known: {known})")
        if version is None:
            return max(versions.values(), key=lambda t: t.key)
        if version not in versions:
            have = ", ".join(sorted(versions))
            raise UnknownTool(f"tool {name!r} has no version {version!r} (have: {have})")
        return versions[version]

    def __contains__(self, name: object) -> bool:
        return name in self._tools

    def __iter__(self) -> Iterator[Tool]:
        """Every registered version, by name then version."""
        for name in sorted(self._tools):
            yield from sorted(self._tools[name].values(), key=lambda t: t.key)

    def latest(self) -> list[Tool]:
        return [self.get(name) for name in sorted(self._tools)]

    def metrics(self, name: str, version: str) -> ToolMetrics:
        return self._metrics[(name, version)]

    async def invoke(self, tool: Tool, arguments: dict[str, Any]) -> dict[str, Any]:
        """Run ``tool`` once (no timeout or retry here) and check what it answers."""
        problems = validate(arguments, tool.input_schema)
        if problems:
            raise ToolFailed(f"{tool.name}: " + "; ".join(problems))
        started = time.perf_counter()
        failed = True
        try:
            result = await tool.run(arguments)
            problems = validate(result, tool.output_schema, "output")
            if problems:
                raise ToolFailed(f"{tool.name} answered badly: " + "; ".join(problems))
            failed = False
            return result
        finally:
            with self._lock:
                metrics = self._metrics[(tool.name, tool.version)]
                metrics.calls += 1
                metrics.failures += failed
                metrics.latency_s_total += time.perf_counter() - started


__all__ = ["Tool", "ToolFunc", "ToolMetrics", "ToolRegistry"]
