"""Plans: typed steps, their deterministic checks, and how references resolve.

A plan is a list of steps; a step names a tool (and optionally its version) and gives it
an input. A string in the input may refer to an earlier step's output: ``"{step_1}"``
(the whole output) or ``"{step_1.value}"`` (one field). A string that is exactly one
reference takes the referenced value as it is; a reference inside longer text is rendered
as text. References are the dependencies; ``depends_on`` adds ordering-only ones.

:func:`check_plan` refuses, before anything runs, a plan that is malformed, too large,
names an unknown tool, refers to a missing step or field, has a cycle, or gives a tool an
input its schema refuses (a referenced value is checked by the type its tool declares).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import msgspec

from llmrelay.agents.errors import PlanInvalid, UnknownTool
from llmrelay.agents.jsonschema import Schema, property_schema, validate
from llmrelay.agents.tools.registry import Tool, ToolRegistry

STEP_ID = re.compile(r"^step_[1-9][0-9]{0,3}$")
REFERENCE = re.compile(r"\{(step_[1-9][0-9]{0,3})((?:\.[A-Za-z_][A-Za-z0-9_]*)*)\}")


class PlanStep(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """One tool call of a plan."""

    id: str
    tool: str
    input: dict[str, Any] = msgspec.field(default_factory=dict)
    version: str | None = None
    depends_on: list[str] = msgspec.field(default_factory=list)


class Plan(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A list of steps; the order is the order they are listed, the DAG their references."""

    steps: list[PlanStep]

    def step(self, step_id: str) -> PlanStep:
        return next(s for s in self.steps if s.id == step_id)


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """How large a plan may be."""

    max_steps: int = 20
    max_input_bytes: int = 16_384


_DECODER = msgspec.json.Decoder(Plan)


def parse_plan(raw: bytes | str | Mapping[str, Any]) -> Plan:
    """A :class:`Plan` from JSON text or an already-decoded mapping."""
    try:
        if isinstance(raw, bytes | str):
            return _DECODER.decode(raw)
        return msgspec.convert(raw, Plan)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise PlanInvalid("malformed", [_where(str(exc))]) from None


def _where(message: str) -> str:
    # msgspec says "... - at `$.steps[0].tool`": lead with the path, as every other problem does
    text, _, path = message.partition(" - at `")
    return f"{path.rstrip('`').removeprefix('$.') or 'plan'}: {text}" if path else message


def references(value: Any) -> list[tuple[str, str]]:
    """Every ``(step_id, field)`` referred to inside ``value`` (field ``""``: the whole)."""
    found: list[tuple[str, str]] = []
    if isinstance(value, str):
        found.extend((m.group(1), m.group(2).lstrip(".")) for m in REFERENCE.finditer(value))
    elif isinstance(value, dict):
        for item in value.values():
            found.extend(references(item))
    elif isinstance(value, list):
        for item in value:
            found.extend(references(item))
    return found


def dependencies(step: PlanStep) -> set[str]:
    return {ref for ref, _ in references(step.input)} | set(step.depends_on)


def generations(plan: Plan) -> list[list[str]]:
    """The steps in levels: each level depends only on earlier ones (plan order inside)."""
    level: dict[str, int] = {}
    remaining = list(plan.steps)
    while remaining:
        ready = [s for s in remaining if all(d in level for d in dependencies(s))]
        if not ready:
            raise PlanInvalid("cycle", [_cycle(remaining)])
        for step in ready:
            level[step.id] = 1 + max((level[d] for d in dependencies(step)), default=-1)
        remaining = [s for s in remaining if s.id not in level]
    out: list[list[str]] = [[] for _ in range(max(level.values(), default=-1) + 1)]
    for step in plan.steps:
        out[level[step.id]].append(step.id)
    return out


def _cycle(steps: list[PlanStep]) -> str:
    """One cycle among ``steps`` (each of which waits on another of them), as a path."""
    waiting = {s.id: sorted(dependencies(s)) for s in steps}
    current, path = steps[0].id, []
    while current not in path:
        path.append(current)
        current = next(d for d in waiting[current] if d in waiting)
    loop = [*path[path.index(current) :], current]
    return "steps: dependency cycle " + " -> ".join(loop)


def check_plan(plan: Plan, registry: ToolRegistry, limits: Limits | None = None) -> list[list[str]]:
    """Check ``plan`` against the registry; its generations, or :class:`PlanInvalid`."""
    limits = limits or Limits()
    if not plan.steps:
        raise PlanInvalid("malformed", ["steps: a plan needs at least one step"])
    if len(plan.steps) > limits.max_steps:
        raise PlanInvalid(
            "too_large", [f"steps: {len(plan.steps)} steps, at most {limits.max_steps}"]
        )
    problems: list[str] = []
    seen: set[str] = set()
    for index, step in enumerate(plan.steps):
        if not STEP_ID.match(step.id):
            problems.append(f"steps[{index}].id: {step.id!r} is not like 'step_1'")
        elif step.id in seen:
            problems.append(f"steps[{index}].id: {step.id!r} is used twice")
        seen.add(step.id)
        size = len(msgspec.json.encode(step.input))
        if size > limits.max_input_bytes:
            raise PlanInvalid(
                "too_large",
                [f"steps[{index}].input: {size} bytes, at most {limits.max_input_bytes}"],
            )
    if problems:
        raise PlanInvalid("malformed", problems)
    tools = _tools(plan, registry)
    _check_references(plan, tools)
    levels = generations(plan)
    _check_inputs(plan, tools)
    return levels


def _tools(plan: Plan, registry: ToolRegistry) -> dict[str, Tool]:
    tools: dict[str, Tool] = {}
    problems: list[str] = []
    for index, step in enumerate(plan.steps):
        try:
            tools[step.id] = registry.get(step.tool, step.version)
        except UnknownTool as exc:
            problems.append(f"steps[{index}].tool: {exc}")
    if problems:
        raise PlanInvalid("unknown_tool", problems)
    return tools


def _check_references(plan: Plan, tools: Mapping[str, Tool]) -> None:
    problems: list[str] = []
    for index, step in enumerate(plan.steps):
        for ref in step.depends_on:
            if ref not in tools or ref == step.id:
                problems.append(f"steps[{index}].depends_on: no other step {ref!r}")
        for ref, field in references(step.input):
            if ref == step.id:
                problems.append(f"steps[{index}].input: {{{ref}}} refers to the step itself")
            elif ref not in tools:
                problems.append(f"steps[{index}].input: {{{ref}}} names no step of the plan")
            elif (
                field
                and _declares_fields(tools[ref].output_schema)
                and property_schema(tools[ref].output_schema, field) is None
            ):
                problems.append(
                    f"steps[{index}].input: {{{ref}.{field}}}: {tools[ref].name} has no "
                    f"output field {field!r}"
                )
    if problems:
        raise PlanInvalid("bad_reference", problems)


def _declares_fields(schema: Schema) -> bool:
    return isinstance(schema.get("properties"), Mapping)


def _check_inputs(plan: Plan, tools: Mapping[str, Tool]) -> None:
    def schema_of(value: Any) -> Schema | None:
        match = REFERENCE.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            return None
        output = tools[match.group(1)].output_schema
        field = match.group(2).lstrip(".")
        return (property_schema(output, field) if field else output) or {}

    problems: list[str] = []
    for index, step in enumerate(plan.steps):
        where = f"steps[{index}].input"
        problems += validate(step.input, tools[step.id].input_schema, where, schema_of=schema_of)
    if problems:
        raise PlanInvalid("bad_input", problems)


def resolve(value: Any, results: Mapping[str, Any], schema: Schema | None = None) -> Any:
    """``value`` with its references replaced by the results of the steps they name."""
    if isinstance(value, str):
        match = REFERENCE.fullmatch(value)
        if match is not None:
            found = _lookup(results, match.group(1), match.group(2).lstrip("."))
            wants_text = schema is not None and schema.get("type") == "string"
            return _text(found) if wants_text and not isinstance(found, str) else found
        return REFERENCE.sub(
            lambda m: _text(_lookup(results, m.group(1), m.group(2).lstrip("."))), value
        )
    if isinstance(value, dict):
        properties = (schema or {}).get("properties", {})
        return {k: resolve(v, results, properties.get(k)) for k, v in value.items()}
    if isinstance(value, list):
        items = (schema or {}).get("items")
        return [resolve(v, results, items) for v in value]
    return value


def _lookup(results: Mapping[str, Any], step_id: str, field: str) -> Any:
    value = results[step_id]
    for part in filter(None, field.split(".")):
        if not isinstance(value, dict) or part not in value:
            raise KeyError(f"{{{step_id}.{field}}}: the output of {step_id} has no {part!r}")
        value = value[part]
    return value


def _text(value: Any) -> str:
    return value if isinstance(value, str) else msgspec.json.encode(value).decode()


__all__ = [
    "Limits",
    "Plan",
    "PlanStep",
    "check_plan",
    "dependencies",
    "generations",
    "parse_plan",
    "references",
    "resolve",
]
