"""The pattern planner: common phrasings to a plan, with no LLM.

"calculate 5*3, add the result as a todo, then list my todos" becomes a calculator step,
a ``todo_add`` of ``{step_1.value}`` and a ``todo_list`` after it. The prompt is cut into
clauses at commas, semicolons and "then" (not inside parentheses); each clause must match
one of :data:`RULES`, else the planner says which clause it could not read.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec

from llmrelay.agents.errors import PlanningFailed
from llmrelay.agents.plan import Limits, Plan, PlanStep, check_plan
from llmrelay.agents.planning.base import OnStep, Planned
from llmrelay.agents.tools.registry import ToolRegistry

_THEN = re.compile(r"\s+(?:and\s+)?then\s+", re.I)
_LEAD = re.compile(r"^(?:and\s+)?(?:then\s+)?", re.I)
_PREVIOUS = r"(?:the\s+result|the\s+answer|it|that|this)"

Built = tuple[str, dict[str, Any]]
Builder = Callable[[re.Match[str], list[PlanStep], ToolRegistry], Built]
"""A matched clause and the steps so far → ``(tool, input)``."""


@dataclass(frozen=True, slots=True)
class Rule:
    pattern: re.Pattern[str]
    build: Builder
    reads_todos: bool = False
    writes_todos: bool = False


def _previous(steps: list[PlanStep], registry: ToolRegistry) -> str:
    if not steps:
        raise PlanningFailed("pattern planner: 'the result' refers to no earlier step")
    last = steps[-1]
    properties = registry.get(last.tool, last.version).output_schema.get("properties", {})
    return f"{{{last.id}.value}}" if "value" in properties else f"{{{last.id}}}"


def _calculate(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "calculator", {"expression": m.group("expr").strip().rstrip(".?!")}


def _add_previous(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "todo_add", {"text": _previous(steps, r)}


def _add_text(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "todo_add", {"text": m.group("text").strip().strip("'\"").rstrip(".!")}


def _list(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "todo_list", {}


def _complete(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "todo_complete", {"id": int(m.group("id"))}


def _fetch(m: re.Match[str], steps: list[PlanStep], r: ToolRegistry) -> Built:
    return "http_get", {"url": m.group("url").rstrip(".,")}


def _rule(pattern: str, build: Builder, **flags: bool) -> Rule:
    return Rule(re.compile(pattern, re.I), build, **flags)


RULES: tuple[Rule, ...] = (
    _rule(r"^(?:please\s+)?(?:calculate|compute|evaluate|what\s+is|work\s+out)\s+"
          r"(?P<expr>[-+*/%^().\d\s\w,]+?)\??$", _calculate),
    _rule(rf"^(?:and\s+)?(?:add|save|put)\s+{_PREVIOUS}\s+(?:as|to|in|into)\s+"
          r"(?:a\s+)?(?:new\s+)?(?:my\s+)?(?:todo|to-do)(?:\s+list|s)?$", _add_previous,
          writes_todos=True),
    _rule(r"^(?:and\s+)?(?:add|create)\s+(?:a\s+)?(?:new\s+)?(?:todo|to-do)(?:\s+item)?"
          r"\s*[:\-]?\s+(?P<text>.+)$", _add_text, writes_todos=True),
    _rule(r"^(?:and\s+)?(?:add|put)\s+(?P<text>['\"].+['\"])\s+(?:to|on)\s+(?:my\s+)?"
          r"(?:todo|to-do)(?:\s+list|s)?$", _add_text, writes_todos=True),
    _rule(r"^(?:and\s+)?remind\s+me\s+to\s+(?P<text>.+)$", _add_text, writes_todos=True),
    _rule(r"^(?:and\s+)?(?:list|show)(?:\s+me)?\s+(?:all\s+)?(?:of\s+)?(?:my\s+)?"
          r"(?:the\s+)?(?:todos?|to-dos?|todo\s+list)\.?$", _list, reads_todos=True),
    _rule(r"^(?:and\s+)?(?:complete|finish|mark)\s+(?:todo|to-do|item)\s+#?(?P<id>\d+)"
          r"(?:\s+as\s+(?:done|complete))?\.?$", _complete, writes_todos=True),
    _rule(r"^(?:and\s+)?(?:fetch|get|download|open)\s+(?P<url>https?://\S+)$", _fetch),
)  # fmt: skip


def clauses(prompt: str) -> list[str]:
    """``prompt`` cut at commas, semicolons and "then", outside parentheses."""
    parts: list[str] = []
    depth, start = 0, 0
    for index, char in enumerate(prompt):
        depth += (char == "(") - (char == ")")
        if depth == 0 and char in ",;":
            parts.append(prompt[start:index])
            start = index + 1
    parts.append(prompt[start:])
    out: list[str] = []
    for part in parts:
        out.extend(_LEAD.sub("", p.strip()) for p in _THEN.split(f" {part} "))
    return [p.strip().rstrip(".") for p in out if p.strip(" .")]


class PatternPlanner:
    """Plans from :data:`RULES` alone; refuses a prompt with a clause it cannot read."""

    name = "pattern"

    def __init__(self, registry: ToolRegistry, limits: Limits | None = None) -> None:
        self.registry = registry
        self.limits = limits or Limits()

    def build(self, prompt: str) -> Plan:
        steps: list[PlanStep] = []
        last_write: str | None = None
        for clause in clauses(prompt):
            rule, match = self._match(clause)
            tool, arguments = rule.build(match, steps, self.registry)
            step_id = f"step_{len(steps) + 1}"
            after = [last_write] if rule.reads_todos and last_write else []
            if rule.writes_todos:
                last_write = step_id
            steps.append(PlanStep(id=step_id, tool=tool, input=arguments, depends_on=after))
        if not steps:
            raise PlanningFailed("pattern planner: the prompt asks for nothing it knows")
        return Plan(steps=steps)

    def _match(self, clause: str) -> tuple[Rule, re.Match[str]]:
        for rule in RULES:
            match = rule.pattern.match(clause)
            if match is not None:
                return rule, match
        raise PlanningFailed(f"pattern planner: cannot read {clause!r}")

    async def plan(self, prompt: str, on_step: OnStep | None = None) -> Planned:
        plan = self.build(prompt)
        check_plan(plan, self.registry, self.limits)
        if on_step is not None:
            for step in plan.steps:
                on_step({"planner": self.name, "attempt": 1, "step": msgspec.to_builtins(step)})
        return Planned(plan=plan, planner=self.name)


__all__ = ["RULES", "PatternPlanner", "Rule", "clauses"]
