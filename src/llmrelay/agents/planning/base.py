"""What every planner returns, and the interface they share."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from llmrelay.agents.plan import Plan
from llmrelay.agents.planning.judge import Verdict


class Planned(msgspec.Struct, frozen=True, kw_only=True):
    """A checked plan and who made it (recorded on the run)."""

    plan: Plan
    planner: str
    """``pattern`` or ``llm``."""
    note: str = ""
    """Why this planner answered (``fallback: …``), the model group asked, replans made."""
    group: str | None = None
    verdicts: tuple[Verdict, ...] = ()
    """The judge's verdicts on each plan it was shown, the refused ones first."""


OnStep = Callable[[dict[str, Any]], None]
"""Told of each plan step as it is planned: ``{"planner", "attempt", "step"}`` (an attempt
that is refused is followed by the steps of the next one)."""


class Planner(Protocol):
    async def plan(self, prompt: str, on_step: OnStep | None = None) -> Planned:
        """A plan checked against the tool registry, or ``PlanningFailed``/``PlanInvalid``;
        ``on_step`` hears of each step as soon as it is known."""
        ...


__all__ = ["OnStep", "Planned", "Planner"]
