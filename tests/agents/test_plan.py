"""Plans are checked deterministically before anything runs."""

from __future__ import annotations

from typing import Any

import pytest

from llmrelay.agents.errors import PlanInvalid
from llmrelay.agents.plan import Limits, check_plan, generations, parse_plan, resolve
from llmrelay.agents.store import RunStore
from llmrelay.agents.tools import ToolRegistry, builtin_registry


@pytest.fixture
def registry(tmp_path: Any) -> ToolRegistry:
    store = RunStore(f"sqlite:///{tmp_path / 'r.sqlite'}")
    return builtin_registry(store, plugins=False)


def step(n: int, tool: str, **input: Any) -> dict[str, Any]:
    return {"id": f"step_{n}", "tool": tool, "input": input}


def refused(registry: ToolRegistry, raw: Any, limits: Limits | None = None) -> PlanInvalid:
    with pytest.raises(PlanInvalid) as caught:
        check_plan(parse_plan(raw), registry, limits)
    return caught.value


def test_valid_plan_has_generations(registry: ToolRegistry) -> None:
    """Independent steps share a generation; a referring step comes after its source."""
    plan = parse_plan({"steps": [
        step(1, "calculator", expression="1+1"),
        step(2, "calculator", expression="2*3"),
        step(3, "todo_add", text="sum {step_1.value} and {step_2.value}"),
        {**step(4, "todo_list"), "depends_on": ["step_3"]},
    ]})  # fmt: skip
    assert check_plan(plan, registry) == [["step_1", "step_2"], ["step_3"], ["step_4"]]


def test_malformed_plan_names_the_field(registry: ToolRegistry) -> None:
    """A step without a tool is malformed, and the problem names where."""
    error = refused(registry, {"steps": [{"id": "step_1", "input": {}}]})
    assert error.code == "malformed"
    assert "steps[0]" in error.problems[0] and "tool" in error.problems[0]


def test_not_json_is_malformed(registry: ToolRegistry) -> None:
    """Text that is not JSON is refused as malformed."""
    assert refused(registry, b"{steps: [").code == "malformed"


def test_bad_step_ids_and_duplicates(registry: ToolRegistry) -> None:
    """Step ids must look like step_N and be unique."""
    error = refused(registry, {"steps": [step(1, "todo_list"), step(1, "todo_list"),
                                         {"id": "first", "tool": "todo_list"}]})  # fmt: skip
    assert error.code == "malformed"
    assert any("used twice" in p for p in error.problems)
    assert any("'first'" in p for p in error.problems)


def test_unknown_tool_and_version(registry: ToolRegistry) -> None:
    """An unknown tool or version is refused, naming what is known."""
    error = refused(registry, {"steps": [step(1, "teleport"),
                                         {**step(2, "calculator", expression="1"),
                                          "version": "9.0.0"}]})  # fmt: skip
    assert error.code == "unknown_tool"
    assert "teleport" in error.problems[0] and "calculator" in error.problems[0]
    assert "9.0.0" in error.problems[1] and "1.0.0" in error.problems[1]


def test_cycle_is_named(registry: ToolRegistry) -> None:
    """A dependency cycle is refused with the cycle spelled out."""
    error = refused(registry, {"steps": [
        step(1, "todo_add", text="{step_2.text}"),
        step(2, "todo_add", text="{step_1.text}"),
    ]})  # fmt: skip
    assert error.code == "cycle"
    assert "step_1 -> step_2 -> step_1" in error.problems[0]


def test_references_must_resolve(registry: ToolRegistry) -> None:
    """A reference to a missing step, to itself, or to an undeclared field is refused."""
    error = refused(registry, {"steps": [
        step(1, "todo_add", text="{step_9}"),
        step(2, "todo_add", text="{step_2.text}"),
        step(3, "todo_add", text="{step_4.colour}"),
        step(4, "calculator", expression="1"),
    ]})  # fmt: skip
    assert error.code == "bad_reference"
    assert len(error.problems) == 3
    assert "colour" in error.problems[2]


def test_input_checked_against_schema(registry: ToolRegistry) -> None:
    """Tool input that breaks the tool's schema is refused with the path of the problem."""
    error = refused(registry, {"steps": [step(1, "calculator", expression=5, extra=1)]})
    assert error.code == "bad_input"
    assert any("steps[0].input.expression: expected a string" in p for p in error.problems)
    assert any("steps[0].input.extra: unknown key" in p for p in error.problems)


def test_referenced_type_checked(registry: ToolRegistry) -> None:
    """A whole-value reference must have a type the input accepts (a list is not an id)."""
    error = refused(registry, {"steps": [
        step(1, "todo_list"),
        step(2, "todo_complete", id="{step_1.items}"),
    ]})  # fmt: skip
    assert error.code == "bad_input"
    assert "array" in error.problems[0] and "integer" in error.problems[0]


def test_size_is_bounded(registry: ToolRegistry) -> None:
    """More steps, or a bigger input, than the limits allow is refused as too large."""
    many = {"steps": [step(i, "todo_list") for i in range(1, 6)]}
    assert refused(registry, many, Limits(max_steps=4)).code == "too_large"
    big = {"steps": [step(1, "todo_add", text="x" * 200)]}
    assert refused(registry, big, Limits(max_input_bytes=100)).code == "too_large"


def test_empty_plan_is_malformed(registry: ToolRegistry) -> None:
    """A plan with no steps is refused."""
    assert refused(registry, {"steps": []}).code == "malformed"


def test_resolve_keeps_types_and_renders_text() -> None:
    """A whole reference keeps its value's type unless a string is asked; inside text it is
    rendered."""
    results = {"step_1": {"value": 15, "items": [1, 2]}}
    schema = {"type": "object", "properties": {"n": {"type": "integer"},
                                               "s": {"type": "string"}}}  # fmt: skip
    out = resolve({"n": "{step_1.value}", "s": "{step_1.value}", "t": "got {step_1.items}!"},
                  results, schema)  # fmt: skip
    assert out == {"n": 15, "s": "15", "t": "got [1,2]!"}


def test_generations_follow_depends_on() -> None:
    """depends_on orders steps that share no data."""
    plan = parse_plan({"steps": [step(1, "a"), {**step(2, "b"), "depends_on": ["step_1"]},
                                 step(3, "c")]})  # fmt: skip
    assert generations(plan) == [["step_1", "step_3"], ["step_2"]]
