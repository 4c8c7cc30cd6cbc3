"""The runs service: prompt → plan → durable run, and everything one can ask of a run.

:class:`AgentService` owns the store, the tool registry, the event hub, the engine and the
planner, opens them in :meth:`start` and closes them once in :meth:`close`. The API and the
CLI are thin layers over it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from pathlib import Path
from typing import Any

import msgspec

from llmrelay import SmartLLM
from llmrelay.agents.config import AgentSettings
from llmrelay.agents.engine import Engine
from llmrelay.agents.errors import AgentError, PromptRejected, PromptTooLong
from llmrelay.agents.hub import EventHub, RedisBridge
from llmrelay.agents.plan import Limits, check_plan, parse_plan
from llmrelay.agents.planning import (
    FallbackPlanner,
    LLMPlanner,
    OnStep,
    PatternPlanner,
    PlanJudge,
    Planned,
    Planner,
    PlannerBreaker,
)
from llmrelay.agents.states import FINISHED
from llmrelay.agents.store import NewRun, RunStore
from llmrelay.agents.tools import Tool, ToolRegistry, builtin_registry

POLL_S = 1.0
"""How often a reader re-reads a run's events when nothing in this process woke it (the
run may be executing in another process sharing the database)."""


log = logging.getLogger(__name__)

DRAIN_S = 5.0
"""The most closing waits for runs that have ended to be recorded by the engine."""


class AgentService:
    """Submit, follow, restart, cancel and prune runs; list the tools."""

    def __init__(
        self,
        settings: AgentSettings | None = None,
        *,
        llm: SmartLLM | None = None,
        tools: Iterable[Tool] = (),
        instance: str | None = None,
    ) -> None:
        self.settings = settings or AgentSettings()
        if self.settings.database_url is None:
            self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        self.limits = Limits(
            max_steps=self.settings.max_steps, max_input_bytes=self.settings.max_input_bytes
        )
        self.store = RunStore(self.settings.store_url())
        self.registry: ToolRegistry = builtin_registry(
            self.store, http_allow=self.settings.http_allow, plugins=self.settings.plugins
        )
        for tool in tools:
            self.registry.register(tool)
        self.hub = EventHub()
        self._bridge: RedisBridge | None = None
        self._watch: asyncio.Task[None] | None = None
        self.engine = Engine(self.settings, self.store, self.registry, self.hub, instance=instance)
        self.breaker = PlannerBreaker(
            self.settings.planner.breaker_failures, self.settings.planner.breaker_cooldown_s
        )
        self.planner = self._planner(llm)
        self._started = False
        self._owned_llm: SmartLLM | None = None
        """The SmartLLM :meth:`from_config` made for this service (closed with it)."""

    @classmethod
    def from_config(
        cls,
        path: str | Path,
        *,
        llm: bool = True,
        instance: str | None = None,
        **overrides: Any,
    ) -> AgentService:
        """From ``llmrelay.yaml``: its ``agents:`` section (``overrides`` replace keys of
        it) and, for the LLM planner and judge, a SmartLLM on its ``models:`` that this
        service owns. ``llm=False`` (a command that plans nothing), or ``planner.mode:
        pattern``: no SmartLLM is made, and the pattern planner plans.
        ``redis_url`` falls back to the file's top-level one."""
        from llmrelay.config import check_groups, load_settings

        relay = load_settings(path, sections={"agents": AgentSettings})
        section = relay.agents if isinstance(relay.agents, AgentSettings) else AgentSettings()
        if section.redis_url is None and relay.redis_url is not None:
            overrides.setdefault("redis_url", relay.redis_url)
        settings = section.model_copy(update=overrides) if overrides else section
        wanted = llm and settings.planner.mode != "pattern"
        if not wanted and settings.planner.mode == "llm":  # no SmartLLM: nothing to plan with
            planner = settings.planner.model_copy(update={"mode": "pattern"})
            settings = settings.model_copy(update={"planner": planner})
        if wanted:
            check_groups(relay, str(path), _planner_groups(settings))
        client = SmartLLM.from_settings(relay, source=str(path)) if wanted else None
        service = cls(settings, llm=client, instance=instance)
        service._owned_llm = client
        return service

    def _planner(self, llm: SmartLLM | None) -> Planner:
        pattern = PatternPlanner(self.registry, self.limits)
        mode = self.settings.planner.mode
        if llm is None:
            if mode == "llm":
                raise AgentError("planner mode 'llm' needs a SmartLLM (a models: configuration)")
            return pattern
        settings = self.settings.planner
        judge = (
            PlanJudge(llm, settings.judge, min_confidence=settings.judge_min_confidence)
            if settings.judge
            else None
        )
        planner = LLMPlanner(llm, self.registry, settings, self.limits, judge=judge)
        if mode == "llm":
            return planner
        if mode == "pattern":
            return pattern
        return FallbackPlanner(planner, pattern, self.breaker)

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the engine (it resumes interrupted runs) and start the runs stored but never
        started (a crash between storing a run and starting it)."""
        if self._started:
            return
        self._started = True
        if self.settings.redis_url is not None:
            self._bridge = RedisBridge(self.settings.redis_url, self.hub)
            await self._bridge.start()
        self.engine.open()
        await asyncio.to_thread(self.store.heartbeat, self.engine.executor_id)
        for run_id, attempt in await asyncio.to_thread(self.store.unfinished):
            await self.engine.start_if_missing(run_id, attempt)
        self._watch = asyncio.create_task(self._keep_watch(), name="llmrelay-agents-watch")

    async def _keep_watch(self) -> None:
        """Say this process is alive, and adopt the runs of processes that went silent."""
        lease = self.settings.executor_lease_s
        while True:
            await asyncio.sleep(lease / 4)
            try:
                await asyncio.to_thread(self.store.heartbeat, self.engine.executor_id)
                await self._adopt_silent(time.time() - lease)
            except Exception:  # the database is away: try again next time
                log.warning("agents: the executor watch failed", exc_info=True)

    async def _adopt_silent(self, since: float) -> None:
        for executor in await asyncio.to_thread(self.store.silent_executors, since):
            if executor != self.engine.executor_id and await asyncio.to_thread(
                self.store.bury, executor, since
            ):
                adopted = await self.adopt(executor)
                log.warning("agents: executor %s went silent; %d runs resumed here",
                            executor, adopted)  # fmt: skip

    async def adopt(self, executor_id: str) -> int:
        """Resume the unfinished runs of another process sharing the database (one that
        is known to be dead: its running steps are taken over); how many. Done by itself
        for a process silent for ``executor_lease_s``."""
        return await self.engine.adopt(executor_id)

    async def close(self) -> None:
        """Stop the watch and the engine, then the bridge and the store; each once, here."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
            self._watch = None
        await self.engine.drain(DRAIN_S)
        self.engine.close()
        if self._bridge is not None:
            await self._bridge.close()
            self._bridge = None
        self.store.close()
        if self._owned_llm is not None:
            await self._owned_llm.aclose()
            self._owned_llm = None

    async def __aenter__(self) -> AgentService:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # -- runs -----------------------------------------------------------------------------

    async def plan(self, prompt: str, on_step: OnStep | None = None) -> Planned:
        """The plan the configured planner makes for ``prompt`` (nothing is stored);
        ``on_step`` hears of each step as it is planned (streamed from an LLM planner)."""
        text = prompt.strip()
        if not text:
            raise PromptRejected("prompt: empty")
        if len(text) > self.settings.max_prompt_chars:
            raise PromptTooLong(
                f"prompt: {len(text)} characters, at most {self.settings.max_prompt_chars}"
            )
        return await self.planner.plan(text, on_step)

    async def submit(
        self,
        prompt: str | None = None,
        *,
        plan: Mapping[str, Any] | bytes | None = None,
        on_plan_step: OnStep | None = None,
    ) -> dict[str, Any]:
        """Plan ``prompt`` (or check the given ``plan``), store the run and start it.

        ``on_plan_step`` hears of each step while the planner makes the plan (nothing is
        stored until the plan is whole and checked).
        """
        if plan is not None:
            given = parse_plan(plan)
            check_plan(given, self.registry, self.limits)
            planned = Planned(plan=given, planner="given")
            if prompt is not None and len(prompt) > self.settings.max_prompt_chars:
                raise PromptTooLong(
                    f"prompt: {len(prompt)} characters, at most {self.settings.max_prompt_chars}"
                )
        elif prompt is None:
            raise PromptRejected("prompt: give a prompt or a plan")
        else:
            planned = await self.plan(prompt, on_plan_step)
        run_id = uuid.uuid4().hex
        steps = [
            (s.id, s.tool, self.registry.get(s.tool, s.version).version) for s in planned.plan.steps
        ]
        new = NewRun(
            id=run_id,
            prompt=prompt or "",
            planner=planned.planner,
            planner_note=planned.note,
            plan={
                "steps": [
                    _step_dict(s, v) for s, (_, _, v) in zip(planned.plan.steps, steps, strict=True)
                ]
            },
            steps=steps,
            verdicts=[msgspec.to_builtins(v) for v in planned.verdicts],
        )
        await asyncio.to_thread(self.store.create, new)
        await self.engine.start(run_id, 1)
        return await self.get(run_id)

    async def get(self, run_id: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.store.get, run_id)

    async def list_runs(self, **filters: Any) -> tuple[list[dict[str, Any]], str | None]:
        return await asyncio.to_thread(lambda: self.store.list_runs(**filters))

    async def wait(self, run_id: str) -> dict[str, Any]:
        """The run once it has finished (succeeded, failed, cancelled, outcome unknown)."""
        while True:
            run = await self.get(run_id)
            if run["status"] in FINISHED:
                return run
            await self.hub.wait(run_id, POLL_S)

    async def events(self, run_id: str, after: int = 0) -> list[dict[str, Any]]:
        """The run's events stored so far, after the ``after``-th (its ``seq``)."""
        await self.get(run_id)  # RunNotFound for a run that does not exist
        return await asyncio.to_thread(self.store.events, run_id, after)

    async def follow(self, run_id: str, after: int = 0) -> AsyncIterator[dict[str, Any]]:
        """The run's events from ``after`` on, live, until the run has finished."""
        await self.get(run_id)  # RunNotFound before anything is sent
        while True:
            news = await asyncio.to_thread(self.store.events, run_id, after)
            for event in news:
                after = event["seq"]
                yield event
            if not news:
                run = await self.get(run_id)
                if run["status"] in FINISHED:
                    tail = await asyncio.to_thread(self.store.events, run_id, after)
                    for event in tail:
                        yield event
                    return
                await self.hub.wait(run_id, POLL_S)

    async def restart(self, run_id: str, *, rerun_unknown: bool = False) -> dict[str, Any]:
        """Run again the steps of a finished run that have not succeeded."""
        attempt = await asyncio.to_thread(
            self.store.prepare_restart, run_id, rerun_unknown=rerun_unknown
        )
        self.hub.notify(run_id)
        await self.engine.start(run_id, attempt)
        return await self.get(run_id)

    async def cancel(self, run_id: str) -> dict[str, Any]:
        run = await asyncio.to_thread(self.store.cancel, run_id)
        self.hub.notify(run_id)
        await self.engine.cancel(run_id, int(run["attempt"]))
        return run

    def prune(self, older_than_days: float | None = None) -> dict[str, Any]:
        """Delete runs finished more than the retention ago; counts deleted, sizes left."""
        days = self.settings.retention_days if older_than_days is None else older_than_days
        deleted = self.store.prune(time.time() - days * 86_400)
        return {"deleted": deleted, "sizes": self.store.sizes()}

    def tools(self) -> list[dict[str, Any]]:
        """Every registered tool version, its schemas, policies and metrics."""
        return [
            {
                **tool.describe(),
                "metrics": self.registry.metrics(tool.name, tool.version).snapshot(),
            }
            for tool in self.registry
        ]


def _planner_groups(settings: AgentSettings) -> dict[str, str]:
    """The model groups the planner may ask, by their key under ``agents.planner``."""
    planner = settings.planner
    groups = {f"agents.planner.groups.{level}": group for level, group in planner.groups.items()}
    if planner.judge is not None:
        groups["agents.planner.judge"] = planner.judge
    return groups


def _step_dict(step: Any, version: str) -> dict[str, Any]:
    out: dict[str, Any] = {"id": step.id, "tool": step.tool, "version": version,
                           "input": step.input}  # fmt: skip
    if step.depends_on:
        out["depends_on"] = list(step.depends_on)
    return out


__all__ = ["DRAIN_S", "POLL_S", "AgentService"]
