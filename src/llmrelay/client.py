"""``SmartLLM``: the router behind one object; ``LLMBuilder``: the same, described in code.

Async at the core (``ainvoke``, ``astream``); the sync API (``invoke``, ``stream``) runs the
same coroutines on a background event-loop thread. Use one style per instance: its HTTP
connections belong to the loop that first used them.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
import weakref
from collections.abc import AsyncIterator, Coroutine, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import msgspec

from llmrelay.catalog import Catalog
from llmrelay.config import DeploymentSettings, RelaySettings, load_settings, parse_settings
from llmrelay.errors import ConfigError
from llmrelay.events import Event, EventBus, EventKind
from llmrelay.limits import Limiter, Limits
from llmrelay.providers import Deployment, HttpClient, default_registry
from llmrelay.router import Router, RouterConfig
from llmrelay.routing import (
    BreakerConfig,
    Candidate,
    CircuitBreaker,
    ModelGroup,
    balancer,
    fallback_policy,
)
from llmrelay.scheduling import ScheduledProvider, Scheduler, SchedulerPolicy
from llmrelay.types import ChatRequest, Message, RoutedResponse, StreamEvent

T = TypeVar("T")
Prompt = str | ChatRequest | Sequence[Message] | Sequence[Mapping[str, Any]]

_RATE_LIMIT_ERRORS = ("RateLimited", "WaitTooLong")


class Stats:
    """Counts kept from the router's events (see :meth:`SmartLLM.get_stats`)."""

    def __init__(self) -> None:
        self.requests = 0
        self.primary = 0
        self.fallback = 0
        self.rate_limit_fallbacks = 0
        self.context_fallbacks = 0
        self.exhausted = 0
        self.cost_usd = 0.0
        self.deployments: dict[str, dict[str, Any]] = {}

    def _deployment(self, name: str) -> dict[str, Any]:
        return self.deployments.setdefault(
            name,
            {"calls": 0, "successes": 0, "failures": {}, "skipped": 0, "input_tokens": 0,
             "output_tokens": 0, "cost_usd": 0.0, "latency_s_total": 0.0},
        )  # fmt: skip

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.ATTEMPT_SUCCEEDED:
            self.requests += 1
            if event.attempt == 0:
                self.primary += 1
            else:
                self.fallback += 1
            self.cost_usd += event.cost_usd
            d = self._deployment(event.deployment)
            d["calls"] += 1
            d["successes"] += 1
            d["input_tokens"] += event.input_tokens
            d["output_tokens"] += event.output_tokens
            d["cost_usd"] += event.cost_usd
            d["latency_s_total"] += event.latency_s
        elif kind is EventKind.ATTEMPT_FAILED:
            d = self._deployment(event.deployment)
            d["calls"] += 1
            failures = d["failures"]
            failures[event.error] = failures.get(event.error, 0) + 1
        elif kind is EventKind.SKIPPED:
            self._deployment(event.deployment)["skipped"] += 1
        elif kind is EventKind.FELL_BACK:
            if event.error in _RATE_LIMIT_ERRORS:
                self.rate_limit_fallbacks += 1
            elif event.error == "ContextWindowExceeded":
                self.context_fallbacks += 1
        elif kind is EventKind.EXHAUSTED:
            self.requests += 1
            self.exhausted += 1

    def snapshot(self) -> dict[str, Any]:
        deployments = {}
        for name, d in self.deployments.items():
            out = {k: v for k, v in d.items() if k != "latency_s_total"}
            out["failures"] = dict(d["failures"])
            out["mean_latency_s"] = (
                d["latency_s_total"] / d["successes"] if d["successes"] else None
            )
            deployments[name] = out
        return {
            "requests": self.requests,
            "primary": self.primary,
            "fallback": self.fallback,
            "rate_limit_fallbacks": self.rate_limit_fallbacks,
            "context_fallbacks": self.context_fallbacks,
            "exhausted": self.exhausted,
            "cost_usd": round(self.cost_usd, 8),
            "deployments": deployments,
        }


class _LoopThread:
    """A private event loop on a daemon thread, for the synchronous API."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="llmrelay-sync", daemon=True).start()
                self._loop = loop
            return self._loop

    @property
    def started(self) -> bool:
        return self._loop is not None

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self._running())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.submit(work).result()

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self.run(_next(stream))
            except StopAsyncIteration:
                return

    def close(self) -> None:
        with self._lock:
            if self._loop is not None:
                self._loop.call_soon_threadsafe(self._loop.stop)
                self._loop = None


async def _next(stream: AsyncIterator[T]) -> T:
    return await stream.__anext__()


class SmartLLM:
    """Calls that do not fail: routing, scheduling, fallbacks and breakers behind one object."""

    def __init__(
        self,
        router: Router,
        stats: Stats,
        *,
        default_group: str = "default",
        client: HttpClient | None = None,
    ) -> None:
        self.router = router
        self.stats = stats
        self.default_group = default_group
        self._client = client
        self._sync = _LoopThread()
        # Sync users rarely close: at exit, close what was opened on the private loop.
        self._finalizer = weakref.finalize(self, _close_sync, self._sync, router, client)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_config(cls, path: str | Path) -> SmartLLM:
        """From a YAML file (see :mod:`llmrelay.config`)."""
        return cls.from_settings(load_settings(path), source=str(path))

    @classmethod
    def from_settings(cls, settings: RelaySettings, *, source: str = "config") -> SmartLLM:
        return _Assembly(settings, source).build()

    @classmethod
    def for_tier(cls, tier: str = "tier1", *, env: Mapping[str, str] | None = None) -> SmartLLM:
        """A primary and fallbacks from the providers whose keys are in the environment.

        Reads ``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``, ``GEMINI_API_KEY`` /
        ``GOOGLE_API_KEY`` and ``OLLAMA_BASE_URL`` (and ``*_BASE_URL`` overrides), takes each
        model's limits for ``tier`` from the catalog, and adds a 1M-token model as the
        context fallback when one of its providers is available.
        """
        return cls.from_settings(_tier_settings(tier, env or os.environ), source="environment")

    # -- calls ----------------------------------------------------------------------------

    async def ainvoke(
        self, prompt: Prompt, *, model: str | None = None, **params: Any
    ) -> RoutedResponse:
        """Answer ``prompt`` (a string, messages or a request) from model group ``model``."""
        return await self.router.send(_request(prompt, params), model or self.default_group)

    def invoke(self, prompt: Prompt, *, model: str | None = None, **params: Any) -> RoutedResponse:
        return self._sync.run(self.ainvoke(prompt, model=model, **params))

    async def astream(
        self, prompt: Prompt, *, model: str | None = None, **params: Any
    ) -> AsyncIterator[StreamEvent]:
        async for event in self.router.stream(
            _request(prompt, params), model or self.default_group
        ):
            yield event

    def stream(
        self, prompt: Prompt, *, model: str | None = None, **params: Any
    ) -> Iterator[StreamEvent]:
        return self._sync.iterate(self.astream(prompt, model=model, **params))

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``work`` on this client's background loop (where the sync API runs).

        Its connections and queues then live on that one loop, so a single instance can
        serve callers on several event loops: ``await asyncio.wrap_future(llm.submit(
        llm.ainvoke("hi")))`` from any of them.
        """
        return self._sync.submit(work)

    # -- state ----------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Primary, fallback and rate-limit-fallback counts, cost, per-deployment figures."""
        stats = self.stats.snapshot()
        for candidate in self.router.candidates():
            entry = stats["deployments"].setdefault(candidate.id, {})
            entry["breaker"] = candidate.breaker.state.value
            entry["in_flight"] = candidate.in_flight
        return stats

    def breaker_states(self) -> dict[str, str]:
        return {c.id: c.breaker.state.value for c in self.router.candidates()}

    async def aclose(self) -> None:
        await self.router.aclose()
        if self._client is not None:
            await self._client.aclose()

    def close(self) -> None:
        self._finalizer.detach()
        _close_sync(self._sync, self.router, self._client)

    async def __aenter__(self) -> SmartLLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> SmartLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _close_sync(sync: _LoopThread, router: Router, client: HttpClient | None) -> None:
    """Close the router and client on the private loop, if it ever ran, then stop it."""
    if sync.started:

        async def close() -> None:
            await router.aclose()
            if client is not None:
                await client.aclose()

        sync.run(close())
    sync.close()


def _request(prompt: Prompt, params: Mapping[str, Any]) -> ChatRequest:
    if isinstance(prompt, ChatRequest):
        request = prompt
    elif isinstance(prompt, str):
        request = ChatRequest(messages=[Message(role="user", content=prompt)])
    else:
        messages = [m if isinstance(m, Message) else msgspec.convert(m, Message) for m in prompt]
        request = ChatRequest(messages=messages)
    if params:
        try:
            request = msgspec.structs.replace(request, **params)
        except TypeError as exc:
            raise TypeError(f"unknown request parameter: {exc}") from None
    return request


class _Assembly:
    """Turns settings into a router: providers, schedulers, candidates, groups."""

    def __init__(self, settings: RelaySettings, source: str) -> None:
        self.settings = settings
        self.source = source
        self.catalog = Catalog.default().extend(settings.catalog, source=source)
        self.client = HttpClient()
        self.registry = default_registry()
        self.events = EventBus()
        self.scheduler = self._scheduler()
        self._built: dict[tuple[Any, ...], Candidate] = {}

    def _scheduler(self) -> Scheduler:
        s = self.settings.scheduler
        policy = SchedulerPolicy(
            max_wait_before_fallback=s.max_wait_before_fallback,
            max_wait_seconds=s.max_wait_seconds,
            max_rate_limit_retries=s.max_rate_limit_retries,
        )
        if self.settings.redis_url:
            from llmrelay.limits.redis import RedisBackend

            return Scheduler(Limiter(RedisBackend(self.settings.redis_url)), policy)
        return Scheduler(Limiter(), policy)

    def build(self) -> SmartLLM:
        routing = self.settings.routing
        try:
            policy = fallback_policy(routing.policy)
            groups = {
                name: ModelGroup(
                    name=name,
                    primary=self._candidates(g.primary, f"models.{name}.primary"),
                    fallbacks=self._candidates(g.fallbacks, f"models.{name}.fallbacks"),
                    content_fallbacks=self._candidates(
                        g.content_fallbacks, f"models.{name}.content_fallbacks"
                    ),
                    balancer=balancer(g.load_balancing),
                )
                for name, g in self.settings.models.items()
            }
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None
        config = RouterConfig(
            retries=routing.retries,
            retry_backoff_s=routing.retry_backoff_s,
            context_margin=routing.context_margin,
            hedge_after_s=routing.hedge_after_s,
            hedge_quantile=routing.hedge_quantile,
            hedge_budget=routing.hedge_budget,
        )
        router = Router(groups, policy=policy, config=config, events=self.events)
        stats = Stats()
        self.events.subscribe(stats)
        default = "default" if "default" in groups else next(iter(groups))
        return SmartLLM(router, stats, default_group=default, client=self.client)

    def _candidates(self, specs: list[DeploymentSettings], where: str) -> list[Candidate]:
        return [self._candidate(spec, f"{where}.{i}") for i, spec in enumerate(specs)]

    def _candidate(self, spec: DeploymentSettings, where: str) -> Candidate:
        identity = (spec.provider, spec.model, spec.base_url, spec.api_key, spec.name)
        if identity in self._built:  # the same deployment in two groups shares its state
            return self._built[identity]
        info = self.catalog.get(spec.provider, spec.model)
        window = spec.context_window or (info.context_window if info else None)
        if window is None:
            raise ConfigError(
                f"{self.source}: {where}: {spec.provider}/{spec.model} is not in the catalog; "
                "set context_window (and max_output_tokens) for it"
            )
        deployment = Deployment(
            provider=spec.provider,
            model=spec.model,
            api_key=spec.api_key,
            base_url=spec.base_url,
            name=spec.name,
            headers=dict(spec.headers),
        )
        provider = self.registry.create(deployment, self.client)
        scheduled = ScheduledProvider(provider, self._limits(spec), scheduler=self.scheduler)
        b = self.settings.routing.breaker
        candidate = Candidate(
            scheduled=scheduled,
            context_window=window,
            max_output_tokens=spec.max_output_tokens or (info.max_output_tokens if info else 4096),
            breaker=CircuitBreaker(
                scheduled.deployment,
                BreakerConfig(
                    failure_threshold=b.failure_threshold,
                    cooldown_s=b.cooldown_s,
                    half_open_probes=b.half_open_probes,
                ),
                on_change=self._breaker_changed,
            ),
            price=info.price if info else None,
            weight=spec.weight,
        )
        self._built[identity] = candidate
        return candidate

    def _limits(self, spec: DeploymentSettings) -> Limits:
        s = self.settings.scheduler
        explicit = {k: getattr(spec, k) for k in ("rpm", "tpm", "itpm", "otpm", "rpd")}
        base: dict[str, Any] = {}
        info = self.catalog.get(spec.provider, spec.model)
        tier = spec.tier or self.settings.tier
        if info is not None and tier in info.limits:
            base = msgspec.structs.asdict(info.limits[tier])
        merged = {k: explicit[k] if explicit[k] is not None else base.get(k) for k in explicit}
        return Limits(
            **merged,
            safety_margin=s.safety_margin,
            token_margin=s.token_margin,
            min_spacing=s.min_spacing,
            day_reset_tz=self.catalog.day_resets.get(spec.provider, "UTC"),
        )

    def _breaker_changed(self, deployment: str, old: Any, new: Any) -> None:
        self.events.emit(Event(kind=EventKind.BREAKER_CHANGED, deployment=deployment,
                               message=f"{old.value} -> {new.value}"))  # fmt: skip


# -- for_tier ---------------------------------------------------------------------------

_TIER_MODELS = (
    # provider, key variables, base-URL variable, primary model, 1M-context model
    ("openai", ("OPENAI_API_KEY",), "OPENAI_BASE_URL", "gpt-4o-mini", "gpt-4.1-mini"),
    ("anthropic", ("ANTHROPIC_API_KEY",), "ANTHROPIC_BASE_URL", "claude-haiku-4-5", None),
    ("gemini", ("GEMINI_API_KEY", "GOOGLE_API_KEY"), "GEMINI_BASE_URL", "gemini-2.5-flash",
     "gemini-2.5-flash"),
)  # fmt: skip


def _tier_settings(tier: str, env: Mapping[str, str]) -> RelaySettings:
    primaries: list[dict[str, Any]] = []
    large: list[dict[str, Any]] = []
    for provider, key_vars, url_var, model, big in _TIER_MODELS:
        key = next((env[v] for v in key_vars if env.get(v)), None)
        if key is None:
            continue
        common = {"provider": provider, "api_key": key, "base_url": env.get(url_var) or None}
        primaries.append({**common, "model": model})
        if big is not None and big != model:
            large.append({**common, "model": big})
        elif big is not None:
            large.append(primaries[-1])
    if env.get("OLLAMA_BASE_URL"):
        primaries.append({"provider": "ollama", "model": env.get("OLLAMA_MODEL", "llama3.1:8b"),
                          "base_url": env["OLLAMA_BASE_URL"], "context_window": 131072,
                          "max_output_tokens": 8192})  # fmt: skip
    if not primaries:
        raise ConfigError(
            "environment: no provider configured; set OPENAI_API_KEY, ANTHROPIC_API_KEY, "
            "GEMINI_API_KEY (or GOOGLE_API_KEY) or OLLAMA_BASE_URL"
        )
    fallbacks = [*primaries[1:], *(d for d in large if d not in primaries)]
    return parse_settings(
        {"tier": tier, "models": {"default": {"primary": primaries[:1], "fallbacks": fallbacks}}},
        "environment",
    )


__all__ = ["SmartLLM", "Stats"]
