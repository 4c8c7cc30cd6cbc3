"""``agents:`` in llmrelay.yaml: validated by the facade's loader, errors naming the key."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.planning import FallbackPlanner, PatternPlanner
from llmrelay.agents.service import AgentService
from llmrelay.agents.store import RunStore
from llmrelay.config import parse_settings
from llmrelay.errors import ConfigError

MODELS = {"default": {"primary": [{"provider": "openai", "model": "gpt-4o-mini",
                                   "api_key": "sk-test", "base_url": "http://127.0.0.1:9/v1"}]}}  # fmt: skip


def write(tmp_path: Path, config: dict[str, Any]) -> Path:
    path = tmp_path / "llmrelay.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_keys_are_case_insensitive_env_is_substituted_errors_name_the_key(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("AGENT_DAYS", "7")
    raw = {"models": MODELS, "Agents": {"Retention_Days": "${AGENT_DAYS}",
                                        "Planner": {"Mode": "pattern"}}}  # fmt: skip
    settings = parse_settings(raw, "llmrelay.yaml", sections={"agents": AgentSettings}).agents
    assert isinstance(settings, AgentSettings)
    assert (settings.retention_days, settings.planner.mode) == (7, "pattern")
    bad = {"models": MODELS, "agents": {"max_steps": 0, "planner": {"mode": "psychic"},
                                        "database_url": "mysql://x"}}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, "llmrelay.yaml", sections={"agents": AgentSettings})
    message = str(caught.value)
    assert message.startswith("llmrelay.yaml: invalid configuration")
    assert "agents.max_steps: Input should be greater than 0" in message
    assert "agents.planner.mode: Input should be 'auto', 'pattern' or 'llm'" in message
    assert "agents.database_url: expected postgresql://… or sqlite:///…" in message


async def test_from_config_builds_the_planner_on_the_files_models(tmp_path: Path) -> None:
    """auto: the LLM planner on models: behind the breaker; the SmartLLM is the service's."""
    path = write(tmp_path, {"models": MODELS, "redis_url": "redis://127.0.0.1:6379/0",
                            "agents": {"data_dir": str(tmp_path / "a")}})  # fmt: skip
    service = AgentService.from_config(path, instance="from-config")
    assert isinstance(service.planner, FallbackPlanner)
    assert service.settings.redis_url == "redis://127.0.0.1:6379/0"  # the file's own
    owned = service._owned_llm
    assert owned is not None
    await service.close()
    assert service._owned_llm is None


async def test_from_config_without_llm_uses_the_pattern_planner(tmp_path: Path) -> None:
    path = write(tmp_path, {"models": MODELS, "agents": {"data_dir": str(tmp_path / "a")}})
    service = AgentService.from_config(path, llm=False, instance="no-llm")
    assert isinstance(service.planner, PatternPlanner)
    await service.close()


def test_planner_groups_must_exist_in_models(tmp_path: Path) -> None:
    path = write(tmp_path, {"models": MODELS, "agents": {
        "data_dir": str(tmp_path / "a"), "planner": {"judge": "strong"}}})  # fmt: skip
    with pytest.raises(ConfigError, match=r"agents\.planner\.judge: no model group 'strong'"):
        AgentService.from_config(path)


def test_executor_ids_tell_processes_apart_only_where_they_share_a_database() -> None:
    """SQLite: one process, ``local`` (it resumes its own runs at start); PostgreSQL: one
    id per process unless given."""
    assert AgentSettings().executor() == "local"
    shared = AgentSettings(database_url="postgresql://postgres@127.0.0.1/test")
    assert shared.executor().endswith(f"-{os.getpid()}")
    assert AgentSettings(database_url=shared.database_url, executor_id="a").executor() == "a"


def test_a_silent_executor_is_buried_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Of the processes that find an executor silent, exactly one gets to adopt its runs;
    one that spoke since the cutoff is left alone."""
    now = [1000.0]
    monkeypatch.setattr(time, "time", lambda: now[0])
    store = RunStore(f"sqlite:///{tmp_path / 's.sqlite'}")
    store.heartbeat("gone")
    store.heartbeat("alive")
    now[0] += 30
    store.heartbeat("alive")
    cutoff = now[0] - 10
    assert store.silent_executors(cutoff) == ["gone"]
    assert store.bury("alive", cutoff) is False
    assert store.bury("gone", cutoff) is True
    assert store.bury("gone", cutoff) is False  # a second sweeper finds nothing to take
    assert store.silent_executors(cutoff) == []
    store.close()
