"""The plan judge: a second opinion, from a model, on a plan that passed the checks.

The deterministic checks (:func:`~llmrelay.agents.plan.check_plan`) say a plan *can* run;
the judge says whether it does what the prompt asked. Its verdict is JSON-schema output
through SmartLLM — valid, confidence, issues, suggestions — and is recorded on the run. A
plan it refuses goes back to the planner with the issues and suggestions, a bounded number
of times. A judge that cannot answer (its deployments fail, its answer is not a verdict)
refuses nothing: the plan is used and the run's verdicts say the judge was unavailable.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec

from llmrelay import SmartLLM
from llmrelay.agents.plan import Plan
from llmrelay.errors import LLMRelayError
from llmrelay.types import ChatRequest, Message, ResponseFormat

VERDICT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "valid": {"type": "boolean"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 1},
        "issues": {"type": "array", "items": {"type": "string"}},
        "suggestions": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["valid", "confidence", "issues", "suggestions"],
    "additionalProperties": False,
}

_INSTRUCTIONS = (
    "You review a plan of tool calls made for a user's request. Say whether running it "
    "does what the request asks, nothing more and nothing less: right tools, right inputs, "
    "right order. Answer JSON matching the schema: valid, your confidence from 0 to 1, the "
    "issues you found and suggestions to fix them (empty lists when there are none)."
)


class Verdict(msgspec.Struct, frozen=True, kw_only=True):
    """One review of one plan; ``available=False``: the judge could not answer."""

    valid: bool
    confidence: float
    issues: list[str] = msgspec.field(default_factory=list)
    suggestions: list[str] = msgspec.field(default_factory=list)
    group: str = ""
    available: bool = True

    def feedback(self) -> str:
        """What the planner is told when the plan is refused."""
        parts = ["A reviewer refused the plan."]
        if self.issues:
            parts.append("Issues: " + "; ".join(self.issues) + ".")
        if self.suggestions:
            parts.append("Suggestions: " + "; ".join(self.suggestions) + ".")
        return " ".join(parts) + " Answer a corrected plan."


class _Answer(msgspec.Struct, forbid_unknown_fields=True):
    valid: bool
    confidence: float
    issues: list[str]
    suggestions: list[str]


_DECODE = msgspec.json.Decoder(_Answer).decode


class PlanJudge:
    """Asks ``group`` for a verdict; a plan passes when valid with ``min_confidence``."""

    def __init__(
        self, llm: SmartLLM, group: str, *, min_confidence: float = 0.5, max_tokens: int = 600
    ) -> None:
        self.llm = llm
        self.group = group
        self.min_confidence = min_confidence
        self.max_tokens = max_tokens

    def accepts(self, verdict: Verdict) -> bool:
        """Whether the plan may run: valid and sure enough, or no verdict to be had."""
        if not verdict.available:
            return True
        return verdict.valid and verdict.confidence >= self.min_confidence

    async def review(self, prompt: str, plan: Plan) -> Verdict:
        """The judge's verdict on ``plan`` for ``prompt``."""
        shown = json.dumps(msgspec.to_builtins(plan), separators=(",", ":"))
        request = ChatRequest(
            messages=[Message(role="user", content=f"Request: {prompt}\nPlan: {shown}")],
            system=_INSTRUCTIONS,
            max_tokens=self.max_tokens,
            temperature=0,
            response_format=ResponseFormat(
                type="json_schema", json_schema=VERDICT_SCHEMA, name="verdict"
            ),
        )
        try:
            answer = await self.llm.ainvoke(request, model=self.group)
        except LLMRelayError as exc:
            return self._unavailable(f"{type(exc).__name__}: {exc}")
        try:
            got = _DECODE(answer.content)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            return self._unavailable(f"the answer is not a verdict: {exc}")
        confidence = min(max(got.confidence, 0.0), 1.0)
        return Verdict(valid=got.valid, confidence=confidence, issues=got.issues,
                       suggestions=got.suggestions, group=self.group)  # fmt: skip

    def _unavailable(self, why: str) -> Verdict:
        return Verdict(valid=True, confidence=0.0, issues=[f"judge unavailable: {why}"],
                       group=self.group, available=False)  # fmt: skip


__all__ = ["VERDICT_SCHEMA", "PlanJudge", "Verdict"]
