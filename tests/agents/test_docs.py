"""docs/agents.md runs as written: Python blocks, the plan and the configuration."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.plan import check_plan, parse_plan
from llmrelay.agents.store import RunStore
from llmrelay.agents.tools import builtin_registry
from llmrelay.config import parse_settings

DOC = Path(__file__).parents[2] / "docs" / "agents.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.S | re.M)
FOUND = FENCE.findall(DOC.read_text("utf-8"))
PYTHON = [body for lang, body in FOUND if lang == "python"]


def _blocks(language: str) -> list[str]:
    return [body for lang, body in FOUND if lang == language]


def test_the_guide_has_examples_of_each_kind() -> None:
    assert len(PYTHON) >= 2 and _blocks("json") and _blocks("yaml")


@pytest.mark.parametrize("code", PYTHON, ids=[f"block{i}" for i in range(len(PYTHON))])
def test_python_block_runs(code: str, tmp_path: Path) -> None:
    """The block exits 0 with nothing on stderr (its own asserts hold)."""
    done = subprocess.run([sys.executable, "-W", "error", "-c", code], cwd=tmp_path,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr == ""


def test_the_example_plan_passes_the_checks(tmp_path: Path) -> None:
    registry = builtin_registry(RunStore(f"sqlite:///{tmp_path / 'r.sqlite'}"), plugins=False)
    for text in _blocks("json"):
        check_plan(parse_plan(json.loads(text)), registry)


def test_the_configuration_example_loads() -> None:
    for text in _blocks("yaml"):
        raw = yaml.safe_load(text)
        agents = parse_settings(raw, "docs/agents.md", sections={"agents": AgentSettings}).agents
        assert isinstance(agents, AgentSettings) and agents.planner.judge == "strong"
