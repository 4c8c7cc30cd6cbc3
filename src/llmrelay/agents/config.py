"""``agents:`` — the runs service's settings (database, planner, limits, API keys).

.. code-block:: yaml

    agents:
      database_url: ${DATABASE_URL:-}      # empty: SQLite files under data_dir
      data_dir: .llmrelay
      planner: {mode: auto, groups: {cheap: cheap, balanced: default, strong: strong}}
      api_keys: ["${AGENTS_API_KEY}"]
      http_allow: [api.example.com]
      retention_days: 30
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


Level = Literal["cheap", "balanced", "strong"]


def _default_groups() -> dict[Level, str]:
    return {"cheap": "default", "balanced": "default", "strong": "default"}


class PlannerSettings(_Section):
    """``agents.planner:`` — which planner answers, and which model groups it uses."""

    mode: Literal["auto", "pattern", "llm"] = "auto"
    """``auto``: the LLM planner behind a breaker, the pattern planner when it is open or
    fails; ``pattern``: no LLM; ``llm``: the LLM planner only."""
    groups: dict[Level, str] = Field(default_factory=_default_groups)
    """The model group asked for each complexity level of a prompt."""
    balanced_from: float = Field(default=0.35, ge=0, le=1)
    """Complexity score (0..1) from which the balanced group is used."""
    strong_from: float = Field(default=0.7, ge=0, le=1)
    """Complexity score from which the strong group is used."""
    breaker_failures: int = Field(default=3, ge=1)
    """Consecutive LLM-planner failures that open its breaker."""
    breaker_cooldown_s: float = Field(default=30.0, gt=0)
    """How long the breaker stays open before one call may try the LLM again."""
    max_replans: int = Field(default=1, ge=0, le=5)
    """How many times an LLM plan is sent back: refused by the checks or by the judge."""
    judge: str | None = None
    """A model group that reviews each LLM plan (valid, confidence, issues, suggestions);
    unset: no review. A refused plan is sent back with the verdict."""
    judge_min_confidence: float = Field(default=0.5, ge=0, le=1)
    """A verdict passes when valid with at least this confidence."""
    max_tokens: int = Field(default=1200, gt=0)


class AgentSettings(_Section):
    """The agents runs service."""

    name: str = Field(default="llmrelay-agents", pattern=r"^[a-z0-9_-]{3,64}$")
    """The durable engine's application name (a process recovers the workflows of its name)."""
    database_url: str | None = None
    """``postgresql://…`` or ``sqlite:///…``; unset: SQLite files under ``data_dir``."""
    data_dir: Path = Path(".llmrelay")
    redis_url: str | None = None
    """``redis://…``: live run events between replicas (a run executing in one process
    wakes the readers following it through another at once); unset: readers in another
    process see news within a second, by polling the database."""
    executor_id: str | None = None
    """This process's name in the durable engine. Unset: ``local`` on SQLite (one process
    owns the files); ``<host>-<pid>`` on PostgreSQL, so that processes sharing the
    database are told apart."""
    executor_lease_s: float = Field(default=30.0, ge=1)
    """A process sharing the database that has not said it is alive for this long is taken
    for dead: another one resumes its unfinished runs."""
    engine_poll_s: float = Field(default=1.0, ge=0.01, le=10)
    """How often the engine's background thread polls its database for notifications; a
    shutdown waits for it, so tests lower it."""
    planner: PlannerSettings = Field(default_factory=PlannerSettings)
    api_keys: list[str] = Field(default_factory=list)
    """Static keys accepted as ``Authorization: Bearer <key>`` or ``X-API-Key``; empty: the
    API is open (until the gateway's virtual keys back it)."""
    http_allow: list[str] = Field(default_factory=list)
    """Hosts (``host`` or ``host:port``) the ``http_get`` tool may reach."""
    plugins: bool = True
    """Load third-party tools from the ``llmrelay.agents.tools`` entry points."""
    max_prompt_chars: int = Field(default=4000, gt=0)
    max_steps: int = Field(default=20, gt=0, le=1000)
    max_input_bytes: int = Field(default=16_384, gt=0)
    max_body_bytes: int = Field(default=262_144, gt=0)
    retention_days: float = Field(default=30.0, gt=0)
    """``llmrelay agent prune`` deletes runs finished longer ago than this."""

    @field_validator("redis_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("database_url")
    @classmethod
    def _known_database(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        if not value.startswith(("sqlite:///", "postgresql://", "postgres://")):
            raise ValueError(f"expected postgresql://… or sqlite:///…, got {value!r}")
        return value.strip()

    def executor(self) -> str:
        """This process's executor id (see ``executor_id``)."""
        if self.executor_id:
            return self.executor_id
        if self.store_url().startswith("sqlite"):
            return "local"
        return f"{socket.gethostname()}-{os.getpid()}"

    def store_url(self) -> str:
        """Where runs, steps, events and todos are kept."""
        return self.database_url or f"sqlite:///{self.data_dir / 'agents.sqlite'}"

    def engine_url(self) -> str:
        """The durable engine's system database (its own SQLite file by default)."""
        return self.database_url or f"sqlite:///{self.data_dir / 'agents-engine.sqlite'}"


__all__ = ["AgentSettings", "PlannerSettings"]
