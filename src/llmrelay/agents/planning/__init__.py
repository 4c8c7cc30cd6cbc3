"""Planners: prompt → checked plan (pattern rules, an LLM through SmartLLM, a fallback)."""

from llmrelay.agents.planning.auto import FallbackPlanner
from llmrelay.agents.planning.base import OnStep, Planned, Planner
from llmrelay.agents.planning.breaker import PlannerBreaker
from llmrelay.agents.planning.complexity import complexity, level
from llmrelay.agents.planning.judge import VERDICT_SCHEMA, PlanJudge, Verdict
from llmrelay.agents.planning.llm import PLAN_SCHEMA, LLMPlanner, system_prompt
from llmrelay.agents.planning.pattern import PatternPlanner, clauses
from llmrelay.agents.planning.stream import StepStream

__all__ = [
    "PLAN_SCHEMA",
    "VERDICT_SCHEMA",
    "FallbackPlanner",
    "LLMPlanner",
    "OnStep",
    "PatternPlanner",
    "PlanJudge",
    "Planned",
    "Planner",
    "PlannerBreaker",
    "StepStream",
    "Verdict",
    "clauses",
    "complexity",
    "level",
    "system_prompt",
]
