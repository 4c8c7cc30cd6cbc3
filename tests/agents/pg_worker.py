"""A service process sharing a PostgreSQL database with others, for the PostgreSQL tests.

``python pg_worker.py DATABASE_URL COUNTER EXECUTOR_ID [--block PREFIX]``

Each process is one executor (``executor_id``), with a short lease: a process that goes
silent for ``LEASE_S`` has its unfinished runs resumed by another. It prints ``READY`` and
then answers commands read from stdin, one a line, concurrently:

- ``submit PLAN_JSON`` → ``RUN <id>``
- ``wait RUN_ID`` → ``STATUS <id> <json>`` once the run has finished (wherever it ran)
- ``step RUN_ID STEP_ID`` → ``STEP <run> <step> <status>`` once the step has finished
- ``quit`` (or end of input) → closes the service and exits

Its tools append ``start LABEL`` / ``done LABEL`` to COUNTER with unbuffered writes (they
survive a kill). A label starting with PREFIX makes the tool print ``BLOCKED <label>`` and
hang before its effect, in this process only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from typing import Any

from dbos import DBOS

from agents.support import worker_tools
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.service import AgentService
from llmrelay.agents.tools import Tool

NAME = "llmrelay-agents-pg"
INSTANCE = "pg"
"""One configured-instance name in every process: recovery finds the instance by it."""
LEASE_S = 2.0
"""Short, for the test; heartbeats come every quarter of it, so a live process keeps it."""


def tools(counter: str, block: str | None) -> list[Tool]:
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def run(arguments: dict[str, Any]) -> dict[str, Any]:
        label = arguments["label"]
        os.write(fd, f"start {label}\n".encode())
        if block and label.startswith(block):
            print(f"BLOCKED {label}", flush=True)
            await asyncio.Event().wait()
        os.write(fd, f"done {label}\n".encode())
        return {"value": 1}

    return worker_tools(run)


async def answer(service: AgentService, line: str) -> None:
    try:
        await _answer(service, line)
    except Exception as exc:  # the test reads it instead of waiting for an answer
        print(f"ERROR {type(exc).__name__}: {exc}", flush=True)


async def _answer(service: AgentService, line: str) -> None:
    command, _, rest = line.partition(" ")
    if command == "submit":
        run = await service.submit(plan=json.loads(rest))
        print(f"RUN {run['id']}", flush=True)
    elif command == "wait":
        done = await service.wait(rest)
        print(f"STATUS {rest} {json.dumps(done)}", flush=True)
    elif command == "step":
        run_id, step_id = rest.split()
        async for event in service.follow(run_id):
            data = event["data"]
            if event["kind"] == "step_finished" and data["step"] == step_id:
                print(f"STEP {run_id} {step_id} {data['status']}", flush=True)
                return
    else:
        print(f"ERROR unknown command {command!r}", flush=True)


async def main(args: argparse.Namespace) -> None:
    settings = AgentSettings(
        name=NAME, database_url=args.database, plugins=False, engine_poll_s=0.05,
        executor_id=args.executor, executor_lease_s=LEASE_S,
    )  # fmt: skip
    made = tools(args.counter, args.block)
    async with AgentService(settings, tools=made, instance=INSTANCE) as service:
        print(f"READY {DBOS.executor_id}", flush=True)
        tasks: set[asyncio.Task[None]] = set()
        while True:
            line = (await asyncio.to_thread(sys.stdin.readline)).strip()
            if not line or line == "quit":
                break
            task = asyncio.create_task(answer(service, line))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        for task in tasks:
            task.cancel()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("database")
    parser.add_argument("counter")
    parser.add_argument("executor")
    parser.add_argument("--block")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
