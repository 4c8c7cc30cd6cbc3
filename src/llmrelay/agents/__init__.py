"""agents: a durable runs service — prompt → plan → tool steps run as a parallel DAG.

A prompt becomes a plan (an LLM planner through SmartLLM, judged when configured, behind a
breaker that falls back to a pattern planner); the plan is checked before anything runs;
its steps run on DBOS Transact, independent ones concurrently; every run is stored with its
execution log and resumes from its last successful step after a crash. See
``docs/agents.md``.

Names are exported lazily: ``llmrelay --help`` must not pay for DBOS and SQLAlchemy.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmrelay.agents.config import AgentSettings, PlannerSettings
    from llmrelay.agents.errors import (
        AgentError,
        OutcomeUnknown,
        PlanInvalid,
        PlanningFailed,
        PromptRejected,
        RunConflict,
        RunNotFound,
    )
    from llmrelay.agents.service import AgentService
    from llmrelay.agents.tools import Tool, ToolRegistry

_EXPORTS = {
    "AgentError": "llmrelay.agents.errors",
    "AgentService": "llmrelay.agents.service",
    "AgentSettings": "llmrelay.agents.config",
    "OutcomeUnknown": "llmrelay.agents.errors",
    "PlanInvalid": "llmrelay.agents.errors",
    "PlannerSettings": "llmrelay.agents.config",
    "PlanningFailed": "llmrelay.agents.errors",
    "PromptRejected": "llmrelay.agents.errors",
    "RunConflict": "llmrelay.agents.errors",
    "RunNotFound": "llmrelay.agents.errors",
    "Tool": "llmrelay.agents.tools",
    "ToolRegistry": "llmrelay.agents.tools",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'llmrelay.agents' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


__all__ = [
    "AgentError",
    "AgentService",
    "AgentSettings",
    "OutcomeUnknown",
    "PlanInvalid",
    "PlannerSettings",
    "PlanningFailed",
    "PromptRejected",
    "RunConflict",
    "RunNotFound",
    "Tool",
    "ToolRegistry",
]
