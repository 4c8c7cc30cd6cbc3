"""The configuration of a :class:`~llmrelay.SmartLLM`: YAML (or the builder) → settings.

Validated once, at start, by pydantic: every error names the file (or ``LLMBuilder``, or
``environment``), the key and what was expected. ``${VAR}`` and ``${VAR:-default}`` are
replaced from the environment (a missing variable without a default is an error naming
it; an empty value means "not set"). Keys — section names, model group names, provider
names — are case-insensitive.

.. code-block:: yaml

    tier: tier1
    models:
      default:
        primary:
          - {provider: openai, model: gpt-4o-mini, api_key: "${OPENAI_API_KEY}"}
        fallbacks:
          - {provider: anthropic, model: claude-haiku-4-5}
          - {provider: ollama, model: llama3.1:8b, timeouts: {first_byte: 300}}
    routing: {policy: smart, retries: 2, context_margin: 0.9, breaker: {cooldown_s: 30}}
    scheduler: {max_wait_before_fallback: 90, safety_margin: 2}
    timeouts: {connect: 10, first_byte: 120, idle: 60}
    providers: {mycorp: "mypkg.llm:MyCorpProvider"}
    budget:
      timezone: Europe/Paris
      store: sqlite                 # memory (default), sqlite or redis
      limits:
        - {usd: 50, period: day}    # global
        - {usd: 5, period: month, scope: user}
    spend: {ledger: sqlite, path: ~/.llmrelay/spend.sqlite}
    cache:
      exact: {backend: memory, ttl_s: 3600, max_bytes: 67108864}
      semantic: {backend: sqlite}

Each option is defined once, by the runtime struct that uses it; the sections here are
derived from those structs (names, types, defaults, docstrings and checks):

- ``routing:`` — :class:`~llmrelay.router.RouterConfig`, plus ``policy`` and ``breaker:``
  (:class:`~llmrelay.routing.BreakerConfig`);
- ``scheduler:`` — :class:`~llmrelay.scheduling.SchedulerPolicy` and the pacing fields of
  :class:`~llmrelay.limits.Limits` (``safety_margin``, ``token_margin``, ``min_spacing``,
  ``short_window_s``, ``window_pad``);
- ``timeouts:`` — :class:`~llmrelay.providers.Timeouts`, also per deployment (a
  deployment's own keys override the global ones);
- a deployment's ``rpm``, ``tpm``, ``itpm``, ``otpm``, ``rpd`` — :class:`Limits` again;
- ``budget:`` — :class:`~llmrelay.budget.BudgetPolicy`, and each of its ``limits`` a
  :class:`~llmrelay.budget.BudgetLimit`.

A deployment's missing limits, window and prices come from the catalog for its ``tier``
(a tier is known when a model of that provider has it). A model the catalog does not know
is accepted as it is: its window is asked from the server (or learned from a context
error), and it has no limits unless given.

Credentials and endpoints left out of a deployment are read from the environment by the
provider adapter, as the official SDKs do: ``OPENAI_API_KEY`` / ``OPENAI_BASE_URL``,
``ANTHROPIC_API_KEY`` / ``ANTHROPIC_BASE_URL``, ``GEMINI_API_KEY`` or ``GOOGLE_API_KEY`` /
``GEMINI_BASE_URL``, and ``OLLAMA_BASE_URL`` (or ``OLLAMA_HOST``) for Ollama.

``providers:`` registers more adapters: a name and the import path
(``package.module:Class``) of a class or factory called as ``factory(deployment, client)``.
"""

from __future__ import annotations

import ast
import inspect
import itertools
import os
import re
import textwrap
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TypeVar
from urllib.parse import urlsplit

import msgspec
import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from llmrelay.analytics.settings import AnalyticsSettings
from llmrelay.budget import BudgetLimit, BudgetPolicy
from llmrelay.catalog import Catalog
from llmrelay.errors import ConfigError
from llmrelay.imports import import_callable
from llmrelay.limits import DIMENSIONS, Limits
from llmrelay.observe import DEFAULT_QUEUE_SIZE
from llmrelay.observe.langfuse import LangfuseSettings
from llmrelay.observe.logs import LogSettings
from llmrelay.observe.otel import OtelSettings
from llmrelay.observe.prometheus import PrometheusSettings
from llmrelay.observe.registry import SINKS
from llmrelay.providers import Timeouts
from llmrelay.providers.registry import ProviderFactory, default_registry
from llmrelay.router import RouterConfig
from llmrelay.routing import BreakerConfig, balancer, fallback_policy
from llmrelay.scheduling import SchedulerPolicy

S = TypeVar("S", bound=msgspec.Struct)
Part = type[msgspec.Struct] | tuple[type[msgspec.Struct], tuple[str, ...]]

PACING = ("safety_margin", "token_margin", "min_spacing", "short_window_s", "window_pad")
"""The fields of :class:`Limits` set once for every deployment, in ``scheduler:``."""

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# -- sections derived from the runtime structs -------------------------------------------


class _Derived(_Section):
    """A section whose options are fields of runtime structs.

    The struct is the one definition of each option: building it checks the values. A
    value its ``__post_init__`` refuses is an error at that key; a combination it refuses,
    an error at the section.
    """

    _parts: ClassVar[tuple[tuple[type[msgspec.Struct], tuple[str, ...]], ...]] = ()

    @model_validator(mode="after")
    def _check_structs(self) -> Self:
        for struct, _ in self._parts:
            build(self, struct)  # a ValueError here is the section's error
        return self


def _field_check(struct: type[msgspec.Struct], names: tuple[str, ...]) -> Any:
    """A validator of ``names`` that builds ``struct`` with the value (and the fields
    validated before it), so the struct's own check blames the key that caused it."""

    def check(cls: type[_Derived], value: Any, info: ValidationInfo) -> Any:
        name = info.field_name or ""
        known = {n: info.data[n] for n in names if n in info.data}
        try:
            struct(**{**known, name: value})
        except TypeError:
            return value  # a required field is missing or invalid: pydantic names it
        except ValueError as exc:
            message = str(exc)  # "retries must be >= 0": the key is already named
            if message.startswith(f"{name} must "):
                message = message.removeprefix(f"{name} ")
            raise ValueError(message) from None
        return value

    return field_validator(*names)(check)


def build(section: _Section, struct: type[S], **extra: Any) -> S:
    """``struct`` from the fields of ``section`` that belong to it, plus ``extra``."""
    names = dict(getattr(section, "_parts", ()))[struct]
    return struct(**{name: getattr(section, name) for name in names}, **extra)


def derived(*parts: Part) -> type[_Derived]:
    """A settings model with the fields of each struct in ``parts``.

    A part is a struct (all its fields) or ``(struct, names)`` (those fields only). Names,
    types, defaults and docstrings are the struct's; nothing is restated here.
    """
    fields: dict[str, Any] = {}
    resolved: list[tuple[type[msgspec.Struct], tuple[str, ...]]] = []
    for part in parts:
        struct, include = part if isinstance(part, tuple) else (part, None)
        docs = _attribute_docs(struct)
        chosen = [f for f in msgspec.structs.fields(struct) if include is None or f.name in include]
        for f in chosen:
            if f.default_factory is not msgspec.NODEFAULT:
                default = Field(default_factory=f.default_factory, description=docs.get(f.name))
            elif f.default is not msgspec.NODEFAULT:
                default = Field(default=f.default, description=docs.get(f.name))
            else:
                default = Field(description=docs.get(f.name))
            fields[f.name] = (f.type, default)
        resolved.append((struct, tuple(f.name for f in chosen)))
    name = "".join(struct.__name__ for struct, _ in resolved) + "Fields"
    checks = {
        f"_check_{struct.__name__}": _field_check(struct, names) for struct, names in resolved
    }
    model = create_model(name, __base__=_Derived, __validators__=checks, **fields)
    model._parts = tuple(resolved)
    return model


def _attribute_docs(struct: type) -> dict[str, str]:
    """The docstrings written under a class's fields (``x: int = 1`` then ``\"\"\"...\"\"\"``)."""
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(struct)))
    except (OSError, TypeError, SyntaxError):
        return {}
    body = tree.body[0].body if tree.body and isinstance(tree.body[0], ast.ClassDef) else []
    docs: dict[str, str] = {}
    for node, after in itertools.pairwise(body):
        if (
            isinstance(node, ast.AnnAssign)
            and isinstance(node.target, ast.Name)
            and isinstance(after, ast.Expr)
            and isinstance(after.value, ast.Constant)
            and isinstance(after.value.value, str)
        ):
            docs[node.target.id] = inspect.cleandoc(after.value.value)
    return docs


def _error(loc: tuple[str | int, ...], message: str, value: object) -> InitErrorDetails:
    return InitErrorDetails(
        type=PydanticCustomError("value_error", "{message}", {"message": message}),
        loc=loc,
        input=value,
    )


class TimeoutSettings(derived(Timeouts)):  # type: ignore[misc]  # a base made from Timeouts
    """``timeouts:`` — seconds to wait for a connection, the response head, stream chunks."""

    def runtime(self, override: TimeoutSettings | None = None) -> Timeouts:
        """The :class:`Timeouts`, with the keys ``override`` sets taken from it."""
        timeouts = build(self, Timeouts)
        if override is None:
            return timeouts
        own = {name: getattr(override, name) for name in override.model_fields_set}
        return msgspec.structs.replace(timeouts, **own)


class BreakerSettings(derived(BreakerConfig)):  # type: ignore[misc]  # a base made from BreakerConfig
    """``routing.breaker:`` — when a deployment's circuit opens and how it recovers."""

    def runtime(self) -> BreakerConfig:
        return build(self, BreakerConfig)


class RoutingSettings(derived(RouterConfig)):  # type: ignore[misc]  # a base made from RouterConfig
    """``routing:`` — retries, backoff, context margin and hedging; the fallback policy."""

    policy: str = "smart"
    """``smart``, ``sequential`` or ``cost``."""
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)

    @field_validator("policy")
    @classmethod
    def _known_policy(cls, value: str) -> str:
        fallback_policy(value)  # raises ValueError naming the known policies
        return value

    def runtime(self) -> RouterConfig:
        return build(self, RouterConfig)


class SchedulerSettings(derived(SchedulerPolicy, (Limits, PACING))):  # type: ignore[misc]  # a base made from the structs
    """``scheduler:`` — how long a call may wait, and how every deployment is paced."""

    def runtime(self) -> SchedulerPolicy:
        return build(self, SchedulerPolicy)

    def limits(self, **deployment: Any) -> Limits:
        """A deployment's :class:`Limits`: its ``rpm``… with this section's pacing."""
        return build(self, Limits, **deployment)


# -- deployments, groups, the whole file -------------------------------------------------


class DeploymentSettings(derived((Limits, DIMENSIONS))):  # type: ignore[misc]  # limits from Limits
    """One deployment. Limits, window and prices default to the catalog's for ``tier``."""

    provider: str
    model: str
    api_key: str | None = None
    base_url: str | None = None
    """An ``http://`` or ``https://`` URL; unset: the provider's variable, then its API."""
    name: str = ""
    tier: str | None = None
    context_window: int | None = Field(default=None, gt=0)
    """Unset and not in the catalog: asked from the server, learned from context errors."""
    max_output_tokens: int | None = Field(default=None, gt=0)
    weight: float = Field(default=1.0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)
    timeouts: TimeoutSettings | None = None

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str, info: ValidationInfo) -> str:
        name = value.strip().lower()
        known = (info.context or {}).get("providers") or set(default_registry())
        if name not in known:
            raise ValueError(f"unknown provider {value!r} (known: {', '.join(sorted(known))})")
        return name

    @field_validator("api_key", "base_url", "tier")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None:
            split = urlsplit(value)
            if split.scheme not in ("http", "https") or not split.netloc:
                raise ValueError(f"expected an http:// or https:// URL, got {value!r}")
        return value

    def limit_values(self) -> dict[str, int | None]:
        """The limits given on this deployment (``None``: take the catalog's)."""
        return {name: getattr(self, name) for name in DIMENSIONS}


class GroupSettings(_Section):
    primary: list[DeploymentSettings] = Field(min_length=1)
    fallbacks: list[DeploymentSettings] = Field(default_factory=list)
    content_fallbacks: list[DeploymentSettings] = Field(default_factory=list)
    load_balancing: str = "round_robin"
    downgrade: list[str] = Field(default_factory=list)
    """Model groups to send this group's requests to first once a budget is past its
    ``downgrade_at`` share (empty: this group's own deployments, cheapest first)."""

    @field_validator("load_balancing")
    @classmethod
    def _known_strategy(cls, value: str) -> str:
        balancer(value)  # raises ValueError naming the known strategies
        return value

    def deployments(self) -> Iterator[tuple[str, int, DeploymentSettings]]:
        """Every deployment with the list it is in and its index there."""
        for kind in ("primary", "fallbacks", "content_fallbacks"):
            for index, spec in enumerate(getattr(self, kind)):
                yield kind, index, spec


class BudgetLimitSettings(derived(BudgetLimit)):  # type: ignore[misc]  # a base made from BudgetLimit
    def runtime(self) -> BudgetLimit:
        return build(self, BudgetLimit)


class BudgetSettings(derived(BudgetPolicy)):  # type: ignore[misc]  # a base made from BudgetPolicy
    """``budget:`` — spending limits (:mod:`llmrelay.budget`)."""

    limits: list[BudgetLimitSettings] = Field(default_factory=list)
    store: Literal["memory", "sqlite", "redis"] = "memory"
    """Where the counters live: this process, a SQLite file (kept across restarts), or
    Redis (shared by every replica; the top-level ``redis_url`` unless set here)."""
    path: str = "~/.llmrelay/budget.sqlite"
    """The SQLite file, for ``store: sqlite``."""
    redis_url: str | None = None

    def policy(self) -> BudgetPolicy:
        return build(self, BudgetPolicy)


class SpendSettings(_Section):
    """``spend:`` — the spend ledger, one row per call (:mod:`llmrelay.cost`)."""

    ledger: Literal["none", "sqlite", "postgres"] = "none"
    path: str = "~/.llmrelay/spend.sqlite"
    """The SQLite file, for ``ledger: sqlite``."""
    database_url: str | None = None
    """PostgreSQL, for ``ledger: postgres`` (default: the ``DATABASE_URL`` variable)."""
    flush_s: float = Field(default=0.5, gt=0)
    """Rows are written in batches at least this often."""


class ExactCacheSettings(_Section):
    """``cache.exact:`` — answers kept by the whole normalized request."""

    backend: Literal["none", "memory", "sqlite", "redis"] = "none"
    ttl_s: float | None = Field(default=3600.0, gt=0)
    max_bytes: int = Field(default=64 * 2**20, gt=0)
    """The memory backend's bound, in bytes of keys and values."""
    path: str = "~/.llmrelay/cache.sqlite"
    redis_url: str | None = None


class SemanticCacheSettings(_Section):
    """``cache.semantic:`` — answers found by the meaning of the last user message."""

    backend: Literal["none", "sqlite", "redis"] = "none"
    threshold: float | None = Field(default=None, gt=0, le=1)
    """Cosine similarity a hit needs (default: the one chosen by the shipped evaluation)."""
    ttl_s: float | None = Field(default=3600.0, gt=0)
    path: str = "~/.llmrelay/semantic.sqlite"
    redis_url: str | None = None


class CacheSettings(_Section):
    """``cache:`` — the response caches (:mod:`llmrelay.cache`)."""

    exact: ExactCacheSettings = Field(default_factory=ExactCacheSettings)
    semantic: SemanticCacheSettings = Field(default_factory=SemanticCacheSettings)
    any_temperature: bool = False
    """Cache answers to requests whose temperature is not 0 too (by default only those
    are, being the deterministic ones; a call may opt in or out with ``cache=``)."""


class _SinkSection(_Derived):
    def runtime(self) -> msgspec.Struct:
        """The sink's settings struct."""
        struct, _ = self._parts[0]
        return build(self, struct)


class LogSection(_SinkSection, derived(LogSettings)):  # type: ignore[misc]  # a base made from LogSettings
    """``observe.logs:`` — one structlog line per request."""


class PrometheusSection(_SinkSection, derived(PrometheusSettings)):  # type: ignore[misc]  # a base made from PrometheusSettings
    """``observe.prometheus:`` — Prometheus metrics."""


class OtelSection(_SinkSection, derived(OtelSettings)):  # type: ignore[misc]  # a base made from OtelSettings
    """``observe.otel:`` — OpenTelemetry spans (extra ``otel``)."""


class LangfuseSection(_SinkSection, derived(LangfuseSettings)):  # type: ignore[misc]  # a base made from LangfuseSettings
    """``observe.langfuse:`` — Langfuse generations (extra ``langfuse``)."""


class AnalyticsSection(_SinkSection, derived(AnalyticsSettings)):  # type: ignore[misc]  # a base made from AnalyticsSettings
    """``observe.analytics:`` — per-request figures for analysis and ``llmrelay report``."""


class ObserveSettings(_Section):
    """``observe:`` — sinks fed the router's events (:mod:`llmrelay.observe`). A built-in
    sink is on when its key is present (``logs: {}`` takes its defaults)."""

    queue_size: int = Field(default=DEFAULT_QUEUE_SIZE, gt=0)
    """Events a sink may fall behind by before further ones are dropped (and counted)."""
    logs: LogSection | None = None
    prometheus: PrometheusSection | None = None
    otel: OtelSection | None = None
    langfuse: LangfuseSection | None = None
    analytics: AnalyticsSection | None = None
    sinks: dict[str, str] = Field(default_factory=dict)
    """More sinks: name → ``package.module:factory``, called with no arguments."""

    @field_validator("sinks")
    @classmethod
    def _importable_sinks(cls, value: dict[str, str]) -> dict[str, str]:
        for name, path in value.items():
            try:
                import_factory(path)
            except ValueError as exc:
                raise ValueError(f"{name}: {exc}") from None
        return value

    def configured(self) -> list[tuple[str, msgspec.Struct]]:
        """The built-in sinks that are on: name and settings, in registry order."""
        sections = ((name, getattr(self, name)) for name in SINKS)
        return [(name, section.runtime()) for name, section in sections if section is not None]


class RelaySettings(_Section):
    """The whole configuration (the YAML file's top level)."""

    tier: str = "tier1"
    models: dict[str, GroupSettings] = Field(min_length=1)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    redis_url: str | None = None
    catalog: dict[str, dict[str, Any]] = Field(default_factory=dict)
    providers: dict[str, str] = Field(default_factory=dict)
    """More provider adapters: name → ``package.module:Class`` (see the module docstring)."""
    budget: BudgetSettings | None = None
    spend: SpendSettings = Field(default_factory=SpendSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    observe: ObserveSettings = Field(default_factory=ObserveSettings)
    media: Any = None
    """``media:`` — the video-filename parser's settings (:mod:`llmrelay.media.config`)."""
    agents: Any = None
    """``agents:`` — the runs service's settings (:mod:`llmrelay.agents.config`)."""
    server: Any = None
    """``server:`` — the gateway's settings (:mod:`llmrelay.gateway.settings`)."""

    @field_validator("redis_url")
    @classmethod
    def _empty_is_unset(cls, value: str | None) -> str | None:
        return value.strip() or None if value is not None else None

    @field_validator("providers")
    @classmethod
    def _importable(cls, value: dict[str, str]) -> dict[str, str]:
        problems = []
        for name, path in value.items():
            try:
                import_factory(path)
            except ValueError as exc:
                problems.append(_error((name,), str(exc), path))
        if problems:
            raise ValidationError.from_exception_data("providers", problems)
        return value

    @field_validator("catalog")
    @classmethod
    def _valid_catalog(cls, value: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if value:
            try:
                Catalog.default().extend(value, source="")
            except ConfigError as exc:
                raise ValueError(str(exc).removeprefix(": ")) from None
        return value

    @model_validator(mode="after")
    def _known_tiers(self) -> Self:
        tiers = _tiers(self.model_catalog())
        problems: list[InitErrorDetails] = []
        top_level_for: set[str] = set()
        for group, settings in self.models.items():
            for kind, index, spec in settings.deployments():
                known = tiers.get(spec.provider, set())
                if spec.tier is None:
                    if known and self.tier not in known:
                        top_level_for.add(spec.provider)
                elif spec.tier not in known:
                    loc = ("models", group, kind, index, "tier")
                    problems.append(_error(loc, _unknown_tier(spec.tier, spec.provider, known),
                                           spec.tier))  # fmt: skip
        for provider in sorted(top_level_for):
            message = _unknown_tier(self.tier, provider, tiers[provider])
            problems.append(_error(("tier",), message, self.tier))
        known_groups = {name.lower() for name in self.models}
        for group, settings in self.models.items():
            for index, target in enumerate(settings.downgrade):
                if target.lower() not in known_groups:
                    message = f"no model group {target!r} (known: {', '.join(sorted(self.models))})"
                    problems.append(_error(("models", group, "downgrade", index), message, target))
        if problems:
            raise ValidationError.from_exception_data("RelaySettings", problems)
        return self

    def model_catalog(self) -> Catalog:
        """The shipped catalog with this configuration's ``catalog:`` entries laid over it."""
        return Catalog.default().extend(self.catalog) if self.catalog else Catalog.default()

    def provider_factories(self) -> dict[str, ProviderFactory]:
        """The adapters registered under ``providers:``."""
        return {name: import_factory(path) for name, path in self.providers.items()}


def _tiers(catalog: Catalog) -> dict[str, set[str]]:
    """Per provider, the tiers at least one of its models has limits for."""
    tiers: dict[str, set[str]] = {}
    for info in catalog:
        tiers.setdefault(info.provider, set()).update(info.limits)
    return tiers


def _unknown_tier(tier: str, provider: str, known: set[str]) -> str:
    if not known:
        return f"unknown tier {tier!r}: the catalog has no tiers for {provider}"
    return f"unknown tier {tier!r} for {provider} (known: {', '.join(sorted(known))})"


def import_factory(path: str) -> Callable[..., Any]:
    """The class or factory at ``package.module:name`` (a provider adapter, a sink);
    ``ValueError`` saying what failed."""
    return import_callable(path)


# -- reading -------------------------------------------------------------------------------


APP_SECTIONS = ("media", "agents", "server")
"""Sections that belong to an application or to the gateway. The router leaves them alone;
the front that reads the file passes its model (``sections=``), so they are validated
here, with the same error messages, without this layer importing the front."""


def parse_settings(
    raw: Any,
    source: str,
    *,
    providers: Mapping[str, ProviderFactory] | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
) -> RelaySettings:
    """Validate ``raw`` (already-parsed YAML) from ``source`` into settings.

    ``providers`` are adapters registered in code (:meth:`LLMBuilder.with_provider`):
    deployments may name them as well as the built-in ones and those under ``providers:``.
    ``sections`` validates application sections (:data:`APP_SECTIONS`) with their models:
    the answer's attribute of that name is then an instance of the model, or ``None``.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    data = _lower_keys(_substitute(raw, source, ""))
    known = set(default_registry()) | {name.lower() for name in providers or {}}
    if isinstance(data.get("providers"), Mapping):
        known |= set(data["providers"])
    try:
        return _settings_model(sections).model_validate(data, context={"providers": known})
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: "
            + err["msg"].removeprefix("Value error, ")
            + (f" (got {err['input']!r})" if _shows_input(err) else "")
            for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(problems)) from None


def _settings_model(sections: Mapping[str, type[BaseModel]] | None) -> type[RelaySettings]:
    if not sections:
        return RelaySettings
    unknown = sorted(set(sections) - set(APP_SECTIONS))
    if unknown:
        raise ValueError(f"not an application section: {unknown[0]!r} (known: {APP_SECTIONS})")
    fields: dict[str, Any] = {name: (model | None, None) for name, model in sections.items()}
    return create_model("RelaySettings", __base__=RelaySettings, **fields)


def check_groups(settings: RelaySettings, source: str, groups: Mapping[str, str]) -> None:
    """Every model group an application section names (``key`` → group) is one of
    ``models:``; else :class:`ConfigError` naming the first key that is not."""
    for key, group in groups.items():
        if group not in settings.models:
            known = ", ".join(sorted(settings.models))
            raise ConfigError(
                f"{source}: {key}: no model group {group!r} in models: (known: {known})"
            )


def load_settings(
    path: str | Path,
    *,
    providers: Mapping[str, ProviderFactory] | None = None,
    sections: Mapping[str, type[BaseModel]] | None = None,
) -> RelaySettings:
    """Read and validate a YAML configuration file (``providers``, ``sections``: see
    :func:`parse_settings`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_settings(raw, str(path), providers=providers, sections=sections)


def _shows_input(err: Any) -> bool:
    """Whether to add ``(got …)``: not for our own messages, which say what came."""
    return err["type"] not in ("missing", "extra_forbidden", "value_error") and not isinstance(
        err.get("input"), dict | list
    )


def _substitute(value: Any, source: str, where: str) -> Any:
    if isinstance(value, str):

        def replace(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            found = os.environ.get(name)
            if found is not None:
                return found
            if default is not None:
                return default
            raise ConfigError(
                f"{source}: {where or '(top level)'}: environment variable {name} is not set "
                f"(write ${{{name}:-default}} to give a default)"
            )

        return _ENV.sub(replace, value)
    if isinstance(value, Mapping):
        return {
            k: _substitute(v, source, f"{where}.{k}" if where else str(k)) for k, v in value.items()
        }
    if isinstance(value, list):
        return [_substitute(v, source, f"{where}.{i}") for i, v in enumerate(value)]
    return value


def _lower_keys(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k).lower(): _lower_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_lower_keys(v) for v in value]
    return value


__all__ = [
    "APP_SECTIONS",
    "PACING",
    "BreakerSettings",
    "DeploymentSettings",
    "GroupSettings",
    "RelaySettings",
    "RoutingSettings",
    "SchedulerSettings",
    "TimeoutSettings",
    "build",
    "check_groups",
    "derived",
    "import_factory",
    "load_settings",
    "parse_settings",
]
