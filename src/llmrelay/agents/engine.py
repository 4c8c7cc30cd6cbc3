"""Durable execution of plans on DBOS Transact: one workflow per run attempt.

DBOS keeps one engine per process (it is global state), so :class:`Engine` is its single
owner here: it opens DBOS, launches it (which resumes the workflows an earlier process left
unfinished) and destroys it once. The workflow runs the plan's generations one after the
other, the steps of a generation concurrently; each step is a DBOS step with the tool's
retries and backoff, wrapped in the store's ledger (see :mod:`llmrelay.agents.store`) so
that a step that succeeded is never executed again and a non-idempotent tool interrupted
by a crash is reported ``outcome_unknown`` instead of being called twice.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbos import DBOS, DBOSConfiguredInstance, SetWorkflowID, StepOptions, WorkflowHandleAsync
from dbos._error import (
    DBOSMaxStepRetriesExceeded,
    DBOSWorkflowCancelledError,
    DBOSWorkflowConflictIDError,
)

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.errors import AgentError, OutcomeUnknown, ToolFailed
from llmrelay.agents.hub import EventHub
from llmrelay.agents.plan import PlanStep, generations, parse_plan, resolve
from llmrelay.agents.store import RunStore
from llmrelay.agents.tools.registry import Tool, ToolRegistry


def workflow_id(run_id: str, attempt: int) -> str:
    return f"{run_id}:{attempt}"


def _retryable(exc: BaseException) -> bool:
    return not isinstance(exc, OutcomeUnknown)


def _message(exc: BaseException) -> str:
    if isinstance(exc, DBOSMaxStepRetriesExceeded) and exc.errors:
        return f"{exc.errors[-1]} (after {exc.max_retries} attempts)"
    return str(exc) or type(exc).__name__


@DBOS.dbos_class("llmrelay_agents_executor")
class Executor(DBOSConfiguredInstance):
    """The workflow and step bodies, bound to one store, registry and hub."""

    def __init__(self, name: str, store: RunStore, registry: ToolRegistry, hub: EventHub) -> None:
        self.store = store
        self.registry = registry
        self.hub = hub
        self.ended: set[str] = set()
        """Workflows of this process whose body has returned (DBOS is recording the end)."""
        super().__init__(name)

    async def _store(self, run_id: str, method: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return await asyncio.to_thread(method, *args, **kwargs)
        finally:
            self.hub.notify(run_id)

    @DBOS.workflow(name="llmrelay_agents_run")
    async def execute(self, run_id: str, attempt: int) -> str:
        """Run the plan's steps not yet succeeded; the run's final status."""
        try:
            return await self._execute(run_id, attempt)
        finally:
            self.ended.add(workflow_id(run_id, attempt))

    async def _execute(self, run_id: str, attempt: int) -> str:
        raw, _ = await asyncio.to_thread(self.store.plan, run_id)
        plan = parse_plan(raw)
        if not await self._store(run_id, self.store.set_status, run_id, "running"):
            return "cancelled"
        results: dict[str, Any] = {}
        for level in generations(plan):
            steps = [plan.step(step_id) for step_id in level]
            outcomes = await asyncio.gather(
                *(self._call(run_id, step, results) for step in steps), return_exceptions=True
            )
            failures: list[tuple[PlanStep, BaseException]] = []
            for step, outcome in zip(steps, outcomes, strict=True):
                if isinstance(outcome, BaseException):
                    failures.append((step, outcome))
                else:
                    results[step.id] = outcome
            if failures:
                return await self._stop(run_id, failures)
        await self._store(run_id, self.store.set_status, run_id, "succeeded")
        return "succeeded"

    async def _stop(self, run_id: str, failures: list[tuple[PlanStep, BaseException]]) -> str:
        for _, exc in failures:
            if isinstance(exc, DBOSWorkflowConflictIDError):
                raise exc  # another executor owns this run now: it records the outcome
        if any(isinstance(exc, DBOSWorkflowCancelledError | asyncio.CancelledError)
               for _, exc in failures):  # fmt: skip
            return "cancelled"
        unknown = [step.id for step, exc in failures if isinstance(exc, OutcomeUnknown)]
        for step, exc in failures:
            if not isinstance(exc, OutcomeUnknown):
                await self._store(run_id, self.store.fail, run_id, step.id, "failed", _message(exc))
        if unknown:
            error = f"outcome unknown for {', '.join(unknown)}: interrupted while running"
            await self._store(run_id, self.store.set_status, run_id, "outcome_unknown", error)
            return "outcome_unknown"
        error = "; ".join(f"{step.id}: {_message(exc)}" for step, exc in failures)
        await self._store(run_id, self.store.set_status, run_id, "failed", error)
        return "failed"

    async def _call(self, run_id: str, step: PlanStep, results: dict[str, Any]) -> Any:
        tool = self.registry.get(step.tool, step.version)
        try:
            arguments = resolve(step.input, results, tool.input_schema)
        except KeyError as exc:
            raise ToolFailed(f"{step.id}: {exc.args[0]}") from None
        options: StepOptions = {
            "name": f"{step.id}:{tool.name}",
            "retries_allowed": tool.retries > 0,
            "max_attempts": tool.retries + 1,
            "interval_seconds": tool.retry_backoff_s,
            "backoff_rate": 2.0,
            "should_retry": _retryable,
            "preemptible": True,
        }
        return await DBOS.run_step_async(options, self._body, run_id, step.id, tool, arguments)

    async def _body(self, run_id: str, step_id: str, tool: Tool, arguments: dict[str, Any]) -> Any:
        claim = await self._store(
            run_id, self.store.claim, run_id, step_id, idempotent=tool.idempotent
        )
        if claim.action == "reuse":
            return claim.result
        if claim.action == "unknown":
            raise OutcomeUnknown(f"{step_id} ({tool.name}) was interrupted while running")
        try:
            result = await asyncio.wait_for(
                self.registry.invoke(tool, arguments), timeout=tool.timeout_s
            )
        except TimeoutError:
            message = f"{tool.name} timed out after {tool.timeout_s} s"
            if not tool.idempotent:
                await self._store(run_id, self.store.fail, run_id, step_id, "outcome_unknown",
                                  message)  # fmt: skip
                raise OutcomeUnknown(f"{step_id}: {message}; it may have taken effect") from None
            await self._store(run_id, self.store.fail, run_id, step_id, "retrying", message)
            raise ToolFailed(message) from None
        except asyncio.CancelledError:
            status = "cancelled" if tool.idempotent else "outcome_unknown"
            self.store.fail(run_id, step_id, status, "cancelled while running")
            self.hub.notify(run_id)
            raise
        except Exception as exc:
            message = f"{tool.name}: {exc}" if isinstance(exc, AgentError) else (
                f"{tool.name}: {type(exc).__name__}: {exc}")  # fmt: skip
            await self._store(run_id, self.store.fail, run_id, step_id, "retrying", message)
            raise ToolFailed(message) from None
        await self._store(run_id, self.store.succeed, run_id, step_id, result)
        return result


class Engine:
    """The one owner of DBOS in this process: opens, launches and destroys it once."""

    def __init__(
        self,
        settings: AgentSettings,
        store: RunStore,
        registry: ToolRegistry,
        hub: EventHub,
        *,
        instance: str | None = None,
    ) -> None:
        self.settings = settings
        self.executor = Executor(instance or settings.name, store, registry, hub)
        self._state = "new"
        self.executor_id = settings.executor()
        self._local: dict[str, asyncio.Future[Any]] = {}
        """The workflows started by this engine, until they are done."""

    def open(self) -> None:
        """Start DBOS; the workflows a previous process left unfinished resume now."""
        if self._state != "new":
            raise AgentError(f"the engine is {self._state}; make a new one")
        self._state = "open"
        DBOS(config={
            "name": self.settings.name,
            "system_database_url": self.settings.engine_url(),
            "log_level": "WARNING",
            "notification_listener_polling_interval_sec": self.settings.engine_poll_s,
            "executor_id": self.executor_id,
        })  # fmt: skip
        DBOS.launch()

    def close(self) -> None:
        if self._state == "open":
            DBOS.destroy()
        self._state = "closed"

    async def start(self, run_id: str, attempt: int) -> None:
        """Start the run's attempt (starting one that exists already does nothing)."""
        key = workflow_id(run_id, attempt)
        with SetWorkflowID(key):
            handle = await DBOS.start_workflow_async(self.executor.execute, run_id, attempt)
        task: asyncio.Future[Any] | None = getattr(handle, "task", None)
        if task is not None and not task.done():
            self._local[key] = task
            task.add_done_callback(lambda _: self._local.pop(key, None))

    async def drain(self, timeout_s: float) -> None:
        """Let the workflows whose runs have ended record it (milliseconds), so that
        closing does not cut them off and a restart does not replay them. Runs still
        executing are left to be resumed by the next process."""
        ending = [task for key, task in self._local.items() if key in self.executor.ended]
        if ending:
            await asyncio.wait(ending, timeout=timeout_s)

    async def start_if_missing(self, run_id: str, attempt: int) -> bool:
        """Start the attempt unless its workflow exists (then recovery runs it); whether it
        started."""
        if await DBOS.get_workflow_status_async(workflow_id(run_id, attempt)) is not None:
            return False
        await self.start(run_id, attempt)
        return True

    async def wait(self, run_id: str, attempt: int) -> str:
        """The final status of the attempt, once its workflow has ended."""
        handle: WorkflowHandleAsync[str] = await DBOS.retrieve_workflow_async(
            workflow_id(run_id, attempt)
        )
        try:
            return str(await handle.get_result())
        except Exception:
            return "cancelled"

    async def adopt(self, executor_id: str) -> int:
        """Resume the unfinished runs of another (dead) executor of this code version;
        how many. The engine's queue hands each to a live executor, which replays it
        from its last recorded step."""
        pending = await DBOS.list_workflows_async(
            status="PENDING", executor_id=executor_id, app_version=DBOS.application_version,
            load_input=False, load_output=False,
        )  # fmt: skip
        for workflow in pending:
            await DBOS.resume_workflow_async(workflow.workflow_id)
        return len(pending)

    async def cancel(self, run_id: str, attempt: int) -> None:
        await DBOS.cancel_workflow_async(workflow_id(run_id, attempt))


__all__ = ["Engine", "Executor", "workflow_id"]
