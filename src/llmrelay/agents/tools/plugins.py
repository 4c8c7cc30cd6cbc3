"""Third-party tools, found through the ``llmrelay.agents.tools`` entry-point group.

A package declares, in its ``pyproject.toml``::

    [project.entry-points."llmrelay.agents.tools"]
    weather = "mypkg.tools:weather_tools"

where ``weather_tools()`` returns a :class:`~llmrelay.agents.tools.registry.Tool` or a
list of them. Each one is registered under its own name and version.
"""

from __future__ import annotations

from importlib.metadata import entry_points

from llmrelay.agents.errors import AgentError
from llmrelay.agents.tools.registry import Tool, ToolRegistry

GROUP = "llmrelay.agents.tools"


def load_plugins(registry: ToolRegistry, group: str = GROUP) -> list[Tool]:
    """Register the tools of every installed entry point of ``group``; those added."""
    added: list[Tool] = []
    for point in entry_points(group=group):
        try:
            made = point.load()()
        except Exception as exc:
            raise AgentError(f"tool plugin {point.name} ({point.value}): {exc}") from exc
        tools = made if isinstance(made, list) else [made]
        for tool in tools:
            if not isinstance(tool, Tool):
                raise AgentError(
                    f"tool plugin {point.name} ({point.value}) returned "
                    f"{type(tool).__name__}, not a Tool"
                )
            added.append(registry.register(tool))
    return added


__all__ = ["GROUP", "load_plugins"]
