"""The configuration of a :class:`~llmrelay.SmartLLM`: YAML (or the builder) → settings.

Validated once, at start, by pydantic: every error names the file, the key and what was
expected. ``${VAR}`` and ``${VAR:-default}`` are replaced from the environment (a missing
variable without a default is an error naming it). Keys — section names, model group
names, provider names — are case-insensitive.

.. code-block:: yaml

    tier: tier1
    models:
      default:
        primary:
          - {provider: openai, model: gpt-4o-mini, api_key: "${OPENAI_API_KEY}"}
        fallbacks:
          - {provider: anthropic, model: claude-haiku-4-5}
          - {provider: gemini, model: gemini-2.5-flash}
    routing: {policy: smart, retries: 1, context_margin: 0.9}
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmrelay.errors import ConfigError
from llmrelay.providers.registry import default_registry

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeploymentSettings(_Section):
    """One deployment. Limits, window and prices default to the catalog's for ``tier``."""

    provider: str
    model: str
    api_key: str | None = None
    base_url: str | None = None
    name: str = ""
    tier: str | None = None
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    itpm: int | None = Field(default=None, gt=0)
    otpm: int | None = Field(default=None, gt=0)
    rpd: int | None = Field(default=None, gt=0)
    context_window: int | None = Field(default=None, gt=0)
    max_output_tokens: int | None = Field(default=None, gt=0)
    weight: float = Field(default=1.0, ge=0)
    headers: dict[str, str] = Field(default_factory=dict)

    @field_validator("provider")
    @classmethod
    def _known_provider(cls, value: str) -> str:
        name = value.strip().lower()
        known = set(default_registry())
        if name not in known:
            raise ValueError(f"unknown provider {value!r} (known: {', '.join(sorted(known))})")
        return name


class GroupSettings(_Section):
    primary: list[DeploymentSettings] = Field(min_length=1)
    fallbacks: list[DeploymentSettings] = Field(default_factory=list)
    content_fallbacks: list[DeploymentSettings] = Field(default_factory=list)
    load_balancing: str = "round_robin"


class BreakerSettings(_Section):
    failure_threshold: int = Field(default=5, ge=1)
    cooldown_s: float = Field(default=30.0, ge=0)
    half_open_probes: int = Field(default=1, ge=1)


class RoutingSettings(_Section):
    policy: str = "smart"
    retries: int = Field(default=1, ge=0)
    retry_backoff_s: float = Field(default=0.25, ge=0)
    context_margin: float = Field(default=0.9, gt=0, le=1)
    breaker: BreakerSettings = Field(default_factory=BreakerSettings)
    hedge_after_s: float | None = Field(default=None, gt=0)
    hedge_quantile: float | None = Field(default=None, gt=0, lt=1)
    hedge_budget: float = Field(default=0.05, ge=0, le=1)


class SchedulerSettings(_Section):
    max_wait_before_fallback: float = Field(default=90.0, ge=0)
    max_wait_seconds: float = Field(default=300.0, ge=0)
    safety_margin: int = Field(default=2, ge=0)
    token_margin: float = Field(default=0.01, ge=0, lt=0.5)
    min_spacing: bool = False
    max_rate_limit_retries: int = Field(default=4, ge=0)


class RelaySettings(_Section):
    """The whole configuration (the YAML file's top level)."""

    tier: str = "tier1"
    models: dict[str, GroupSettings] = Field(min_length=1)
    routing: RoutingSettings = Field(default_factory=RoutingSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    redis_url: str | None = None
    cost_tracking: bool = True
    catalog: dict[str, dict[str, Any]] = Field(default_factory=dict)


def parse_settings(raw: Any, source: str) -> RelaySettings:
    """Validate ``raw`` (already-parsed YAML) from ``source`` into settings."""
    if not isinstance(raw, Mapping):
        raise ConfigError(
            f"{source}: expected a mapping at the top level, got {type(raw).__name__}"
        )
    data = _lower_keys(_substitute(raw, source, ""))
    try:
        return RelaySettings.model_validate(data)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            + (f" (got {err['input']!r})" if _shows_input(err) else "")
            for err in exc.errors()
        ]
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(problems)) from None


def load_settings(path: str | Path) -> RelaySettings:
    """Read and validate a YAML configuration file."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the configuration: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    return parse_settings(raw, str(path))


def _shows_input(err: Any) -> bool:
    return err["type"] not in ("missing", "extra_forbidden") and not isinstance(
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
    "BreakerSettings",
    "DeploymentSettings",
    "GroupSettings",
    "RelaySettings",
    "RoutingSettings",
    "SchedulerSettings",
    "load_settings",
    "parse_settings",
]
