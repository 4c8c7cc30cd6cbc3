"""The tool registry, the built-in tools and entry-point plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmrelay.agents.errors import ToolFailed, UnknownTool
from llmrelay.agents.store import RunStore
from llmrelay.agents.tools import (
    Tool,
    ToolRegistry,
    builtin_registry,
    calculate,
    http_get_tool,
    load_plugins,
    todo_tools,
)
from llmrelay.agents.tools.calculator import CalculationError
from llmrelay.testing import SimulatorHandle

PLUGIN_DIR = Path(__file__).parent / "plugin_pkg"


@pytest.mark.parametrize(
    ("expression", "value"),
    [("5*3", 15), ("2 ** 10", 1024), ("(1 + 2) * 3 - 4 / 2", 7), ("sqrt(16) + abs(-2)", 6),
     ("7 // 2 + 7 % 2", 4), ("2^3", 8), ("-1.5 * 2", -3), ("max(1, 9, 3)", 9)],
)  # fmt: skip
def test_calculator_values(expression: str, value: float) -> None:
    """Arithmetic is evaluated exactly, without eval."""
    assert calculate(expression) == value


@pytest.mark.parametrize(
    ("expression", "reason"),
    [("__import__('os').system('true')", "not allowed"), ("open('x')", "not allowed"),
     ("9**9**9", "exponents"), ("1/0", "division by zero"), ("a + 1", "not allowed"),
     ("1 +", "not an arithmetic"), ("True + 1", "boolean"), ("(-8) ** 0.5", "real number"),
     ("1" * 300, "longer than")],
)  # fmt: skip
def test_calculator_refuses(expression: str, reason: str) -> None:
    """Anything but bounded arithmetic is refused with a reason."""
    with pytest.raises(CalculationError, match=reason):
        calculate(expression)


async def noop(arguments: dict[str, Any]) -> dict[str, Any]:
    return {"echo": arguments}


def make(version: str, **extra: Any) -> Tool:
    return Tool(name="echo", version=version, description="echo",
                input_schema={"type": "object"}, output_schema={"type": "object"},
                run=noop, **extra)  # fmt: skip


def test_registry_latest_version_by_default() -> None:
    """Without a version the highest one is used (10.0 > 9.1); an exact one can be asked."""
    registry = ToolRegistry()
    for version in ("1.0.0", "10.0.0", "9.1.0"):
        registry.register(make(version))
    assert registry.get("echo").version == "10.0.0"
    assert registry.get("echo", "9.1.0").version == "9.1.0"
    with pytest.raises(UnknownTool, match=r"no version '2\.0\.0'"):
        registry.get("echo", "2.0.0")
    with pytest.raises(ValueError, match="already registered"):
        registry.register(make("1.0.0"))


def test_tool_declaration_checked() -> None:
    """A tool with a bad name, version or policy is refused at registration."""
    with pytest.raises(ValueError, match="version"):
        make("v1")
    with pytest.raises(ValueError, match="timeout_s"):
        make("1.0", timeout_s=0)


async def test_metrics_count_calls_and_failures() -> None:
    """invoke counts calls and failures; an answer breaking the output schema is a failure."""

    async def bad(arguments: dict[str, Any]) -> dict[str, Any]:
        return {"n": "not a number"}

    registry = ToolRegistry()
    tool = registry.register(Tool(
        name="bad", version="1.0", description="", input_schema={"type": "object"},
        output_schema={"type": "object", "properties": {"n": {"type": "integer"}}}, run=bad))  # fmt: skip
    good = registry.register(make("1.0"))
    await registry.invoke(good, {"a": 1})
    with pytest.raises(ToolFailed, match=r"output\.n: expected an integer"):
        await registry.invoke(tool, {})
    assert registry.metrics("echo", "1.0").snapshot()["calls"] == 1
    assert registry.metrics("bad", "1.0").snapshot()["failures"] == 1


async def test_todo_tools_persist(tmp_path: Path) -> None:
    """Todos added are kept in the database and seen by a new store on the same file."""
    url = f"sqlite:///{tmp_path / 'todo.sqlite'}"
    registry = ToolRegistry()
    for tool in todo_tools(RunStore(url)):
        registry.register(tool)
    added = await registry.invoke(registry.get("todo_add"), {"text": "buy milk"})
    await registry.invoke(registry.get("todo_complete"), {"id": added["id"]})
    await registry.invoke(registry.get("todo_add"), {"text": "call mum"})
    again = ToolRegistry()
    for tool in todo_tools(RunStore(url)):
        again.register(tool)
    listed = await again.invoke(again.get("todo_list"), {})
    assert [i["text"] for i in listed["items"]] == ["call mum"]
    everything = await again.invoke(again.get("todo_list"), {"include_done": True})
    assert everything["count"] == 2
    with pytest.raises(ToolFailed, match="no todo with id 99"):
        await again.invoke(again.get("todo_complete"), {"id": 99})


async def test_http_get_allow_list(simulator: SimulatorHandle) -> None:
    """http_get reaches an allowed host over HTTP and refuses any other."""
    host = simulator.url.removeprefix("http://")
    registry = ToolRegistry()
    tool = registry.register(http_get_tool([host], max_body=100_000))
    answer = await registry.invoke(tool, {"url": f"{simulator.url}/_sim/ledger"})
    assert answer["status"] == 200 and '"keys"' in answer["body"]
    other = registry.register(Tool(**{**_fields(http_get_tool(["example.org"])),
                                      "version": "2.0.0"}))  # fmt: skip
    with pytest.raises(ToolFailed, match="not on the allow-list"):
        await registry.invoke(other, {"url": f"{simulator.url}/_sim/ledger"})


def _fields(tool: Tool) -> dict[str, Any]:
    return {name: getattr(tool, name) for name in tool.__dataclass_fields__}


async def test_entry_point_plugin(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An installed package's entry point adds its tools to the registry."""
    monkeypatch.syspath_prepend(str(PLUGIN_DIR))
    registry = builtin_registry(RunStore(f"sqlite:///{tmp_path / 'p.sqlite'}"), plugins=False)
    added = load_plugins(registry)
    assert [(t.name, t.version) for t in added] == [("word_count", "2.1.0")]
    assert await registry.invoke(registry.get("word_count"), {"text": "a b c"}) == {"words": 3}
