"""The agents' errors, each under :class:`llmrelay.errors.LLMRelayError`.

``PlanInvalid`` carries a machine-readable ``code`` (``malformed``, ``unknown_tool``,
``cycle``, ``bad_input``, ``too_large``, ``bad_reference``) and the list of problems, so the
API answers 4xx with what is wrong and where, and the CLI prints the same words.
"""

from __future__ import annotations

from llmrelay.errors import LLMRelayError


class AgentError(LLMRelayError):
    """Base of the agents' errors."""


class PlanInvalid(AgentError):
    """A plan failed its deterministic checks; nothing was stored or run."""

    def __init__(self, code: str, problems: list[str]) -> None:
        super().__init__(f"invalid plan ({code}): " + "; ".join(problems))
        self.code = code
        self.problems = problems


class PromptRejected(AgentError):
    """The prompt is empty or longer than the configured limit."""


class PromptTooLong(PromptRejected):
    """The prompt is longer than ``max_prompt_chars``."""


class PlanningFailed(AgentError):
    """No planner could turn the prompt into a valid plan."""


class UnknownTool(AgentError, KeyError):
    """No tool (or no such version of it) is registered."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "unknown tool"


class RunNotFound(AgentError, KeyError):
    """No run has that id."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else "run not found"


class RunConflict(AgentError):
    """The run is in a state that does not allow the operation (restart a running run)."""


class ToolFailed(AgentError):
    """A tool raised, timed out, or answered something its output schema refuses."""


class OutcomeUnknown(AgentError):
    """A non-idempotent tool started and was interrupted: it must not be run again blindly."""


__all__ = [
    "AgentError",
    "OutcomeUnknown",
    "PlanInvalid",
    "PlanningFailed",
    "PromptRejected",
    "PromptTooLong",
    "RunConflict",
    "RunNotFound",
    "ToolFailed",
    "UnknownTool",
]
