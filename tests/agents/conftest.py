"""Fixtures of the agents tests: a service on a fresh SQLite database, test tools."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agents.support import Ledger, effect_tool
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.service import AgentService


@pytest.fixture
def ledger() -> Ledger:
    return Ledger()


@pytest.fixture
def settings(tmp_path: Path) -> AgentSettings:
    return AgentSettings(data_dir=tmp_path / "agents", plugins=False, engine_poll_s=0.05)


@pytest.fixture
async def service(settings: AgentSettings, ledger: Ledger) -> AsyncIterator[AgentService]:
    tools = [
        effect_tool(ledger),
        effect_tool(ledger, "effect_once", idempotent=False),
        effect_tool(ledger, "effect_retry", retries=2),
    ]
    async with AgentService(settings, tools=tools, instance=f"t{uuid.uuid4().hex}") as svc:
        yield svc
