"""A service process for the crash tests; the test kills it with SIGKILL and starts another.

``python crash_worker.py DATA COUNTER [--submit PLAN_JSON | --wait RUN_ID]
[--block LABEL] [--block-after LABEL]``

Its tools append ``start LABEL`` / ``done LABEL`` to COUNTER with unbuffered writes (they
survive the kill). ``--block`` makes the tool of that label print ``BLOCKED`` and hang
before its effect, ``--block-after`` after it. Prints ``RUN <id>`` then ``STATUS <json>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from pathlib import Path
from typing import Any

from agents.support import worker_tools
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.service import AgentService
from llmrelay.agents.tools import Tool


def tools(counter: str, block: str | None, block_after: str | None) -> list[Tool]:
    fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    async def hang(label: str, where: str) -> None:
        print(f"BLOCKED {where} {label}", flush=True)
        await asyncio.Event().wait()

    async def run(arguments: dict[str, Any]) -> dict[str, Any]:
        label = arguments["label"]
        os.write(fd, f"start {label}\n".encode())
        if label == block:
            await hang(label, "before")
        os.write(fd, f"done {label}\n".encode())
        if label == block_after:
            await hang(label, "after")
        return {"value": 1}

    return worker_tools(run)


async def main(args: argparse.Namespace) -> None:
    settings = AgentSettings(
        name="llmrelay-agents-crash", data_dir=Path(args.data), plugins=False, engine_poll_s=0.05
    )
    made = tools(args.counter, args.block, args.block_after)
    async with AgentService(settings, tools=made, instance="crash") as service:
        if args.submit:
            run_id = (await service.submit(plan=json.loads(args.submit)))["id"]
        else:
            run_id = args.wait
        print(f"RUN {run_id}", flush=True)
        done = await service.wait(run_id)
        print("STATUS " + json.dumps(done), flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("data")
    parser.add_argument("counter")
    parser.add_argument("--submit")
    parser.add_argument("--wait")
    parser.add_argument("--block")
    parser.add_argument("--block-after")
    asyncio.run(main(parser.parse_args()))
    sys.exit(0)
