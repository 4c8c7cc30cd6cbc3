"""``llmrelay agent …`` through its own argparse parser, on a data dir under tmp_path."""

from __future__ import annotations

import argparse
import json
import logging
import re
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from llmrelay.agents import cli
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.errors import PlanInvalid, RunConflict, RunNotFound
from llmrelay.agents.service import AgentService
from llmrelay.errors import ConfigError

PROMPT = "calculate 5*3, add the result as a todo, then list my todos"

Agent = Callable[..., int]


@pytest.fixture(autouse=True)
def unique_engine_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each command of a test opens its own service in this one process: DBOS refuses two
    executors of one name, so each gets a fresh instance name (a real CLI run is one
    process, one command)."""

    class Fresh(AgentService):
        def __init__(self, settings: AgentSettings | None = None, **kwargs: Any) -> None:
            settings = (settings or AgentSettings()).model_copy(update={"engine_poll_s": 0.05})
            super().__init__(settings, **{**kwargs, "instance": f"t{uuid.uuid4().hex}"})

    monkeypatch.setattr("llmrelay.agents.service.AgentService", Fresh)


@pytest.fixture(autouse=True)
def dbos_console_handler_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """DBOS binds its console log handler to the sys.stderr of the moment it first starts:
    under capsys, a stream closed after the test, which a later DBOS start flushes."""
    monkeypatch.setattr(logging.getLogger("dbos"), "handlers", [logging.NullHandler()])


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="llmrelay agent")
    cli.configure(top)
    return top


@pytest.fixture
def agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Agent:
    """``agent("run", "…")``: parse like ``llmrelay agent run …`` and run it."""
    monkeypatch.delenv("LLMRELAY_CONFIG", raising=False)

    def call(*argv: str, data_dir: bool = True) -> int:
        extra = ["--data-dir", str(tmp_path / "data")] if data_dir else []
        return cli.run(parser().parse_args([*argv, *extra]))

    return call


def run_id(out: str) -> str:
    found = re.search(r"^run ([0-9a-f]{32})$", out, re.M)
    assert found, out
    return found.group(1)


def test_every_subcommand_says_what_it_does(capsys: pytest.CaptureFixture[str]) -> None:
    for name in cli.SUBCOMMANDS:
        with pytest.raises(SystemExit) as exited:
            parser().parse_args([name, "--help"])
        assert exited.value.code == 0
        out = capsys.readouterr().out
        assert f"usage: llmrelay agent {name}" in out and "--data-dir" in out and "--config" in out
    parser().print_help()
    listing = capsys.readouterr().out
    assert all(name in listing for name in cli.SUBCOMMANDS)


def test_a_bare_prompt_is_a_run() -> None:
    assert cli.expand_bare_prompt(["agent", "calculate 1+1"]) == ["agent", "run", "calculate 1+1"]
    for argv in (["agent", "runs"], ["agent", "--help"], ["media", "x"], ["agent"]):
        assert cli.expand_bare_prompt(argv) == argv


def test_run_shows_each_step_then_the_result(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    """Progress lines for the plan, each step's start and result, and the final status."""
    assert agent("run", PROMPT) == 0
    out = capsys.readouterr().out
    ident = run_id(out)
    assert (
        "planned by pattern: 3 steps (step_1 calculator, step_2 todo_add, step_3 todo_list)" in out
    )
    assert "  step_1 started\n" in out and '  step_1 succeeded: {"value": 15}\n' in out
    assert '"text": "15"' in out
    assert out.rstrip().endswith(f"run succeeded\n{ident} succeeded")


def test_a_failing_run_exits_1_shows_and_restarts(
    agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A failed step is reported with its error and exit status 1; after the cause is
    fixed, restart runs only what had not succeeded."""
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps({"steps": [
        {"id": "step_1", "tool": "calculator", "input": {"expression": "2+2"}},
        {"id": "step_2", "tool": "todo_complete", "input": {"id": 1}, "depends_on": ["step_1"]},
    ]}))  # fmt: skip
    assert agent("run", "--plan", str(plan)) == 1
    out = capsys.readouterr().out
    ident = run_id(out)
    assert re.search(r"^  step_2 failed: .*no todo with id 1", out, re.M), out
    assert out.rstrip().endswith(f"{ident} failed")

    assert agent("show", ident) == 0
    shown = capsys.readouterr().out
    assert f"run {ident}: failed (attempt 1, planner given" in shown
    assert re.search(r"step_1 +calculator +succeeded +x1 +\{\"value\": 4\}", shown)
    assert re.search(r"step_2 +todo_complete +failed", shown) and "events:" in shown

    assert agent("run", "remind me to buy milk") == 0  # todo 1 exists now
    capsys.readouterr()
    assert agent("restart", ident) == 0
    out = capsys.readouterr().out
    assert "restarted (attempt 2)" in out and "step_1 started" not in out
    assert '  step_2 succeeded: {"id": 1, "text": "buy milk", "done": true}' in out

    assert agent("show", ident, "--json") == 0
    shown_json = json.loads(capsys.readouterr().out)
    assert shown_json["status"] == "succeeded" and shown_json["attempt"] == 2
    assert shown_json["steps"][0]["executions"] == 1
    assert shown_json["events"][0]["kind"] == "planned"


def test_runs_lists_filters_and_pages(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    for expression in ("1+1", "1/0", "2+2"):
        agent("run", f"calculate {expression}")
    capsys.readouterr()
    assert agent("runs", "--limit", "2") == 0
    header, *rows, more = capsys.readouterr().out.splitlines()
    assert header.split() == ["id", "status", "created", "(UTC)", "prompt"]
    assert [r.split()[1] for r in rows] == ["succeeded", "failed"]
    assert rows[0].endswith("calculate 2+2") and more.startswith("more: --cursor ")
    assert agent("runs", "--limit", "2", "--cursor", more.split()[-1]) == 0
    assert capsys.readouterr().out.splitlines()[1].endswith("calculate 1+1")
    assert agent("runs", "--status", "failed", "--json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [r["prompt"] for r in listed["runs"]] == ["calculate 1/0"]
    assert listed["next_cursor"] is None


def test_cancel_and_restart_refuse_what_cannot_be_done(
    agent: Agent, capsys: pytest.CaptureFixture[str]
) -> None:
    """Cancelling a finished run or restarting a succeeded one is a conflict; an unknown
    id is not found (``llmrelay`` prints these errors and exits 2)."""
    agent("run", "calculate 1+1")
    ident = run_id(capsys.readouterr().out)
    with pytest.raises(RunConflict, match="already succeeded"):
        agent("cancel", ident)
    with pytest.raises(RunConflict, match="only"):
        agent("restart", ident)
    with pytest.raises(RunNotFound):
        agent("show", "nope")


def test_a_bad_plan_is_refused_before_anything_is_stored(
    agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = tmp_path / "plan.json"
    plan.write_text('{"steps": [{"id": "step_1", "tool": "nope"}]}')
    with pytest.raises(PlanInvalid, match=re.escape("steps[0].tool: unknown tool 'nope'")):
        agent("run", "--plan", str(plan))
    assert agent("runs", "--json") == 0
    assert json.loads(capsys.readouterr().out)["runs"] == []


def test_prune_prints_what_it_deleted(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    agent("run", "calculate 2+2")
    capsys.readouterr()
    assert agent("prune") == 0  # the 30-day retention keeps it
    assert capsys.readouterr().out.startswith("deleted 0 runs, 0 steps, 0 events\n")
    assert agent("prune", "--older-than-days", "0") == 0
    deleted, left = capsys.readouterr().out.splitlines()
    assert re.fullmatch(r"deleted 1 runs, 1 steps, \d+ events", deleted)
    assert "agent_runs 0" in left and "agent_events 0" in left


def test_tools_lists_the_registry(agent: Agent, capsys: pytest.CaptureFixture[str]) -> None:
    assert agent("tools") == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(re.match(r"calculator +1\.0\.0 +idempotent ", line) for line in lines)
    assert any(re.match(r"todo_add +1\.0\.0 +not idempotent ", line) for line in lines)
    assert agent("tools", "--json") == 0
    assert "todo_list" in {t["name"] for t in json.loads(capsys.readouterr().out)}


MODELS = {"default": {"primary": [{"provider": "openai", "model": "gpt-4o-mini"}]}}


def test_the_config_file_gives_the_agents_section(
    agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config: the agents: section (here its data_dir and the pattern planner) is used;
    --data-dir would override it."""
    config = tmp_path / "llmrelay.yaml"
    data = tmp_path / "from-config"
    config.write_text(yaml.safe_dump({"models": MODELS, "agents": {
        "data_dir": str(data), "planner": {"mode": "pattern"}, "plugins": False}}))  # fmt: skip
    assert agent("run", "calculate 3*3", "--config", str(config), data_dir=False) == 0
    assert (data / "agents.sqlite").exists()
    capsys.readouterr()
    assert agent("runs", "--json", "--config", str(config), data_dir=False) == 0
    assert [r["prompt"] for r in json.loads(capsys.readouterr().out)["runs"]] == ["calculate 3*3"]


def test_an_llm_only_planner_does_not_stop_read_only_commands(
    agent: Agent, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Listing needs no SmartLLM even when the planner is the LLM's only."""
    config = tmp_path / "llmrelay.yaml"
    config.write_text(yaml.safe_dump({"models": MODELS, "agents": {"planner": {"mode": "llm"}}}))
    assert agent("runs", "--json", "--config", str(config)) == 0
    assert json.loads(capsys.readouterr().out) == {"runs": [], "next_cursor": None}


def test_a_bad_agents_section_names_the_key(agent: Agent, tmp_path: Path) -> None:
    config = tmp_path / "llmrelay.yaml"
    config.write_text(yaml.safe_dump({"models": MODELS, "agents": {"max_stepz": 3}}))
    with pytest.raises(
        ConfigError, match=re.escape("agents.max_stepz: Extra inputs are not permitted")
    ):
        agent("runs", "--config", str(config))
