"""Durable execution in one process: parallel generations, retries, restart, cancel."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

import pytest

from agents.support import Ledger, effect_tool
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.errors import PlanInvalid, RunConflict
from llmrelay.agents.service import AgentService


def step(n: int, tool: str, label: str, **extra: Any) -> dict[str, Any]:
    return {"id": f"step_{n}", "tool": tool, "input": {"label": label, **extra}}


def statuses(run: dict[str, Any]) -> dict[str, str]:
    return {s["id"]: s["status"] for s in run["steps"]}


async def test_a_generation_runs_concurrently(service: AgentService, ledger: Ledger) -> None:
    """Two independent steps meet at a two-party barrier: run one after the other, neither
    could finish."""
    ledger.barrier = asyncio.Barrier(2)
    run = await service.submit(plan={"steps": [
        step(1, "effect", "par-a"), step(2, "effect", "par-b"),
        step(3, "effect", "last", after="{step_1.label}+{step_2.label}"),
    ]})  # fmt: skip
    done = await service.wait(run["id"])
    assert done["status"] == "succeeded"
    assert ledger.done[-1] == "last" and sorted(ledger.done[:2]) == ["par-a", "par-b"]


async def test_references_carry_results(service: AgentService) -> None:
    """A step's input receives the referenced outputs of earlier steps."""
    run = await service.submit("calculate 6*7, add the result as a todo, then list my todos")
    done = await service.wait(run["id"])
    assert done["steps"][2]["result"]["items"][-1]["text"] == "42"


async def test_retries_then_success(service: AgentService, ledger: Ledger) -> None:
    """A failing tool with retries is called again and the run succeeds."""
    ledger.fail["flaky"] = 2
    run = await service.submit(plan={"steps": [step(1, "effect_retry", "flaky")]})
    done = await service.wait(run["id"])
    assert done["status"] == "succeeded"
    assert ledger.started == ["flaky"] * 3 and done["steps"][0]["executions"] == 3


async def test_failure_stops_and_restart_runs_only_the_rest(
    service: AgentService, ledger: Ledger
) -> None:
    """A run failing at step k restarts and executes only the steps not yet succeeded."""
    ledger.fail["b"] = 1
    run = await service.submit(plan={"steps": [
        step(1, "effect", "a"), step(2, "effect", "b", after="{step_1.value}"),
        step(3, "effect", "c", after="{step_2.value}"), step(4, "effect", "d"),
    ]})  # fmt: skip
    failed = await service.wait(run["id"])
    assert failed["status"] == "failed" and "b failed on purpose" in failed["error"]
    assert statuses(failed) == {"step_1": "succeeded", "step_2": "failed",
                                "step_3": "pending", "step_4": "succeeded"}  # fmt: skip
    await service.restart(run["id"])
    done = await service.wait(run["id"])
    assert done["status"] == "succeeded" and done["attempt"] == 2
    assert sorted(ledger.started) == ["a", "b", "b", "c", "d"]
    assert [s["executions"] for s in done["steps"]] == [1, 2, 1, 1]


async def test_restart_refused_while_running(service: AgentService, ledger: Ledger) -> None:
    """Restarting a run that has not finished is a conflict."""
    ledger.gates["wait"] = asyncio.Event()
    run = await service.submit(plan={"steps": [step(1, "effect", "wait")]})
    with pytest.raises(RunConflict, match="only"):
        await service.restart(run["id"])
    ledger.gates["wait"].set()
    assert (await service.wait(run["id"]))["status"] == "succeeded"


async def test_cancel_stops_the_run(service: AgentService, ledger: Ledger) -> None:
    """Cancelling stops the running step and nothing after it starts."""
    ledger.gates["slow"] = asyncio.Event()
    run = await service.submit(plan={"steps": [
        step(1, "effect", "slow"), step(2, "effect", "never", after="{step_1.value}")]})  # fmt: skip
    while "slow" not in ledger.started:
        await service.hub.wait(run["id"], 1.0)
    await service.cancel(run["id"])
    done = await service.wait(run["id"])
    assert done["status"] == "cancelled"
    assert "never" not in ledger.started
    with pytest.raises(RunConflict, match="already cancelled"):
        await service.cancel(run["id"])


async def test_non_idempotent_timeout_is_outcome_unknown(
    settings: AgentSettings, ledger: Ledger
) -> None:
    """A non-idempotent tool that times out is not retried: its outcome is unknown, and a
    restart needs the operator's word before it calls it again."""
    ledger.gates["hang"] = asyncio.Event()
    tools = [effect_tool(ledger, "once", idempotent=False, retries=3, timeout_s=0.05)]
    async with AgentService(settings, tools=tools, instance=f"t{uuid.uuid4().hex}") as service:
        run = await service.submit(plan={"steps": [step(1, "once", "hang")]})
        done = await service.wait(run["id"])
        assert done["status"] == "outcome_unknown"
        assert statuses(done) == {"step_1": "outcome_unknown"} and ledger.started == ["hang"]
        with pytest.raises(RunConflict, match="outcome of step_1 is unknown"):
            await service.restart(run["id"])
        ledger.gates["hang"].set()
        await service.restart(run["id"], rerun_unknown=True)
        assert (await service.wait(run["id"]))["status"] == "succeeded"


async def test_bad_plan_writes_nothing(service: AgentService) -> None:
    """A refused plan leaves no run, step or event behind."""
    before = service.store.sizes()
    with pytest.raises(PlanInvalid):
        await service.submit(plan={"steps": [step(1, "effect", "x"), step(2, "nope", "y")]})
    assert service.store.sizes() == before


async def test_events_follow_the_run(service: AgentService) -> None:
    """The event stream tells the plan, each step's start and result, and the end."""
    run = await service.submit("calculate 1+1")
    kinds = [(e["kind"], e["data"].get("status")) async for e in service.follow(run["id"])]
    assert kinds[0] == ("planned", None)
    assert ("step_started", None) in kinds and ("step_finished", "succeeded") in kinds
    assert kinds[-1] == ("status", "succeeded")


async def test_list_filters_and_pages(service: AgentService, ledger: Ledger) -> None:
    """Runs list newest first, filter by status and page with a cursor."""
    ledger.fail["bad"] = 1
    ids = []
    for label in ("a", "bad", "c"):
        run = await service.submit(plan={"steps": [step(1, "effect", label)]})
        await service.wait(run["id"])
        ids.append(run["id"])
    page, cursor = await service.list_runs(limit=2)
    assert [r["id"] for r in page] == ids[::-1][:2] and cursor is not None
    rest, end = await service.list_runs(limit=2, cursor=cursor)
    assert [r["id"] for r in rest] == [ids[0]] and end is None
    failed, _ = await service.list_runs(status="failed")
    assert [r["id"] for r in failed] == [ids[1]]


async def test_prune_deletes_old_finished_runs(service: AgentService) -> None:
    """Prune removes finished runs older than the retention, with their steps and events."""
    run = await service.submit("calculate 2+2")
    await service.wait(run["id"])
    kept = service.prune(older_than_days=1)
    assert kept["deleted"]["runs"] == 0
    service.store.prune(time.time() + 1)  # as if the retention had passed
    assert service.store.sizes()["agent_runs"] == 0
    assert service.store.sizes()["agent_events"] == 0
