"""Budgets: reserve the worst case before sending, reconcile after, never overshoot."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.budget import BudgetLimit, BudgetPolicy, Budgets, Calendar, MemoryCounters, Who
from llmrelay.budget.counters import Line, RedisCounters, SqliteCounters
from llmrelay.errors import BudgetExceeded, ConfigError
from llmrelay.events import Event, EventKind
from llmrelay.testing import SimulatorHandle
from services import redis_url, require_redis

WORKER = Path(__file__).with_name("budget_worker.py")
PRICED = {"context_window": 16000, "max_output_tokens": 4096}
# 1,000 USD per million tokens: a token costs 1,000 micro-dollars, so costs are large.
PRICEY = {"openai/sim-openai": {"price": {"input": 1000.0, "output": 1000.0}, **PRICED}}
CHEAP = {"anthropic/sim-anthropic": {"price": {"input": 10.0, "output": 10.0}, **PRICED}}


def builder(simulator: SimulatorHandle, **budget: Any) -> LLMBuilder:
    return (
        LLMBuilder()
        .with_catalog({**PRICEY, **CHEAP})
        .with_primary("openai", "sim-openai", base_url=simulator.url + "/v1", api_key="sk-b1")
        .with_budget(**budget)
    )


async def burst(llm: SmartLLM, calls: int) -> tuple[list[Any], list[BudgetExceeded]]:
    outcomes = await asyncio.gather(
        *(llm.ainvoke(f"question {i}", max_tokens=20) for i in range(calls)),
        return_exceptions=True,
    )
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    assert len(answered) + len(refused) == calls, [o for o in outcomes if isinstance(o, Exception)]
    return answered, refused


async def test_concurrent_calls_never_spend_past_the_budget(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    """200 calls at once against a budget that affords about 50: the spend stays within
    it, and every refused call was refused before anything was sent."""
    llm = builder(simulator, usd=2.0).build()
    closing.append(llm)
    answered, refused = await burst(llm, 200)
    spent = sum(r.cost_micros for r in answered)
    assert 30 <= len(answered) <= 80 and refused
    assert spent <= 2_000_000
    served = simulator.usage("sk-b1", "sim-openai")
    assert served["requests"] == len(answered)  # the refused ones never reached it
    assert refused[0].budget == "global/day" and refused[0].limit_usd == 2.0
    assert refused[0].attempts[0].error == "BudgetExceeded"
    [budget] = (await llm.aget_stats())["budgets"]
    assert budget["spent_usd"] * 1e6 == pytest.approx(spent)
    assert budget["held_usd"] == 0  # every hold was settled or released


async def test_a_restart_keeps_the_spend_in_sqlite(
    simulator: SimulatorHandle, closing: list[SmartLLM], tmp_path: Path
) -> None:
    path = str(tmp_path / "budget.sqlite")
    first = builder(simulator, usd=1.0, store="sqlite", path=path).build()
    answered, _ = await burst(first, 5)
    await first.aclose()
    again = builder(simulator, usd=1.0, store="sqlite", path=path).build()
    closing.append(again)
    [budget] = (await again.aget_stats())["budgets"]
    assert budget["spent_usd"] * 1e6 == pytest.approx(sum(r.cost_micros for r in answered))


async def test_past_the_share_calls_go_to_the_cheaper_deployment(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    seen: list[Event] = []
    llm = (
        builder(simulator, usd=0.2, downgrade_at=0.5)
        .with_fallback("anthropic", "sim-anthropic", base_url=simulator.url, api_key="sk-b2")
        .build()
    )
    llm.router.events.subscribe(seen.append)
    closing.append(llm)
    deployments = []
    for i in range(12):
        response = await llm.ainvoke(f"question {i}", max_tokens=10)
        deployments.append(response.deployment)
    first_cheap = deployments.index("anthropic/sim-anthropic")
    assert first_cheap > 0 and set(deployments[first_cheap:]) == {"anthropic/sim-anthropic"}
    kinds = [e.kind for e in seen]
    assert EventKind.DOWNGRADED in kinds
    crossed = [e.share for e in seen if e.kind is EventKind.BUDGET_THRESHOLD]
    assert crossed[:1] == [0.5]
    assert kinds.index(EventKind.BUDGET_THRESHOLD) < kinds.index(EventKind.DOWNGRADED)
    assert llm.get_stats()["downgraded"] >= 1


async def test_past_the_share_calls_go_to_the_groups_downgrade_list(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    llm = (
        builder(simulator, usd=0.2, downgrade_at=0.5)
        .with_primary(
            "anthropic", "sim-anthropic", group="economy", base_url=simulator.url, api_key="sk-b3"
        )
        .with_downgrade("economy")
        .build()
    )
    closing.append(llm)
    deployments = [
        (await llm.ainvoke(f"question {i}", max_tokens=10)).deployment for i in range(12)
    ]
    switch = deployments.index("anthropic/sim-anthropic")
    assert switch > 0 and set(deployments[switch:]) == {"anthropic/sim-anthropic"}


def test_a_downgrade_to_an_unknown_group_names_the_key() -> None:
    with pytest.raises(
        ConfigError, match=r"models\.default\.downgrade\.0: .*no model group 'cheap'"
    ):
        (
            LLMBuilder()
            .with_primary("openai", "gpt-4o-mini", api_key="sk-x")
            .with_downgrade("cheap")
            .build()
        )


async def test_budgets_per_user_and_tag_count_apart(
    simulator: SimulatorHandle, closing: list[SmartLLM]
) -> None:
    llm = (
        builder(simulator, usd=100.0)
        .with_budget(0.05, "month", scope="user")
        .with_budget(0.06, "day", scope="tag", value="batch")
        .build()
    )
    closing.append(llm)
    await llm.ainvoke("hi", user="alice", max_tokens=5)
    with pytest.raises(BudgetExceeded) as refused:
        for _ in range(10):
            await llm.ainvoke("hi", user="alice", max_tokens=5)
    assert refused.value.budget == "user:alice/month"
    await llm.ainvoke("hi", user="bob", max_tokens=5)  # bob has his own month
    with pytest.raises(BudgetExceeded, match="tag:batch/day"):
        for i in range(10):  # users of their own: only the tag's budget binds
            await llm.ainvoke("hi", user=f"user{i}", tags=["batch"], max_tokens=5)
    await llm.ainvoke("hi", user="dave", tags=["interactive"], max_tokens=5)


def test_bad_budget_settings_name_the_key() -> None:
    base = LLMBuilder().with_primary("openai", "gpt-4o-mini", api_key="sk-x")
    with pytest.raises(ConfigError, match=r"budget\.limits\.0\.scope"):
        base.with_budget(1.0, scope="team").build()
    with pytest.raises(ConfigError, match=r"budget\.limits\.0\.usd: must be >= 0"):
        LLMBuilder().with_primary("openai", "gpt-4o-mini", api_key="sk-x").with_budget(-1).build()
    with pytest.raises(ConfigError, match=r"budget\.timezone"):
        LLMBuilder().with_primary("openai", "gpt-4o-mini", api_key="sk-x").with_budget(
            1, timezone="Mars/Olympus"
        ).build()


# -- the parts --------------------------------------------------------------------------


def test_periods_follow_the_configured_time_zone() -> None:
    calendar = Calendar("America/Los_Angeles")
    # 2026-11-23 07:30 UTC is still the 22nd in Los Angeles.
    now = dt.datetime(2026, 11, 23, 7, 30, tzinfo=dt.UTC).timestamp()
    day, resets = calendar.period("day", now)
    assert day == "2026-11-22"
    assert resets.isoformat() == "2026-11-23T00:00:00-08:00"
    month, resets = calendar.period(
        "month", dt.datetime(2026, 12, 31, 9, tzinfo=dt.UTC).timestamp()
    )
    assert month == "2026-12" and resets.isoformat() == "2027-01-01T00:00:00-08:00"


async def test_a_new_day_starts_a_new_counter() -> None:
    now = [dt.datetime(2026, 11, 23, 23, 59, tzinfo=dt.UTC).timestamp()]
    budgets = Budgets([BudgetLimit(usd=1.0)], clock=lambda: now[0])
    hold = await budgets.reserve(Who(), 900_000)
    await budgets.settle(hold, 900_000)
    with pytest.raises(BudgetExceeded) as refused:
        await budgets.reserve(Who(), 200_000)
    assert refused.value.resets_at.isoformat() == "2026-11-24T00:00:00+00:00"
    now[0] += 120
    await budgets.settle(await budgets.reserve(Who(), 200_000), 150_000)
    assert [row["spent_usd"] for row in await budgets.snapshot()] == [0.15]


async def test_a_released_hold_gives_the_budget_back() -> None:
    budgets = Budgets([BudgetLimit(usd=1.0)], MemoryCounters())
    hold = await budgets.reserve(Who(), 1_000_000)
    with pytest.raises(BudgetExceeded):
        await budgets.reserve(Who(), 1)
    await budgets.release(hold)
    await budgets.release(hold)  # twice does nothing
    await budgets.reserve(Who(), 1_000_000)


async def test_thresholds_are_crossed_once_each() -> None:
    seen: list[Event] = []
    budgets = Budgets([BudgetLimit(usd=1.0)], policy=BudgetPolicy(thresholds=(0.5, 0.8, 1.0)))
    budgets.events.subscribe(seen.append)
    for cost in (400_000, 200_000, 100_000, 250_000, 50_000):
        await budgets.settle(await budgets.reserve(Who(), cost), cost)
    assert [e.share for e in seen] == [0.5, 0.8, 1.0]


@pytest.mark.parametrize("backend", ["sqlite", "redis"])
async def test_a_reservation_is_all_or_nothing_across_budgets(backend: str, tmp_path: Path) -> None:
    if backend == "redis":
        require_redis()
        counters: Any = RedisCounters(redis_url(), prefix=f"test:{uuid.uuid4().hex}:")
    else:
        counters = SqliteCounters(tmp_path / "c.sqlite")
    try:
        wide, narrow = Line("wide", 1_000, 2e9), Line("narrow", 100, 2e9)
        assert await counters.reserve([wide, narrow], 60) is None
        refusal = await counters.reserve([wide, narrow], 60)
        assert refusal is not None and refusal.line == 1 and refusal.held == 60
        assert await counters.read(["wide", "narrow"]) == [(0, 60), (0, 60)]  # wide untouched
        assert await counters.settle([wide, narrow], 60, 45) == [(0, 45), (0, 45)]
        assert await counters.read(["wide", "narrow"]) == [(45, 0), (45, 0)]
    finally:
        await counters.aclose()


async def test_three_processes_sharing_redis_never_overshoot(simulator: SimulatorHandle) -> None:
    """Three processes, 70 concurrent calls each, one budget in Redis: the shared spend
    stays within the limit and matches what the simulator served."""
    require_redis()
    prefix = f"test:{uuid.uuid4().hex}:"
    args = [sys.executable, str(WORKER), simulator.url, redis_url(), prefix]
    workers = [
        await asyncio.create_subprocess_exec(*args, stdout=subprocess.PIPE) for _ in range(3)
    ]
    results = []
    for worker in workers:
        out, _ = await worker.communicate()
        assert worker.returncode == 0
        results.append(json.loads(out))
    answered = sum(r["answered"] for r in results)
    spent = sum(r["spent_micros"] for r in results)
    assert sum(r["refused"] for r in results) > 0 and answered > 0
    counters = RedisCounters(redis_url(), prefix=prefix)
    try:
        [(shared, held)] = await counters.read([results[0]["counter"]])
    finally:
        await counters.aclose()
    assert shared == spent <= 2_000_000 and held == 0
    assert simulator.usage("sk-shared", "sim-openai")["requests"] == answered
