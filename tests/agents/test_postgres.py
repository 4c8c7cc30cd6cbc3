"""Two service processes sharing one PostgreSQL database: either runs what the other was
given, and one adopts the runs of the other after it is killed.

Each test gets its own database (``agents_<hex>``, dropped afterwards) holding both the
store's tables and DBOS's system schema. The processes are ``pg_worker.py``; the test
synchronises on the lines they print and on the statuses they report, never on sleeps.
"""

from __future__ import annotations

import collections
import json
import os
import queue
import secrets
import signal
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from services import database_url

WORKER = Path(__file__).with_name("pg_worker.py")
GUARD_S = 45.0
"""Only a failure guard: how long a line the test waits for may take to come."""


def _with_database(url: str, name: str) -> str:
    return urllib.parse.urlunparse(urllib.parse.urlparse(url)._replace(path=f"/{name}"))


@pytest.fixture
def pg_database() -> Iterator[str]:
    """A fresh database for this test, dropped afterwards; skip when PostgreSQL is down."""
    psycopg = pytest.importorskip("psycopg")
    admin = database_url()
    try:
        conn = psycopg.connect(admin, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        pytest.skip(f"no PostgreSQL at {admin} ({exc}): start one (see README) or set "
                    "DATABASE_URL")  # fmt: skip
    name = f"agents_{secrets.token_hex(6)}"
    with conn:
        conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield _with_database(admin, name)
        finally:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


class Worker:
    """One service process; its stdout lines arrive on a queue read by a thread."""

    def __init__(self, database: str, counter: Path, executor: str, *extra: str) -> None:
        self.executor = executor
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
        env.pop("DBOS__VMID", None)
        self.process = subprocess.Popen(
            [sys.executable, str(WORKER), database, str(counter), executor, *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            text=True, env=env,
        )  # fmt: skip
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stderr: list[str] = []
        self.unread: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._read_err, daemon=True).start()
        self.expect("READY")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def _read_err(self) -> None:
        assert self.process.stderr is not None
        self.stderr.extend(self.process.stderr)

    def send(self, line: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(line + "\n")
        self.process.stdin.flush()

    def expect(self, prefix: str) -> str:
        """The first unread line starting with ``prefix`` (others are kept for later)."""
        for line in self.unread:
            if line.startswith(prefix):
                self.unread.remove(line)
                return line.removeprefix(prefix).strip()
        while True:
            try:
                got = self.lines.get(timeout=GUARD_S)
            except queue.Empty:
                pytest.fail(f"{self.executor}: no {prefix!r} line: {self.tail()}")
            if got is None:
                pytest.fail(f"{self.executor} ended before {prefix!r}: {self.tail()}")
            if got.startswith("ERROR"):
                pytest.fail(f"{self.executor}: {got}")
            if got.startswith(prefix):
                return got.removeprefix(prefix).strip()
            self.unread.append(got)

    def submit(self, plan: dict[str, Any]) -> str:
        self.send("submit " + json.dumps(plan))
        return self.expect("RUN ")

    def wait_all(self, run_ids: list[str]) -> dict[str, dict[str, Any]]:
        """Each run once finished, as this process reads it from the shared store."""
        for run_id in run_ids:
            self.send(f"wait {run_id}")
        found: dict[str, dict[str, Any]] = {}
        while len(found) < len(run_ids):
            run_id, _, text = self.expect("STATUS ").partition(" ")
            found[run_id] = json.loads(text)
        return found

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=GUARD_S)

    def close(self) -> None:
        if self.process.poll() is None:
            try:
                self.send("quit")
                self.process.wait(timeout=GUARD_S)
            except (OSError, subprocess.TimeoutExpired):
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        return "".join(self.stderr)[-2000:]


@pytest.fixture
def workers(pg_database: str, tmp_path: Path) -> Iterator[list[Worker]]:
    """Closes whatever workers the test started (the list it appends to)."""
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def start(workers: list[Worker], database: str, counter: Path, name: str,
          *extra: str) -> Worker:  # fmt: skip
    worker = Worker(database, counter, f"{name}-{secrets.token_hex(4)}", *extra)
    workers.append(worker)
    return worker


def step(n: int, tool: str, label: str, after: int | None = None) -> dict[str, Any]:
    extra = {"after": f"{{step_{after}.value}}"} if after else {}
    return {"id": f"step_{n}", "tool": tool, "input": {"label": label, **extra}}


def diamond(prefix: str) -> dict[str, Any]:
    """1 → (2, 3) → 4, the last step not idempotent."""
    return {"steps": [
        step(1, "effect", f"{prefix}-1"),
        step(2, "effect", f"{prefix}-2", after=1), step(3, "effect", f"{prefix}-3", after=1),
        {**step(4, "effect_once", f"{prefix}-4"), "depends_on": ["step_2", "step_3"]},
    ]}  # fmt: skip


def counts(counter: Path) -> collections.Counter[str]:
    return collections.Counter(counter.read_text().splitlines())


def executors(database: str) -> dict[str, str]:
    """Run id → the DBOS executor that ran (or last ran) its first attempt."""
    import psycopg

    with psycopg.connect(database) as conn:
        rows = conn.execute("SELECT workflow_uuid, executor_id FROM dbos.workflow_status")
        return {str(wf).split(":")[0]: str(ex) for wf, ex in rows}


def test_runs_submitted_to_either_process_complete(
    pg_database: str, workers: list[Worker], tmp_path: Path
) -> None:
    """Runs submitted to either process all succeed, each step's effect happening once;
    each process reads the runs the other executed from the shared store."""
    counter = tmp_path / "counter.log"
    one = start(workers, pg_database, counter, "one")
    two = start(workers, pg_database, counter, "two")
    mine = {one.executor: [one.submit(diamond(f"a{i}")) for i in range(3)],
            two.executor: [two.submit(diamond(f"b{i}")) for i in range(3)]}  # fmt: skip
    done = {**two.wait_all(mine[one.executor]), **one.wait_all(mine[two.executor])}
    assert {run["status"] for run in done.values()} == {"succeeded"}
    assert all(s["executions"] == 1 for run in done.values() for s in run["steps"])
    assert set(counts(counter).values()) == {1} and len(counts(counter)) == 6 * 4 * 2
    ran_by = executors(pg_database)
    assert all(ran_by[run_id] == executor for executor, ids in mine.items() for run_id in ids)


def test_a_killed_process_runs_are_finished_by_the_other(
    pg_database: str, workers: list[Worker], tmp_path: Path
) -> None:
    """One process is killed with runs in flight; when its lease runs out, the other resumes
    them by itself and finishes them: the steps done before the kill are not done again, an idempotent
    step cut off mid-call runs again, a non-idempotent one is reported outcome-unknown."""
    counter = tmp_path / "counter.log"
    doomed = start(workers, pg_database, counter, "doomed", "--block", "hold")
    survivor = start(workers, pg_database, counter, "survivor")
    chain = {"steps": [  # cut off inside the idempotent step_2
        step(1, "effect_once", "c-1"), step(2, "effect", "hold-c-2", after=1),
        step(3, "effect_once", "c-3", after=2)]}  # fmt: skip
    fan = {"steps": [  # cut off inside the non-idempotent step_3, its sibling done
        step(1, "effect", "f-1"), step(2, "effect_once", "f-2", after=1),
        step(3, "effect_once", "hold-f-3", after=1), step(4, "effect", "f-4", after=2)]}  # fmt: skip
    wide = {"steps": [  # two idempotent steps cut off side by side
        step(1, "effect", "hold-w-1"), step(2, "effect", "hold-w-2"),
        {**step(3, "effect_once", "w-3"), "depends_on": ["step_1", "step_2"]}]}  # fmt: skip
    ids = [doomed.submit(plan) for plan in (chain, fan, wide)]
    blocked = {doomed.expect("BLOCKED ") for _ in range(4)}
    assert blocked == {"hold-c-2", "hold-f-3", "hold-w-1", "hold-w-2"}
    doomed.send(f"step {ids[1]} step_2")  # the sibling of the cut-off step is recorded
    assert doomed.expect("STEP ") == f"{ids[1]} step_2 succeeded"
    doomed.kill()

    runs = survivor.wait_all(ids)  # once the doomed one's lease has run out
    c, f, w = (runs[run_id] for run_id in ids)

    assert c["status"] == "succeeded" and [s["executions"] for s in c["steps"]] == [1, 2, 1]
    assert f["status"] == "outcome_unknown" and "step_3" in f["error"]
    assert [s["status"] for s in f["steps"]] == ["succeeded", "succeeded", "outcome_unknown",
                                                 "pending"]  # fmt: skip
    assert w["status"] == "succeeded" and [s["executions"] for s in w["steps"]] == [2, 2, 1]
    seen = counts(counter)
    assert all(seen[f"done {label}"] == 1 for label in
               ("c-1", "hold-c-2", "c-3", "f-1", "f-2", "hold-w-1", "hold-w-2", "w-3"))  # fmt: skip
    assert all(seen[f"start {label}"] == 1 for label in ("c-1", "c-3", "f-2", "w-3"))
    assert seen["start hold-f-3"] == 1 and seen["done hold-f-3"] == 0
    assert seen["start f-4"] == 0
    ran_by = executors(pg_database)
    assert all(ran_by[run_id] == survivor.executor for run_id in ids)
