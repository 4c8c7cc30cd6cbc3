"""Planners: the pattern rules, the LLM planner through SmartLLM, the breaker fallback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.agents.config import AgentSettings, PlannerSettings
from llmrelay.agents.errors import PlanningFailed
from llmrelay.agents.planning import (
    FallbackPlanner,
    LLMPlanner,
    PatternPlanner,
    PlanJudge,
    PlannerBreaker,
    StepStream,
    clauses,
    complexity,
)
from llmrelay.agents.service import AgentService
from llmrelay.agents.store import RunStore
from llmrelay.agents.tools import ToolRegistry, builtin_registry
from llmrelay.testing import SimulatorHandle

GROUPS = PlannerSettings(groups={"cheap": "cheap", "balanced": "cheap", "strong": "strong"})


@pytest.fixture
def registry(tmp_path: Path) -> ToolRegistry:
    return builtin_registry(RunStore(f"sqlite:///{tmp_path / 'p.sqlite'}"), plugins=False)


@pytest.fixture
async def llm(simulator: SimulatorHandle) -> AsyncIterator[SmartLLM]:
    built = (
        LLMBuilder()
        .with_primary("openai", "sim-openai", group="cheap", base_url=simulator.openai_base_url,
                      api_key="sk-plan")
        .with_primary("anthropic", "sim-anthropic", group="strong", base_url=simulator.url,
                      api_key="sk-plan")
        .with_retries(0)
        .build()
    )  # fmt: skip
    yield built
    await built.aclose()


def script(pattern: str, plan: dict[str, Any]) -> dict[str, str]:
    """A simulator script answering ``plan`` as JSON (braces escaped for its formatting)."""
    return {"pattern": pattern, "reply": json.dumps(plan).replace("{", "{{").replace("}", "}}")}


TODO_PLAN = {"steps": [
    {"id": "step_1", "tool": "calculator", "input": {"expression": "6*7"}},
    {"id": "step_2", "tool": "todo_add", "input": {"text": "answer {step_1.value}"}},
]}  # fmt: skip


def test_pattern_planner_reads_the_common_phrasing(registry: ToolRegistry) -> None:
    """The example phrasing becomes calculate → add the result → list after the add."""
    plan = PatternPlanner(registry).build(
        "calculate 5*3, add the result as a todo, then list my todos"
    )
    assert [(s.tool, s.input, s.depends_on) for s in plan.steps] == [
        ("calculator", {"expression": "5*3"}, []),
        ("todo_add", {"text": "{step_1.value}"}, []),
        ("todo_list", {}, ["step_2"]),
    ]


@pytest.mark.parametrize(
    ("prompt", "tools"),
    [("compute (2+3)*4 and then add a todo: water the plants", ["calculator", "todo_add"]),
     ("remind me to call Bob; show my todos", ["todo_add", "todo_list"]),
     ("complete todo 3, then list todos", ["todo_complete", "todo_list"]),
     ("fetch http://127.0.0.1:9/x", ["http_get"]),
     ("calculate max(1, 2), calculate 3*3", ["calculator", "calculator"])],
)  # fmt: skip
def test_pattern_planner_phrasings(registry: ToolRegistry, prompt: str, tools: list[str]) -> None:
    """Each known phrasing maps to its tools, in order."""
    assert [s.tool for s in PatternPlanner(registry).build(prompt).steps] == tools


def test_pattern_planner_names_what_it_cannot_read(registry: ToolRegistry) -> None:
    """An unknown clause is refused with the clause quoted."""
    with pytest.raises(PlanningFailed, match="cannot read 'book a flight to Rome'"):
        PatternPlanner(registry).build("calculate 1+1, then book a flight to Rome")


def test_clauses_respect_parentheses() -> None:
    """Commas inside parentheses do not cut a clause."""
    assert clauses("calculate max(1, 2), then list todos") == ["calculate max(1, 2)", "list todos"]


def test_complexity_orders_prompts() -> None:
    """A longer, conditional, multi-step prompt scores higher than a one-step one."""
    simple = complexity("list my todos")
    hard = complexity("compare the prices of each supplier, if any is cheaper then add a todo, "
                      "otherwise summarise why, then list my todos and explain the best plan")  # fmt: skip
    assert simple < 0.35 <= 0.7 <= hard


async def test_llm_planner_uses_the_scripted_plan(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """The LLM's JSON plan is parsed and checked; the cheap group answers a short prompt."""
    simulator.configure({"scripts": [script(r"multiply six by seven", TODO_PLAN)]})
    planned = await LLMPlanner(llm, registry, GROUPS).plan("multiply six by seven and note it")
    assert planned.planner == "llm" and planned.group == "cheap"
    assert [s.tool for s in planned.plan.steps] == ["calculator", "todo_add"]
    assert simulator.usage("sk-plan", "sim-openai")["requests"] == 1


async def test_llm_planner_routes_complex_prompts_to_the_strong_group(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """A complex prompt goes to the strong group's deployment."""
    simulator.configure({"scripts": [script(r"compare", TODO_PLAN)]})
    prompt = ("compare each offer, if one is cheaper then explain why and summarise the best "
              "plan, otherwise analyse every option again, then add a todo and list my todos")  # fmt: skip
    planned = await LLMPlanner(llm, registry, GROUPS).plan(prompt)
    assert planned.group == "strong"
    assert simulator.usage("sk-plan", "sim-anthropic")["requests"] == 1


async def test_llm_planner_replans_with_the_problems(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """An invalid plan is sent back with the checker's problems; the corrected one is used."""
    wrong = {"steps": [{"id": "step_1", "tool": "teleport", "input": {}}]}
    simulator.configure({"scripts": [script(r"refused.*teleport", TODO_PLAN),
                                     script(r"go somewhere", wrong)]})  # fmt: skip
    planned = await LLMPlanner(llm, registry, GROUPS).plan("go somewhere")
    assert "after 1 replan" in planned.note
    assert simulator.usage("sk-plan", "sim-openai")["requests"] == 2


async def test_breaker_falls_back_to_the_pattern_planner(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """With the LLM's deployments failing, plans come from the pattern planner and say so;
    once the breaker is open the LLM is not called at all."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    clock = [0.0]
    breaker = PlannerBreaker(2, 30.0, clock=lambda: clock[0])
    planner = FallbackPlanner(LLMPlanner(llm, registry, GROUPS), PatternPlanner(registry), breaker)
    first = await planner.plan("calculate 1+1")
    assert first.planner == "pattern" and first.note.startswith("fallback: llm planner")
    await planner.plan("calculate 1+2")
    assert breaker.state == "open"
    served = simulator.usage("sk-plan", "sim-openai")
    third = await planner.plan("calculate 1+3")
    assert "breaker is open" in third.note
    assert simulator.usage("sk-plan", "sim-openai") == served
    simulator.set_faults("sim-openai", {})
    simulator.configure({"scripts": [script(r"six", TODO_PLAN)]})
    clock[0] = 31.0  # the cooldown has passed: one probe, which succeeds and closes it
    assert (await planner.plan("six times seven")).planner == "llm"
    assert breaker.state == "closed"


async def test_service_records_the_fallback_on_the_run(
    simulator: SimulatorHandle, llm: SmartLLM, tmp_path: Path
) -> None:
    """A run planned by the fallback records the pattern planner and the reason."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    settings = AgentSettings(data_dir=tmp_path, plugins=False, planner=GROUPS)
    async with AgentService(settings, llm=llm, instance="planner-fallback") as service:
        run = await service.submit("calculate 2*21")
        assert run["planner"] == "pattern" and run["planner_note"].startswith("fallback:")
        assert (await service.wait(run["id"]))["steps"][0]["result"] == {"value": 42}


def verdict(valid: bool, confidence: float, *issues: str) -> dict[str, Any]:
    return {"valid": valid, "confidence": confidence, "issues": list(issues),
            "suggestions": ["add the answer as a todo"] if issues else []}  # fmt: skip


JUDGED = PlannerSettings(groups=GROUPS.groups, judge="strong")
CALC_ONLY = {"steps": [{"id": "step_1", "tool": "calculator", "input": {"expression": "6*7"}}]}


async def test_the_judge_sends_a_refused_plan_back_with_its_verdict(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """A plan the judge refuses is replanned with its issues and suggestions; the accepted
    plan comes back with both verdicts, the refused one first."""
    simulator.configure({"scripts": [
        script(r"^Request: .*todo_add", verdict(True, 0.9)),
        script(r"^Request: ", verdict(False, 0.8, "the answer is never noted")),
        script(r"reviewer refused.*never noted.*Suggestions: add the answer", TODO_PLAN),
        script(r"six by seven", CALC_ONLY),
    ]})  # fmt: skip
    planner = LLMPlanner(llm, registry, JUDGED, judge=PlanJudge(llm, "strong"))
    planned = await planner.plan("multiply six by seven and note it")
    assert [s.tool for s in planned.plan.steps] == ["calculator", "todo_add"]
    assert [(v.valid, v.group) for v in planned.verdicts] == [(False, "strong"), (True, "strong")]
    assert planned.verdicts[0].issues == ["the answer is never noted"]
    assert "after 1 replan" in planned.note
    assert simulator.usage("sk-plan", "sim-anthropic")["requests"] == 2  # the judge, twice


async def test_a_plan_the_judge_is_unsure_of_is_refused_when_replans_run_out(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """Valid but below ``min_confidence`` is a refusal; with no replan left, planning fails
    saying why (and the fallback planner, if any, takes over)."""
    simulator.configure({"scripts": [script(r"^Request: ", verdict(True, 0.3, "unsure")),
                                     script(r"six by seven", CALC_ONLY)]})  # fmt: skip
    settings = PlannerSettings(groups=GROUPS.groups, judge="strong", max_replans=0)
    planner = LLMPlanner(llm, registry, settings, judge=PlanJudge(llm, "strong",
                                                                   min_confidence=0.6))  # fmt: skip
    with pytest.raises(PlanningFailed, match="the judge refused the plan: unsure"):
        await planner.plan("multiply six by seven")


async def test_a_judge_that_cannot_answer_refuses_nothing(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """The judge's deployment failing leaves the plan in place, marked unreviewed."""
    simulator.configure({"scripts": [script(r"six by seven", CALC_ONLY)]})
    simulator.set_faults("sim-anthropic", {"500": 1.0})
    planner = LLMPlanner(llm, registry, JUDGED, judge=PlanJudge(llm, "strong"))
    planned = await planner.plan("multiply six by seven")
    (unavailable,) = planned.verdicts
    assert not unavailable.available and unavailable.issues[0].startswith("judge unavailable")
    assert [s.tool for s in planned.plan.steps] == ["calculator"]


async def test_the_run_keeps_the_verdicts(
    simulator: SimulatorHandle, llm: SmartLLM, tmp_path: Path
) -> None:
    """The service builds the judge from ``planner.judge`` and stores its verdicts."""
    simulator.configure({"scripts": [script(r"^Request: ", verdict(True, 0.95)),
                                     script(r"six by seven", CALC_ONLY)]})  # fmt: skip
    settings = AgentSettings(data_dir=tmp_path, plugins=False, planner=JUDGED)
    async with AgentService(settings, llm=llm, instance="planner-judge") as service:
        run = await service.submit("multiply six by seven")
        assert run["verdicts"] == [{"valid": True, "confidence": 0.95, "issues": [],
                                    "suggestions": [], "group": "strong", "available": True}]  # fmt: skip
        assert (await service.wait(run["id"]))["status"] == "succeeded"


TRICKY = {"steps": [
    {"id": "step_1", "tool": "calculator", "input": {"expression": "(1+2)*3"}},
    {"id": "step_2", "tool": "todo_add", "input": {"text": "a } and a { and \"quotes\" [x]"}},
    {"id": "step_3", "tool": "todo_list", "input": {}, "depends_on": ["step_2"]},
]}  # fmt: skip


@pytest.mark.parametrize("size", [1, 2, 3, 7, 1000])
def test_step_stream_yields_each_step_as_its_object_closes(size: int) -> None:
    """Whatever the chunking, each step comes out once, when its closing brace arrives,
    braces and brackets inside strings notwithstanding."""
    text = json.dumps(TRICKY)
    stream = StepStream()
    seen: list[tuple[int, dict[str, Any]]] = []
    for start in range(0, len(text), size):
        seen += [(start + size, step) for step in stream.feed(text[start : start + size])]
    assert [step for _, step in seen] == TRICKY["steps"]
    for end, step in seen:
        closing = text.index(json.dumps(step)) + len(json.dumps(step))
        assert closing <= end < closing + size  # told in the chunk that closed it


async def test_llm_planner_streams_and_tells_each_step(
    simulator: SimulatorHandle, llm: SmartLLM, registry: ToolRegistry
) -> None:
    """With ``on_step`` the planner streams; each step is told once, in order, and the
    checked plan is the whole answer."""
    simulator.configure({"scripts": [script(r"six by seven", TODO_PLAN)]})
    told: list[dict[str, Any]] = []
    planned = await LLMPlanner(llm, registry, GROUPS).plan("multiply six by seven", told.append)
    assert [t["step"] for t in told] == TODO_PLAN["steps"]
    assert {(t["planner"], t["attempt"]) for t in told} == {("llm", 1)}
    assert [s.id for s in planned.plan.steps] == ["step_1", "step_2"]


async def test_submit_tells_plan_steps_of_the_fallback_too(
    simulator: SimulatorHandle, llm: SmartLLM, tmp_path: Path
) -> None:
    """The pattern planner tells its steps the same way, so a client sees one shape."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    told: list[dict[str, Any]] = []
    settings = AgentSettings(data_dir=tmp_path, plugins=False, planner=GROUPS)
    async with AgentService(settings, llm=llm, instance="planner-stream") as service:
        run = await service.submit("calculate 2*21, then list my todos", on_plan_step=told.append)
        assert [t["step"]["tool"] for t in told] == ["calculator", "todo_list"]
        assert all(t["planner"] == "pattern" for t in told)
        assert (await service.wait(run["id"]))["status"] == "succeeded"
