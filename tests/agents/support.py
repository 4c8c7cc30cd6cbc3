"""Test tools of the agents tests: they record every call, and can wait, meet or fail."""

from __future__ import annotations

import asyncio
from typing import Any

from llmrelay.agents.tools import Tool, ToolFunc


class Ledger:
    """Counts every call of the test tools, by label: what each step really did."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.done: list[str] = []
        self.fail: dict[str, int] = {}
        """Label → how many more calls of it raise."""
        self.gates: dict[str, asyncio.Event] = {}
        self.barrier: asyncio.Barrier | None = None


def effect_tool(ledger: Ledger, name: str = "effect", *, idempotent: bool = True,
                retries: int = 0, timeout_s: float = 5.0) -> Tool:  # fmt: skip
    """A tool that records its call, may wait on a gate or a barrier, and may fail."""

    async def run(arguments: dict[str, Any]) -> dict[str, Any]:
        label = arguments["label"]
        ledger.started.append(label)
        if label in ledger.gates:
            await ledger.gates[label].wait()
        if ledger.barrier is not None and label.startswith("par"):
            await ledger.barrier.wait()
        if ledger.fail.get(label, 0) > 0:
            ledger.fail[label] -= 1
            raise RuntimeError(f"{label} failed on purpose")
        ledger.done.append(label)
        return {"value": len(ledger.done), "label": label}

    return Tool(
        name=name,
        version="1.0.0",
        description="records its call (test tool)",
        input_schema={
            "type": "object",
            "properties": {"label": {"type": "string"}, "after": {}},
            "required": ["label"],
        },
        output_schema={
            "type": "object",
            "properties": {"value": {"type": "integer"}, "label": {"type": "string"}},
            "required": ["value"],
        },
        run=run,
        idempotent=idempotent,
        retries=retries,
        retry_backoff_s=0.01,
        timeout_s=timeout_s,
    )


def worker_tools(run: ToolFunc) -> list[Tool]:
    """The tools of the worker processes: ``effect`` (idempotent) and ``effect_once`` (not),
    both calling ``run`` with ``{"label": …, "after": …}``."""
    schema = {"type": "object", "properties": {"label": {"type": "string"}, "after": {}},
              "required": ["label"]}  # fmt: skip
    output = {"type": "object", "properties": {"value": {"type": "integer"}}}
    return [
        Tool(name="effect", version="1.0", description="idempotent test effect",
             input_schema=schema, output_schema=output, run=run, idempotent=True),
        Tool(name="effect_once", version="1.0", description="non-idempotent test effect",
             input_schema=schema, output_schema=output, run=run, idempotent=False),
    ]  # fmt: skip
