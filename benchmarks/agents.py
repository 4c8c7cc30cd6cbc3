"""The agents runs service: parallel speed of plan shapes, and a burst of concurrent runs.

``python -m benchmarks.agents`` (``BENCH_AGENTS_REPEATS`` runs of each plan, 5 by default;
``BENCH_AGENTS_RUNS`` concurrent runs, 200 by default). One ``AgentService`` on SQLite in a
temporary directory (and, when ``DATABASE_URL`` or the standard loopback PostgreSQL
answers, the load section again on a fresh PostgreSQL database, dropped afterwards). Every
figure is measured here, in this run:

- parallel speed: plans whose steps call a test tool that sleeps a known time. A run's wall
  time is its ``finished_at - created_at`` in the store (planning excluded: the plan is
  given). The critical path is the sum of the sleeps along the longest dependency path,
  the serial time the sum of all sleeps; medians of the repeats.
- load: the runs submitted at once (``asyncio.gather`` of ``AgentService.submit``), each a
  given three-step plan (two 10-ms steps side by side, then a join). Submit latency is the
  time one ``submit`` call takes (it stores the run and starts its workflow); time to
  finished is the run's ``finished_at`` in the store minus the moment its ``submit`` was
  called; runs/s is the runs divided by the time from the first submit to the last finish.
"""

from __future__ import annotations

import asyncio
import logging
import os
import secrets
import statistics
import tempfile
import time
import urllib.parse
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.service import AgentService
from llmrelay.agents.tools import Tool
from llmrelay.simulator.server import SimulatorServer
from llmrelay.testing import make_config

REPEATS = int(os.environ.get("BENCH_AGENTS_REPEATS", "5"))
RUNS = int(os.environ.get("BENCH_AGENTS_RUNS", "200"))
UNIT_S = 0.2
"""The sleep of one step in the parallel-speed plans."""

Step = tuple[str, float, list[str]]
"""``(step id, sleep s, depends on)``."""


def sleep_tool() -> Tool:
    async def run(arguments: dict[str, Any]) -> dict[str, Any]:
        await asyncio.sleep(float(arguments["s"]))
        return {"value": 1}

    return Tool(
        name="bench_sleep",
        version="1.0.0",
        description="sleeps the given seconds (benchmark tool)",
        input_schema={"type": "object", "properties": {"s": {"type": "number"}}, "required": ["s"]},
        output_schema={"type": "object", "properties": {"value": {"type": "integer"}}},
        run=run,
        timeout_s=30.0,
    )


def _n(i: int) -> str:
    return f"step_{i}"


def shapes() -> dict[str, list[Step]]:
    u = UNIT_S
    tree: list[Step] = [(_n(1), u, [])]
    tree += [(_n(2 + i), u, [_n(1)]) for i in range(3)]
    tree += [(_n(5 + 2 * i + j), u, [_n(2 + i)]) for i in range(3) for j in range(2)]
    return {
        "fan-out: 8 independent steps": [(_n(i), u, []) for i in range(1, 9)],
        "diamond: 1 → (2, 3) → 4": [
            (_n(1), u, []),
            (_n(2), u, [_n(1)]),
            (_n(3), u, [_n(1)]),
            (_n(4), u, [_n(2), _n(3)]),
        ],
        "chain of 4": [(_n(i), u, [_n(i - 1)] if i > 1 else []) for i in range(1, 5)],
        "two-level tree: 1 → 3 → 6": tree,
        "two skewed chains: (2u → ½u), (½u → 2u)": [
            (_n(1), 2 * u, []),
            (_n(2), u / 2, [_n(1)]),
            (_n(3), u / 2, []),
            (_n(4), 2 * u, [_n(3)]),
        ],
    }


def plan_of(steps: list[Step]) -> dict[str, Any]:
    return {"steps": [{"id": sid, "tool": "bench_sleep", "input": {"s": s},
                       **({"depends_on": deps} if deps else {})}
                      for sid, s, deps in steps]}  # fmt: skip


def critical_path(steps: list[Step]) -> float:
    longest: dict[str, float] = {}
    for sid, s, deps in steps:  # listed after their dependencies
        longest[sid] = s + max((longest[d] for d in deps), default=0.0)
    return max(longest.values())


def by_generations(steps: list[Step]) -> float:
    """The wall time of an engine that waits for a whole generation before the next."""
    level: dict[str, int] = {}
    for sid, _, deps in steps:
        level[sid] = 1 + max((level[d] for d in deps), default=-1)
    return sum(
        max(s for sid, s, _ in steps if level[sid] == g) for g in range(max(level.values()) + 1)
    )


def _fresh_engine_only(record: logging.LogRecord) -> bool:
    # each service here opens a new DBOS with nothing to recover: the warning does not apply
    return "registered after DBOS was launched" not in record.getMessage()


def _service(settings: AgentSettings) -> AgentService:
    return AgentService(settings, tools=[sleep_tool()], instance=f"b{uuid.uuid4().hex}")


async def parallel(settings: AgentSettings) -> None:
    print(f"## parallel speed: steps sleeping {UNIT_S * 1000:.0f} ms (u), "
          f"median of {REPEATS} runs each, SQLite")  # fmt: skip
    print("| plan | steps | serial s | critical path s | level by level s | wall s | "
          "wall / critical path | speed-up over serial |")  # fmt: skip
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    async with _service(settings) as service:
        warm = await service.submit(plan=plan_of([(_n(1), 0.0, [])]))
        await service.wait(warm["id"])
        for label, steps in shapes().items():
            walls = []
            for _ in range(REPEATS):
                run = await service.submit(plan=plan_of(steps))
                done = await service.wait(run["id"])
                assert done["status"] == "succeeded", done
                walls.append(done["finished_at"] - done["created_at"])
            wall = statistics.median(walls)
            serial = sum(s for _, s, _ in steps)
            path = critical_path(steps)
            print(f"| {label} | {len(steps)} | {serial:.2f} | {path:.2f} | "
                  f"{by_generations(steps):.2f} | {wall:.3f} | {wall / path:.2f} | "
                  f"{serial / wall:.2f}x |")  # fmt: skip
    print("\n'level by level' is what an engine that runs the plan one generation at a time "
          "must take (the next generation starts when the slowest step of the current one "
          "ends); the skewed chains show the difference from the critical path.\n")  # fmt: skip


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def load(settings: AgentSettings, where: str) -> None:
    steps: list[Step] = [(_n(1), 0.01, []), (_n(2), 0.01, []), (_n(3), 0.01, [_n(1), _n(2)])]
    plan = plan_of(steps)
    async with _service(settings) as service:
        warm = await service.submit(plan=plan)
        await service.wait(warm["id"])
        began: dict[str, float] = {}

        async def one() -> tuple[str, float]:
            t0 = time.time()
            run = await service.submit(plan=plan)
            began[run["id"]] = t0
            return run["id"], time.time() - t0

        first = time.time()
        submitted = await asyncio.gather(*(one() for _ in range(RUNS)))
        done = await asyncio.gather(*(service.wait(run_id) for run_id, _ in submitted))
        finished = [r for r in done if r["status"] == "succeeded"]
        latencies = [lat for _, lat in submitted]
        to_finish = [r["finished_at"] - began[r["id"]] for r in finished]
        span = max(r["finished_at"] for r in finished) - first
        print(f"| {where} | {len(finished)} / {RUNS} | {len(finished) / span:.1f} | "
              f"{_pct(latencies, 0.5) * 1e3:.0f} | {_pct(latencies, 0.99) * 1e3:.0f} | "
              f"{_pct(to_finish, 0.5) * 1e3:.0f} | {_pct(to_finish, 0.99) * 1e3:.0f} |",
              flush=True)  # fmt: skip


@contextmanager
def postgres_database() -> Iterator[str | None]:
    """A fresh PostgreSQL database for this run, dropped afterwards; None when none answers."""
    admin = os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/test")
    try:
        import psycopg

        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except Exception as exc:
        print(f"(no PostgreSQL at {admin}: {exc}; SQLite only)\n")
        yield None
        return
    name = f"agents_bench_{secrets.token_hex(6)}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            url = urllib.parse.urlparse(admin)._replace(path=f"/{name}")
            yield urllib.parse.urlunparse(url)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run() -> None:
    logging.getLogger("dbos").addFilter(_fresh_engine_only)
    print(f"# agents runs service ({os.cpu_count()} cores)\n")
    with tempfile.TemporaryDirectory() as tmp:
        base = AgentSettings(data_dir=Path(tmp) / "parallel", plugins=False, engine_poll_s=0.05)
        asyncio.run(parallel(base))
        print(f"## load: {RUNS} runs submitted at once, one process, plan (10 ms ‖ 10 ms) → 10 ms")
        print("| database | finished | runs/s | submit p50 ms | submit p99 ms | "
              "time to finished p50 ms | time to finished p99 ms |")  # fmt: skip
        print("|---|---:|---:|---:|---:|---:|---:|")
        sqlite = base.model_copy(update={"data_dir": Path(tmp) / "load"})
        asyncio.run(load(sqlite, "SQLite (files under a temp dir)"))
        with postgres_database() as url:
            if url is not None:
                asyncio.run(load(base.model_copy(update={"database_url": url}), "PostgreSQL"))
        print(f"\n## the runs API: {RUNS} prompts POSTed at once, LLM planner on the simulator")
        print("| finished | runs/s | POST p50 ms | POST p99 ms | GET run p50 ms | GET run p99 ms |")
        print("|---|---:|---:|---:|---:|---:|")
        api = base.model_copy(update={"data_dir": Path(tmp) / "api", "max_prompt_chars": 200})
        with SimulatorServer(make_config()) as sim:  # no latency, no limits: the service's cost
            asyncio.run(load_api(api, sim.url))
    print("\nOne process; submit latency includes storing the run and starting its workflow "
          "(and, through the API, planning it with one LLM call); percentiles are nearest-rank "
          "over all runs; GET run over 50 finished runs, one at a time.\n")  # fmt: skip


PLANNED = {"steps": [
    {"id": "step_1", "tool": "calculator", "input": {"expression": "6*7"}},
    {"id": "step_2", "tool": "calculator", "input": {"expression": "5*3"}},
    {"id": "step_3", "tool": "calculator", "input": {"expression": "{step_1.value} + 1"},
     "depends_on": ["step_2"]},
]}  # fmt: skip


async def load_api(settings: AgentSettings, sim_url: str) -> None:
    """RUNS prompts POSTed at once to the runs API, planned by the LLM planner through
    SmartLLM against the simulator (a scripted plan); every run waited for."""
    import json
    import socket

    import aiohttp
    import uvicorn

    from llmrelay import LLMBuilder
    from llmrelay.agents.api import create_app
    from llmrelay.testing import SimulatorHandle

    reply = json.dumps(PLANNED).replace("{", "{{").replace("}", "}}")
    SimulatorHandle(sim_url).set_model(
        "sim-openai", scripts=[{"pattern": "compute", "reply": reply}]
    )
    llm = LLMBuilder().with_primary("openai", "sim-openai", base_url=sim_url + "/v1",
                                    api_key="sk-bench", context_window=16000,
                                    max_output_tokens=4096).build()  # fmt: skip
    planner = settings.planner.model_copy(update={"mode": "llm"})
    service = AgentService(settings.model_copy(update={"planner": planner}), llm=llm,
                           instance=f"b{uuid.uuid4().hex}")  # fmt: skip
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(service), lifespan="off",
                                           log_level="warning", access_log=False))  # fmt: skip
    async with service:
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:  # noqa: ASYNC110  uvicorn offers a flag, not an event
            await asyncio.sleep(0.01)
        url = f"http://127.0.0.1:{sock.getsockname()[1]}/api/v1/runs"
        connector = aiohttp.TCPConnector(limit=0)
        async with aiohttp.ClientSession(connector=connector) as http:

            async def post(i: int) -> tuple[str, float, int]:
                t0 = time.perf_counter()
                async with http.post(url, json={"prompt": f"compute the answer {i}"}) as answer:
                    body = await answer.json()
                    return body.get("id", ""), time.perf_counter() - t0, answer.status

            first = time.time()
            posted = await asyncio.gather(*(post(i) for i in range(RUNS)))
            accepted = [run_id for run_id, _, status in posted if status == 201]
            done = await asyncio.gather(*(service.wait(run_id) for run_id in accepted))
            gets: list[float] = []
            for run_id in accepted[:50]:
                t0 = time.perf_counter()
                async with http.get(f"{url}/{run_id}") as answer:
                    await answer.read()
                gets.append(time.perf_counter() - t0)
        server.should_exit = True
        await task
    sock.close()
    await llm.aclose()
    ok = [r for r in done if r["status"] == "succeeded"]
    span = max(r["finished_at"] for r in ok) - first if ok else float("nan")
    posts = [latency for _, latency, _ in posted]
    print(f"| {len(ok)} / {RUNS} | {len(ok) / span:.1f} | {_pct(posts, 0.5) * 1e3:.0f} | "
          f"{_pct(posts, 0.99) * 1e3:.0f} | {_pct(gets, 0.5) * 1e3:.1f} | "
          f"{_pct(gets, 0.99) * 1e3:.1f} |", flush=True)  # fmt: skip


if __name__ == "__main__":
    run()
