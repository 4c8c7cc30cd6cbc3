"""One of several processes spending against one budget in Redis (test_budget.py).

``python budget_worker.py SIMULATOR_URL REDIS_URL PREFIX`` makes 70 concurrent calls and
prints what it spent, as JSON.
"""

from __future__ import annotations

import asyncio
import json
import sys

from llmrelay import LLMBuilder
from llmrelay.budget import RedisCounters
from llmrelay.errors import BudgetExceeded

PRICED = {"context_window": 16000, "max_output_tokens": 4096}


async def main(simulator_url: str, redis_url: str, prefix: str) -> None:
    llm = (
        LLMBuilder()
        .with_catalog(
            {"openai/sim-openai": {"price": {"input": 1000.0, "output": 1000.0}, **PRICED}}
        )
        .with_primary("openai", "sim-openai", base_url=simulator_url + "/v1", api_key="sk-shared")
        .with_budget(2.0, store="redis", redis_url=redis_url)
        .build()
    )
    assert llm.spending is not None and llm.spending.budgets is not None
    budgets = llm.spending.budgets
    counters = budgets.counters
    assert isinstance(counters, RedisCounters)
    counters._prefix = prefix  # this run's keys only
    outcomes = await asyncio.gather(
        *(llm.ainvoke(f"q{i}", max_tokens=20) for i in range(70)), return_exceptions=True
    )
    answered = [o for o in outcomes if not isinstance(o, BaseException)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceeded)]
    if len(answered) + len(refused) != len(outcomes):
        raise SystemExit(f"unexpected errors: {outcomes}")
    [counter] = [row for row in await budgets.snapshot()]
    await llm.aclose()
    key = f"global/day@{counter['period']}"
    print(json.dumps({"answered": len(answered), "refused": len(refused), "counter": key,
                      "spent_micros": sum(r.cost_micros for r in answered)}))  # fmt: skip


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
