"""Durability: a service process killed with SIGKILL mid-run and started again.

Each scenario kills the process at a different point of a four-step chain and restarts
it; the counter file written by the tools shows what really ran.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("crash_worker.py")
PLAN = {"steps": [
    {"id": "step_1", "tool": "effect", "input": {"label": "s1"}},
    {"id": "step_2", "tool": "effect_once", "input": {"label": "s2", "after": "{step_1}"}},
    {"id": "step_3", "tool": "effect", "input": {"label": "s3", "after": "{step_2}"}},
    {"id": "step_4", "tool": "effect_once", "input": {"label": "s4", "after": "{step_3}"}},
]}  # fmt: skip


class Worker:
    def __init__(self, tmp_path: Path) -> None:
        self.data = tmp_path / "data"
        self.counter = tmp_path / "counter.log"
        self.run_id = ""

    def spawn(self, *extra: str) -> subprocess.Popen[str]:
        args = [sys.executable, str(WORKER), str(self.data), str(self.counter), *extra]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        return subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, env=env)  # fmt: skip

    def kill_when_blocked(self, *extra: str) -> None:
        """Start a process, wait until a tool reports it is hanging, SIGKILL it."""
        args = ["--submit", json.dumps(PLAN)] if not self.run_id else ["--wait", self.run_id]
        process = self.spawn(*args, *extra)
        assert process.stdout is not None
        for line in process.stdout:
            if line.startswith("RUN "):
                self.run_id = line.split()[1]
            if line.startswith("BLOCKED"):
                break
        else:
            _, err = process.communicate(timeout=30)
            pytest.fail(f"the worker ended before blocking: {err[-2000:]}")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def finish(self) -> dict[str, Any]:
        """Start a process that resumes the run and waits for its end."""
        out, err = self.spawn("--wait", self.run_id).communicate(timeout=60)
        status = [line for line in out.splitlines() if line.startswith("STATUS ")]
        assert status, f"no status: {err[-2000:]}"
        result: dict[str, Any] = json.loads(status[0].removeprefix("STATUS "))
        return result

    def counts(self) -> collections.Counter[str]:
        return collections.Counter(self.counter.read_text().splitlines())


def statuses(run: dict[str, Any]) -> list[str]:
    return [s["status"] for s in run["steps"]]


def test_idempotent_step_interrupted_is_retried(tmp_path: Path) -> None:
    """Killed inside an idempotent call: it runs again; everything else ran exactly once."""
    worker = Worker(tmp_path)
    worker.kill_when_blocked("--block", "s3")
    run = worker.finish()
    assert run["status"] == "succeeded"
    counts = worker.counts()
    assert counts["start s3"] == 2 and counts["done s3"] == 1
    assert all(counts[f"{kind} {label}"] == 1
               for label in ("s1", "s2", "s4") for kind in ("start", "done"))  # fmt: skip


def test_non_idempotent_step_interrupted_is_outcome_unknown(tmp_path: Path) -> None:
    """Killed inside a non-idempotent call: it is not called again; the run stops with an
    outcome-unknown status for that step, and the steps after it never run."""
    worker = Worker(tmp_path)
    worker.kill_when_blocked("--block", "s2")
    run = worker.finish()
    assert run["status"] == "outcome_unknown" and "step_2" in run["error"]
    assert statuses(run) == ["succeeded", "outcome_unknown", "pending", "pending"]
    assert worker.counts() == {"start s1": 1, "done s1": 1, "start s2": 1}


def test_non_idempotent_effect_done_before_the_record(tmp_path: Path) -> None:
    """Killed after a non-idempotent effect but before it was recorded: never repeated."""
    worker = Worker(tmp_path)
    worker.kill_when_blocked("--block-after", "s4")
    run = worker.finish()
    assert statuses(run) == ["succeeded", "succeeded", "succeeded", "outcome_unknown"]
    assert all(count == 1 for count in worker.counts().values())


def test_killed_several_times(tmp_path: Path) -> None:
    """Killed at two points of one run (after an idempotent effect, inside another call):
    the run completes and every succeeded step's effect happened once, except the
    idempotent one cut off after its effect, which is allowed to repeat."""
    worker = Worker(tmp_path)
    worker.kill_when_blocked("--block-after", "s1")
    worker.kill_when_blocked("--block", "s3")
    run = worker.finish()
    assert run["status"] == "succeeded"
    assert [s["executions"] for s in run["steps"]] == [2, 1, 2, 1]
    counts = worker.counts()
    assert counts["done s1"] == 2 and counts["done s3"] == 1
    assert counts["done s2"] == counts["done s4"] == counts["start s2"] == counts["start s4"] == 1
