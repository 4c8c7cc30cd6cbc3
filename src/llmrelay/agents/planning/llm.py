"""The LLM planner: the prompt and the tools to SmartLLM, a JSON-schema plan back.

The model group is chosen by the prompt's complexity. The answer is parsed and checked
like any plan; an invalid one is sent back with the checker's problems, and one the judge
(when configured) refuses with its issues and suggestions, up to ``max_replans`` times in
all; the run's note records how many replans it took and the run keeps the verdicts.
"""

from __future__ import annotations

import json
from typing import Any

from llmrelay import SmartLLM
from llmrelay.agents.config import PlannerSettings
from llmrelay.agents.errors import PlanInvalid, PlanningFailed
from llmrelay.agents.plan import Limits, check_plan, parse_plan
from llmrelay.agents.planning.base import OnStep, Planned
from llmrelay.agents.planning.complexity import complexity, level
from llmrelay.agents.planning.judge import PlanJudge, Verdict
from llmrelay.agents.planning.stream import StepStream
from llmrelay.agents.tools.registry import ToolRegistry
from llmrelay.errors import LLMRelayError
from llmrelay.types import ChatRequest, Message, ResponseFormat, StreamAccumulator, TextDelta

PLAN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "steps": {
            "type": "array",
            "items": {
                "type": "object",
                "properties": {
                    "id": {"type": "string", "pattern": "^step_[1-9][0-9]*$"},
                    "tool": {"type": "string"},
                    "version": {"type": ["string", "null"]},
                    "input": {"type": "object"},
                    "depends_on": {"type": "array", "items": {"type": "string"}},
                },
                "required": ["id", "tool", "input"],
                "additionalProperties": False,
            },
        }
    },
    "required": ["steps"],
    "additionalProperties": False,
}

_INSTRUCTIONS = """You turn a request into a plan of tool calls, as JSON matching the schema.
Steps are named step_1, step_2, ... in order. A string in a step's input may use the output
of an earlier step: "{step_1}" for the whole output, "{step_1.value}" for one field. Steps
that do not refer to each other run in parallel; use "depends_on" to order steps that only
depend on each other's effects. Use only these tools (name, version, input schema, output):
"""


def system_prompt(registry: ToolRegistry) -> str:
    lines = [_INSTRUCTIONS]
    for tool in registry.latest():
        fields = ", ".join(tool.output_schema.get("properties", {})) or "any"
        lines.append(
            f"- {tool.name} {tool.version}: {tool.description} input: "
            f"{json.dumps(tool.input_schema, separators=(',', ':'))}; output fields: {fields}"
        )
    return "\n".join(lines)


class LLMPlanner:
    """Asks SmartLLM for a plan; the group by complexity; replans with the problems."""

    name = "llm"

    def __init__(
        self,
        llm: SmartLLM,
        registry: ToolRegistry,
        settings: PlannerSettings | None = None,
        limits: Limits | None = None,
        judge: PlanJudge | None = None,
    ) -> None:
        self.llm = llm
        self.registry = registry
        self.settings = settings or PlannerSettings()
        self.limits = limits or Limits()
        self.judge = judge

    def group(self, prompt: str) -> tuple[str, float]:
        score = complexity(prompt)
        chosen = level(
            score,
            balanced_from=self.settings.balanced_from,
            strong_from=self.settings.strong_from,
        )
        return self.settings.groups.get(chosen, "default"), score

    async def plan(self, prompt: str, on_step: OnStep | None = None) -> Planned:
        group, score = self.group(prompt)
        messages = [Message(role="user", content=prompt)]
        verdicts: list[Verdict] = []
        for attempt in range(self.settings.max_replans + 1):
            request = ChatRequest(
                messages=list(messages),
                system=system_prompt(self.registry),
                max_tokens=self.settings.max_tokens,
                temperature=0,
                response_format=ResponseFormat(
                    type="json_schema", json_schema=PLAN_SCHEMA, name="plan"
                ),
            )
            try:
                content = await self._ask(request, group, attempt + 1, on_step)
            except LLMRelayError as exc:
                raise PlanningFailed(f"llm planner ({group}): {exc}") from exc
            try:
                plan = parse_plan(content)
                check_plan(plan, self.registry, self.limits)
            except PlanInvalid as exc:
                if attempt == self.settings.max_replans:
                    raise PlanningFailed(f"llm planner ({group}): {exc}") from exc
                messages += [
                    Message(role="assistant", content=content),
                    Message(role="user", content="The plan was refused: "
                            + "; ".join(exc.problems) + ". Answer a corrected plan."),
                ]  # fmt: skip
                continue
            if self.judge is not None:
                verdict = await self.judge.review(prompt, plan)
                verdicts.append(verdict)
                if not self.judge.accepts(verdict):
                    if attempt == self.settings.max_replans:
                        raise PlanningFailed(
                            f"llm planner ({group}): the judge refused the plan: "
                            + "; ".join(verdict.issues or ["no reason given"])
                        )
                    messages += [
                        Message(role="assistant", content=content),
                        Message(role="user", content=verdict.feedback()),
                    ]
                    continue
            note = f"group {group} (complexity {score})"
            if attempt:
                note += f", after {attempt} replan(s)"
            return Planned(plan=plan, planner=self.name, note=note, group=group,
                           verdicts=tuple(verdicts))  # fmt: skip
        raise AssertionError("unreachable: the loop returns or raises")

    async def _ask(
        self, request: ChatRequest, group: str, attempt: int, on_step: OnStep | None
    ) -> str:
        """The planner's answer; streamed, steps told as they close, when ``on_step``."""
        if on_step is None:
            return (await self.llm.ainvoke(request, model=group)).content
        steps = StepStream()
        answer = StreamAccumulator()
        async for event in self.llm.astream(request, model=group):
            answer.add(event)
            if isinstance(event, TextDelta):
                for step in steps.feed(event.text):
                    on_step({"planner": self.name, "attempt": attempt, "step": step})
        return answer.response().content


__all__ = ["PLAN_SCHEMA", "LLMPlanner", "system_prompt"]
