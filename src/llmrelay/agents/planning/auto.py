"""The planner a service uses: the LLM planner behind a breaker, the pattern one as fallback."""

from __future__ import annotations

from llmrelay.agents.errors import PlanningFailed
from llmrelay.agents.planning.base import OnStep, Planned, Planner
from llmrelay.agents.planning.breaker import PlannerBreaker


class FallbackPlanner:
    """Tries ``primary`` while its breaker allows; else, or when it fails, ``fallback``.

    The returned plan says which planner made it and, for a fallback, why.
    """

    def __init__(self, primary: Planner, fallback: Planner, breaker: PlannerBreaker) -> None:
        self.primary = primary
        self.fallback = fallback
        self.breaker = breaker

    async def plan(self, prompt: str, on_step: OnStep | None = None) -> Planned:
        if not self.breaker.allow():
            reason = "fallback: the LLM planner's breaker is open"
        else:
            try:
                planned = await self.primary.plan(prompt, on_step)
            except PlanningFailed as exc:
                self.breaker.failure()
                reason = f"fallback: {exc}"
            else:
                self.breaker.success()
                return planned
        try:
            planned = await self.fallback.plan(prompt, on_step)
        except PlanningFailed as exc:
            raise PlanningFailed(f"{reason}; then {exc}") from exc
        return Planned(plan=planned.plan, planner=planned.planner, note=reason,
                       verdicts=planned.verdicts)  # fmt: skip


__all__ = ["FallbackPlanner"]
