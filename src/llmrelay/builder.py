"""From a description to a working :class:`~llmrelay.SmartLLM`.

:class:`LLMBuilder` describes one in code; it fills the same settings the YAML file does
and is validated the same way, so every key of the file works here under the same name
(a deployment's ``base_url``, ``api_key``, ``rpm``, ``context_window``, ``timeouts``…;
``with_routing``/``with_scheduler``/``with_timeouts`` take the fields of the runtime
structs). :func:`tier_settings` describes one from the environment alone. :func:`assemble`
turns validated settings into the parts a ``SmartLLM`` owns: one HTTP client, one
scheduler, one event bus, and a provider adapter, limits and breaker per deployment.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from llmrelay.budget import COUNTERS, Budgets
from llmrelay.cache.exact import ExactCache
from llmrelay.cache.responses import ResponseCache
from llmrelay.cache.stores import StoreSettings, open_store
from llmrelay.catalog import Catalog
from llmrelay.client import SmartLLM, Stats
from llmrelay.config import DeploymentSettings, RelaySettings, import_factory, parse_settings
from llmrelay.cost import LEDGERS, Ledger, Spending
from llmrelay.errors import ConfigError, UnknownProvider
from llmrelay.events import Event, EventBus, EventKind
from llmrelay.limits import LimitBackend, Limiter, Limits
from llmrelay.observe import Observer, Sink
from llmrelay.observe.live import RouterLive
from llmrelay.observe.registry import open_sink
from llmrelay.providers import (
    AnthropicProvider,
    Deployment,
    GeminiProvider,
    HttpClient,
    HttpProvider,
    OllamaProvider,
    OpenAIProvider,
    default_registry,
)
from llmrelay.providers.registry import ProviderFactory
from llmrelay.router import Router
from llmrelay.routing import Candidate, CircuitBreaker, ModelGroup, balancer, fallback_policy
from llmrelay.scheduling import ScheduledProvider, Scheduler


class LLMBuilder:
    """``LLMBuilder().with_tier("tier1").with_primary("openai", "gpt-4o-mini")
    .with_fallback("anthropic", "claude-haiku-4-5").with_context_fallback().build()``"""

    def __init__(self) -> None:
        self._data: dict[str, Any] = {"tier": "tier1", "models": {}}
        self._providers: dict[str, ProviderFactory] = {}
        self._sinks: list[Sink] = []

    def _group(self, name: str) -> dict[str, Any]:
        groups: dict[str, dict[str, Any]] = self._data["models"]
        return groups.setdefault(name, {"primary": [], "fallbacks": []})

    def _section(self, name: str) -> dict[str, Any]:
        section: dict[str, Any] = self._data.setdefault(name, {})
        return section

    def with_tier(self, tier: str) -> LLMBuilder:
        self._data["tier"] = tier
        return self

    def with_primary(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Add a primary deployment (several primaries are load-balanced)."""
        self._group(group)["primary"].append({"provider": provider, "model": model, **deployment})
        return self

    def with_fallback(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Add a fallback, tried after the primaries in the order added."""
        self._group(group)["fallbacks"].append({"provider": provider, "model": model, **deployment})
        return self

    def with_content_fallback(
        self, provider: str, model: str, *, group: str = "default", **deployment: Any
    ) -> LLMBuilder:
        """Where to go when a deployment refuses on content policy."""
        self._group(group).setdefault("content_fallbacks", []).append(
            {"provider": provider, "model": model, **deployment}
        )
        return self

    def with_context_fallback(
        self,
        provider: str | None = None,
        model: str | None = None,
        *,
        group: str = "default",
        **deployment: Any,
    ) -> LLMBuilder:
        """Route prompts too long for a deployment to a larger window, before any call.

        With ``provider`` and ``model``, that deployment is added as the large-context
        fallback; without, the group's own deployments are ranked by window.
        """
        if provider is not None and model is not None:
            self.with_fallback(provider, model, group=group, **deployment)
        return self

    def with_load_balancing(self, strategy: str, *, group: str = "default") -> LLMBuilder:
        """``round_robin``, ``least_loaded``, ``weighted``, ``latency`` or ``headroom``."""
        self._group(group)["load_balancing"] = strategy
        return self

    def with_policy(self, policy: str) -> LLMBuilder:
        """``smart`` (default), ``sequential`` or ``cost``."""
        self._section("routing")["policy"] = policy
        return self

    def with_routing(self, **routing: Any) -> LLMBuilder:
        """Fields of :class:`~llmrelay.router.RouterConfig` (``retries``,
        ``retry_backoff_s``, ``retry_backoff_max_s``, ``retry_jitter``, ``stay_within_s``,
        ``context_margin``, ``hedge_after_s``, ``hedge_quantile``, ``hedge_budget``)."""
        self._section("routing").update(routing)
        return self

    def with_retries(self, retries: int, **backoff: Any) -> LLMBuilder:
        """``retries`` extra tries of a deployment after a retryable error; ``backoff``:
        ``retry_backoff_s``, ``retry_backoff_max_s``, ``retry_jitter``, ``stay_within_s``."""
        return self.with_routing(retries=retries, **backoff)

    def with_hedging(self, **hedging: Any) -> LLMBuilder:
        """Also send to the next deployment when the first has not answered after
        ``hedge_after_s`` seconds (or its observed latency quantile ``hedge_quantile``,
        e.g. 0.95); at most ``hedge_budget`` of the requests are hedged."""
        return self.with_routing(**hedging)

    def with_circuit_breaker(self, **breaker: Any) -> LLMBuilder:
        """``failure_threshold``, ``cooldown_s``, ``half_open_probes``."""
        self._section("routing").setdefault("breaker", {}).update(breaker)
        return self

    def with_scheduler(self, **scheduler: Any) -> LLMBuilder:
        """``max_wait_before_fallback``, ``max_wait_seconds``, and the pacing of every
        deployment: ``safety_margin``, ``token_margin``, ``min_spacing``,
        ``short_window_s``, ``window_pad``."""
        self._section("scheduler").update(scheduler)
        return self

    def with_timeouts(self, **timeouts: Any) -> LLMBuilder:
        """``connect``, ``first_byte``, ``idle`` seconds for every deployment (a
        deployment's own ``timeouts={...}`` overrides them)."""
        self._section("timeouts").update(timeouts)
        return self

    def with_provider(self, name: str, factory: ProviderFactory) -> LLMBuilder:
        """Register an adapter: deployments may then use ``provider=name``. ``factory`` is
        a class or callable taking ``(deployment, client)`` (e.g. an ``HttpProvider``
        subclass)."""
        self._providers[name.strip().lower()] = factory
        return self

    def with_redis(self, url: str) -> LLMBuilder:
        """Share rate limits with every process using the same Redis."""
        self._data["redis_url"] = url
        return self

    def with_budget(
        self,
        usd: float,
        period: str = "day",
        *,
        scope: str = "global",
        value: str | None = None,
        name: str = "",
        **budget: Any,
    ) -> LLMBuilder:
        """Spend at most ``usd`` per ``period`` (``day``/``month``) for ``scope``
        (``global``, ``key``, ``user``, ``tag``; ``value``: one of them, else each).
        Call again for more budgets; ``budget`` sets the section's other keys
        (``timezone``, ``downgrade_at``, ``thresholds``, ``store``, ``path``, ``redis_url``)."""
        section = self._section("budget")
        limit = {"usd": usd, "period": period, "scope": scope, "value": value, "name": name}
        section.setdefault("limits", []).append(limit)
        section.update(budget)
        return self

    def with_downgrade(self, *targets: str, group: str = "default") -> LLMBuilder:
        """Once a budget is past its ``downgrade_at`` share, send ``group``'s requests to
        the deployments of the ``targets`` groups first."""
        self._group(group).setdefault("downgrade", []).extend(targets)
        return self

    def with_ledger(self, ledger: str = "sqlite", **spend: Any) -> LLMBuilder:
        """Record every call in the spend ledger (``sqlite`` with ``path=``, or
        ``postgres`` with ``database_url=``)."""
        self._section("spend").update({"ledger": ledger, **spend})
        return self

    def with_cache(self, backend: str = "memory", **exact: Any) -> LLMBuilder:
        """The exact response cache: ``memory``, ``sqlite`` or ``redis``; ``exact``:
        ``ttl_s``, ``max_bytes``, ``path``, ``redis_url``."""
        cache = self._section("cache")
        cache.setdefault("exact", {}).update({"backend": backend, **exact})
        return self

    def with_semantic_cache(self, backend: str = "sqlite", **semantic: Any) -> LLMBuilder:
        """The semantic cache (extra ``semantic``): ``sqlite`` or ``redis``; ``semantic``:
        ``threshold``, ``ttl_s``, ``path``, ``redis_url``."""
        cache = self._section("cache")
        cache.setdefault("semantic", {}).update({"backend": backend, **semantic})
        return self

    def with_observer(self, sink: Sink | str, **settings: Any) -> LLMBuilder:
        """Feed the router's events to ``sink``: an object with ``handle(event)`` and
        ``close()`` (see :mod:`llmrelay.observe`), or the name of a built-in sink —
        ``logs``, ``prometheus``, ``otel``, ``langfuse``, ``analytics`` — with the keys of
        its ``observe.<name>:`` section."""
        if isinstance(sink, str):
            self._section("observe").setdefault(sink, {}).update(settings)
        elif settings:
            raise TypeError("settings are given to a built-in sink by name, not to an object")
        else:
            self._sinks.append(sink)
        return self

    def with_catalog(self, entries: dict[str, dict[str, Any]]) -> LLMBuilder:
        """Override or add catalog entries (``{"provider/model": {...}}``)."""
        self._section("catalog").update(entries)
        return self

    def settings(self) -> dict[str, Any]:
        """What ``build`` validates: the same shape as the YAML file."""
        return {k: v for k, v in self._data.items() if v or k == "models"}

    def build(self) -> SmartLLM:
        settings = parse_settings(self.settings(), "LLMBuilder", providers=self._providers)
        return SmartLLM(**assemble(settings, "LLMBuilder", self._providers, self._sinks))


def assemble(
    settings: RelaySettings,
    source: str,
    providers: Mapping[str, ProviderFactory] | None = None,
    sinks: Sequence[Sink] = (),
) -> dict[str, Any]:
    """The keyword arguments of :class:`SmartLLM` that ``settings`` describe.

    ``providers`` are adapters registered in code, besides those under ``providers:``;
    ``sinks`` are observers given as objects, besides those under ``observe:``.
    """
    return _Assembly(settings, source, providers or {}).build(sinks)


class _Assembly:
    """Turns settings into a router: providers, one scheduler, candidates, groups."""

    def __init__(
        self, settings: RelaySettings, source: str, providers: Mapping[str, ProviderFactory]
    ) -> None:
        self.settings = settings
        self.source = source
        self.catalog: Catalog = settings.model_catalog()
        self.registry = default_registry()
        for name, factory in {**settings.provider_factories(), **providers}.items():
            self.registry.register(name, factory)
        self.events = EventBus()
        self.stats = Stats()
        self.events.subscribe(self.stats)
        self.client = HttpClient()
        self.scheduler = Scheduler(
            Limiter(self._backend()), settings.scheduler.runtime(), events=self.events
        )
        self._built: dict[tuple[Any, ...], Candidate] = {}

    def _backend(self) -> LimitBackend | None:
        if self.settings.redis_url is None:
            return None  # the limiter's own in-memory backend
        from llmrelay.limits.redis import RedisBackend  # the optional ``redis`` extra

        return RedisBackend(self.settings.redis_url)

    def build(self, sinks: Sequence[Sink]) -> dict[str, Any]:
        try:
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
            for name, g in self.settings.models.items():
                lowered = {n.lower(): group for n, group in groups.items()}
                groups[name].downgrade = [lowered[t.lower()] for t in g.downgrade]
            routing = self.settings.routing
            spending = self._spending()
            router = Router(
                groups,
                policy=fallback_policy(routing.policy),
                config=routing.runtime(),
                events=self.events,
                meter=spending,
            )
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {exc}") from None
        default = "default" if "default" in groups else next(iter(groups))
        cache = self._cache()
        observer = self._observer(sinks)
        if observer is not None:
            budgets = spending.budgets if spending is not None else None
            observer.attach(RouterLive(router, self.scheduler, budgets))
            self.events.subscribe(observer)
        return {"router": router, "stats": self.stats, "scheduler": self.scheduler,
                "client": self.client, "default_group": default, "spending": spending,
                "cache": cache, "observer": observer}  # fmt: skip

    def _observer(self, given: Sequence[Sink]) -> Observer | None:
        """The sinks configured under ``observe:`` and those given in code, if any."""
        settings = self.settings.observe
        opened: list[Sink] = []
        try:
            for name, spec in settings.configured():
                opened.append(self._open_sink(name, spec))
            for name, path in settings.sinks.items():
                made = import_factory(path)()
                if not isinstance(made, Sink):
                    where = f"{self.source}: observe.sinks.{name}"
                    raise ConfigError(f"{where}: {path} made {made!r}, which is not a sink "
                                      "(it needs handle(event) and close())")  # fmt: skip
                opened.append(made)
        except BaseException:
            for sink in opened:  # the ones opened before the failure (a metrics port…)
                sink.close()
            raise
        sinks = [*given, *opened]
        return Observer(sinks, queue_size=settings.queue_size) if sinks else None

    def _open_sink(self, name: str, spec: Any) -> Sink:
        try:
            return open_sink(name, spec)
        except ImportError as exc:
            raise ConfigError(
                f"{self.source}: observe.{name} needs an extra that is not "
                f"installed (pip install 'llmrelay[{name}]'): {exc}"
            ) from None
        except (ValueError, OSError) as exc:
            raise ConfigError(f"{self.source}: observe.{name}: {exc}") from None

    def _spending(self) -> Spending | None:
        """Budgets and the ledger, when configured (else the router prices calls alone)."""
        budget, spend = self.settings.budget, self.settings.spend
        budgets = None
        if budget is not None:
            redis_url = budget.redis_url or self.settings.redis_url
            if budget.store == "redis" and redis_url is None:
                raise ConfigError(f"{self.source}: budget.store: redis needs budget.redis_url "
                                  "or redis_url")  # fmt: skip
            counters = COUNTERS[budget.store](path=budget.path, redis_url=redis_url)
            budgets = Budgets([limit.runtime() for limit in budget.limits], counters,
                              policy=budget.policy(), events=self.events)  # fmt: skip
        ledger = None
        if spend.ledger != "none":
            database_url = spend.database_url or os.environ.get("DATABASE_URL")
            if spend.ledger == "postgres" and not database_url:
                raise ConfigError(f"{self.source}: spend.database_url: required for "
                                  "ledger: postgres (or set DATABASE_URL)")  # fmt: skip
            store = LEDGERS[spend.ledger](path=spend.path, database_url=database_url)
            ledger = Ledger(store, flush_s=spend.flush_s)
        if budgets is None and ledger is None:
            return None
        return Spending(budgets, ledger)

    def _cache(self) -> ResponseCache | None:
        """The response caches, when configured."""
        settings = self.settings.cache
        exact = None
        if settings.exact.backend != "none":
            spec = settings.exact
            where = StoreSettings(max_bytes=spec.max_bytes, path=Path(spec.path),
                                  redis_url=spec.redis_url or self.settings.redis_url)  # fmt: skip
            exact = ExactCache(open_store(spec.backend, where), ttl_s=spec.ttl_s)
        semantic = self._semantic_cache()
        if exact is None and semantic is None:
            return None
        return ResponseCache(exact, semantic, any_temperature=settings.any_temperature)

    def _semantic_cache(self) -> Any:
        """The semantic cache (extra ``semantic``; the model loads on first use)."""
        spec = self.settings.cache.semantic
        if spec.backend == "none":
            return None
        try:  # numpy and the model come with the ``semantic`` extra
            from llmrelay.cache.embed import MiniLM
            from llmrelay.cache.semantic import DEFAULT_THRESHOLD, SemanticCache
            from llmrelay.cache.vectors import RedisVectorStore, SqliteVectorStore, VectorStore
        except ImportError as exc:
            raise ConfigError(
                f"{self.source}: cache.semantic needs the semantic extra "
                f"(make install, or pip install 'llmrelay[semantic]'): {exc}"
            ) from None
        store: VectorStore
        if spec.backend == "redis":
            url = spec.redis_url or self.settings.redis_url
            if url is None:
                raise ConfigError(f"{self.source}: cache.semantic.redis_url: required for "
                                  "backend redis (or set redis_url)")  # fmt: skip
            store = RedisVectorStore(url)
        else:
            path = Path(spec.path).expanduser()
            path.parent.mkdir(parents=True, exist_ok=True)
            store = SqliteVectorStore(path)
        threshold = spec.threshold if spec.threshold is not None else DEFAULT_THRESHOLD
        return SemanticCache(MiniLM(), store, threshold=threshold, ttl_s=spec.ttl_s)

    def _candidates(self, specs: list[DeploymentSettings], where: str) -> list[Candidate]:
        return [self._candidate(spec, f"{where}.{i}") for i, spec in enumerate(specs)]

    def _candidate(self, spec: DeploymentSettings, where: str) -> Candidate:
        identity = (spec.provider, spec.model, spec.base_url, spec.api_key, spec.name)
        if identity in self._built:  # the same deployment in two groups shares its state
            return self._built[identity]
        info = self.catalog.get(spec.provider, spec.model)
        deployment = Deployment(
            provider=spec.provider,
            model=spec.model,
            api_key=spec.api_key,
            base_url=spec.base_url,
            name=spec.name,
            headers=dict(spec.headers),
            timeouts=self.settings.timeouts.runtime(spec.timeouts),
        )
        try:
            provider = self.registry.create(deployment, self.client)
        except (ValueError, UnknownProvider) as exc:  # e.g. a *_BASE_URL that is no URL
            raise ConfigError(f"{self.source}: {where}: {exc}") from None
        scheduled = ScheduledProvider(provider, self._limits(spec), scheduler=self.scheduler)
        candidate = Candidate(
            scheduled=scheduled,
            context_window=spec.context_window or (info.context_window if info else None),
            max_output_tokens=spec.max_output_tokens or (info.max_output_tokens if info else None),
            breaker=CircuitBreaker(
                scheduled.deployment,
                self.settings.routing.breaker.runtime(),
                on_change=self._breaker_changed,
            ),
            price=info.price if info else None,
            weight=spec.weight,
        )
        self._built[identity] = candidate
        return candidate

    def _limits(self, spec: DeploymentSettings) -> Limits:
        """The deployment's own limits, else the catalog's for its tier; none for a model
        the catalog does not know."""
        explicit = spec.limit_values()
        info = self.catalog.get(spec.provider, spec.model)
        tier = info.limits.get(spec.tier or self.settings.tier) if info else None
        catalog = {name: getattr(tier, name) for name in explicit} if tier else {}
        merged = {k: v if v is not None else catalog.get(k) for k, v in explicit.items()}
        zone = self.catalog.day_resets.get(spec.provider, "UTC")
        return self.settings.scheduler.limits(**merged, day_reset_tz=zone)

    def _breaker_changed(self, deployment: str, old: Any, new: Any) -> None:
        self.events.emit(Event(kind=EventKind.BREAKER_CHANGED, deployment=deployment,
                               message=f"{old.value} -> {new.value}"))  # fmt: skip


# -- from the environment alone ------------------------------------------------------------

_TIER_MODELS: tuple[tuple[type[HttpProvider], str, str | None], ...] = (
    # adapter, primary model, 1M-context model
    (OpenAIProvider, "gpt-4o-mini", "gpt-4.1-mini"),
    (AnthropicProvider, "claude-haiku-4-5", None),
    (GeminiProvider, "gemini-2.5-flash", "gemini-2.5-flash"),
)
_OLLAMA_MODEL = "llama3.1:8b"


def tier_settings(tier: str, env: Mapping[str, str] | None = None) -> RelaySettings:
    """A primary and fallbacks from the providers whose credentials are in ``env``.

    The variables are the adapters' own (``API_KEY_ENV``, ``BASE_URL_ENV``). With the
    process environment (``env=None``) the adapters read base URLs themselves; with an
    explicit mapping, base URLs are taken from it too. Ollama is used when its base-URL
    variable is set (model: ``OLLAMA_MODEL``, default ``llama3.1:8b``).
    """
    explicit = env is not None
    variables: Mapping[str, str] = os.environ if env is None else env

    def first(names: tuple[str, ...]) -> str | None:
        return next((variables[n] for n in names if variables.get(n, "").strip()), None)

    def deployment(adapter: type[HttpProvider], model: str, **extra: Any) -> dict[str, Any]:
        base_url = first(adapter.BASE_URL_ENV) if explicit else None
        return {"provider": adapter.name, "model": model, "base_url": base_url, **extra}

    primaries: list[dict[str, Any]] = []
    large: list[dict[str, Any]] = []
    for adapter, model, big in _TIER_MODELS:
        key = first(adapter.API_KEY_ENV)
        if key is None:
            continue
        primaries.append(deployment(adapter, model, api_key=key))
        if big is not None:
            large.append(deployment(adapter, big, api_key=key))
    if first(OllamaProvider.BASE_URL_ENV) is not None:
        model = variables.get("OLLAMA_MODEL") or _OLLAMA_MODEL
        primaries.append(deployment(OllamaProvider, model))
    if not primaries:
        wanted = [*(n for a, _, _ in _TIER_MODELS for n in a.API_KEY_ENV),
                  *OllamaProvider.BASE_URL_ENV]  # fmt: skip
        raise ConfigError(f"environment: no provider configured; set {', '.join(wanted)}")
    fallbacks = [*primaries[1:], *(d for d in large if d not in primaries)]
    return parse_settings(
        {"tier": tier, "models": {"default": {"primary": primaries[:1], "fallbacks": fallbacks}}},
        "environment",
    )


__all__ = ["LLMBuilder", "assemble", "tier_settings"]
