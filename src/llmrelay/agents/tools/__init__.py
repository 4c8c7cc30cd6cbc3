"""Tools a plan may call: the versioned registry, the built-ins and entry-point plugins."""

from __future__ import annotations

from collections.abc import Iterable

from llmrelay.agents.tools.calculator import calculate, calculator_tool
from llmrelay.agents.tools.http import http_get_tool
from llmrelay.agents.tools.plugins import GROUP, load_plugins
from llmrelay.agents.tools.registry import Tool, ToolFunc, ToolMetrics, ToolRegistry
from llmrelay.agents.tools.todo import TodoStore, todo_tools


def builtin_registry(
    todos: TodoStore, *, http_allow: Iterable[str] = (), plugins: bool = True
) -> ToolRegistry:
    """The built-in tools (and, with ``plugins``, the installed plugins) in a new registry."""
    registry = ToolRegistry()
    for tool in (calculator_tool(), *todo_tools(todos), http_get_tool(http_allow)):
        registry.register(tool)
    if plugins:
        load_plugins(registry)
    return registry


__all__ = [
    "GROUP",
    "TodoStore",
    "Tool",
    "ToolFunc",
    "ToolMetrics",
    "ToolRegistry",
    "builtin_registry",
    "calculate",
    "calculator_tool",
    "http_get_tool",
    "load_plugins",
    "todo_tools",
]
