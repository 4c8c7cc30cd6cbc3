"""What each model offers and costs: context window, output limit, prices, tier limits.

The shipped ``models.yaml`` records the figures and the date they were read from the
providers' pages. :meth:`Catalog.extend` overlays a user's entries (from config) on it —
new models, or single fields of known ones — and returns a new catalog.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import msgspec
import yaml

from llmrelay.errors import ConfigError
from llmrelay.limits import Limits
from llmrelay.types import Usage


class Rates(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens of each kind.

    ``cached_input``: input read from the provider's prompt cache (``None``: billed as
    ``input``); ``cache_write``: input written to it, where the provider bills that apart
    (Anthropic's ``cache_creation_input_tokens``; ``None``: billed as ``input``).
    """

    input: float
    output: float
    cached_input: float | None = None
    cache_write: float | None = None

    def __post_init__(self) -> None:
        for name in ("input", "output", "cached_input", "cache_write"):
            value = getattr(self, name)
            if value is not None and value < 0:
                raise ValueError(f"price.{name} must be >= 0, got {value}")


class LongContext(Rates, frozen=True, forbid_unknown_fields=True):
    """The rates of every token of a call whose prompt has more than ``above`` tokens
    (Gemini 2.5 Pro above 200k, for example)."""

    above: int = 0


class Price(Rates, frozen=True, forbid_unknown_fields=True):
    """USD per million tokens; ``long_context``: the rates past a prompt-size threshold."""

    long_context: LongContext | None = None

    def rates(self, prompt_tokens: int) -> Rates:
        """The rates that apply to a call whose prompt has ``prompt_tokens`` tokens."""
        tier = self.long_context
        return tier if tier is not None and prompt_tokens > tier.above else self

    def micros(self, usage: Usage) -> int:
        """The exact cost of one call in integer micro-dollars, rounded up.

        Each kind of token is priced at its own rate: fresh input, cached input read,
        cache writes, and output (which includes reasoning tokens). The arithmetic is in
        integers (picodollars per token), so costs add up without float drift.
        """
        rates = self.rates(usage.input_tokens)
        read, write = usage.cached_input_tokens, usage.cache_write_input_tokens
        fresh = max(0, usage.input_tokens - read - write)
        pico = (
            fresh * _pico(rates.input)
            + read * _pico(rates.input if rates.cached_input is None else rates.cached_input)
            + write * _pico(rates.input if rates.cache_write is None else rates.cache_write)
            + usage.output_tokens * _pico(rates.output)
        )
        return -(-pico // 1_000_000)


def _pico(usd_per_million_tokens: float) -> int:
    """USD per million tokens as picodollars per token (exact for six decimals)."""
    return round(usd_per_million_tokens * 1_000_000)


class TierLimits(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A usage tier's rate limits (``None``: not published / not limited)."""

    rpm: int | None = None
    tpm: int | None = None
    itpm: int | None = None
    otpm: int | None = None
    rpd: int | None = None


class ModelInfo(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One model's figures; local models have no ``price`` (they cost nothing per token)
    and no tier ``limits``."""

    context_window: int
    max_output_tokens: int
    price: Price | None = None
    limits: dict[str, TierLimits] = msgspec.field(default_factory=dict)
    provider: str = ""
    model: str = ""

    def cost_micros(self, usage: Usage) -> int:
        """Integer micro-dollars for one call (0 for a model without a price)."""
        return 0 if self.price is None else self.price.micros(usage)


class _CatalogFile(msgspec.Struct, forbid_unknown_fields=True):
    read: str
    models: dict[str, ModelInfo]
    sources: dict[str, list[str]] = msgspec.field(default_factory=dict)
    day_resets: dict[str, str] = msgspec.field(default_factory=dict)


class Catalog:
    """Model figures keyed by ``provider/model``."""

    def __init__(
        self,
        models: Mapping[str, ModelInfo],
        *,
        read: str = "",
        sources: Mapping[str, list[str]] | None = None,
        day_resets: Mapping[str, str] | None = None,
    ) -> None:
        self.read = read
        self.sources = dict(sources or {})
        self.day_resets = dict(day_resets or {})
        self._models: dict[str, ModelInfo] = {}
        for name, info in models.items():
            provider, _, model = name.partition("/")
            if not model:
                raise ConfigError(f"catalog entry {name!r}: expected 'provider/model'")
            self._models[name] = msgspec.structs.replace(info, provider=provider, model=model)

    @classmethod
    def default(cls) -> Catalog:
        """The catalog shipped with llmrelay."""
        return _shipped()

    @classmethod
    def load(cls, path: str | Path) -> Catalog:
        """A whole catalog from a YAML file of the shipped file's shape."""
        path = Path(path)
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read the catalog: {exc}") from None
        parsed = _convert(raw, _CatalogFile, str(path))
        return cls(
            parsed.models, read=parsed.read, sources=parsed.sources, day_resets=parsed.day_resets
        )

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        provider, _, model = name.partition("/")
        return self.get(provider, model) is not None

    def __iter__(self) -> Any:
        return iter(self._models.values())

    def __len__(self) -> int:
        return len(self._models)

    def get(self, provider: str, model: str) -> ModelInfo | None:
        """The entry for exactly ``provider/model``; ``name:latest`` is the entry ``name``.

        Ollama (and servers like it) call the default tag of a model ``latest``, so
        ``llama3.2:latest`` and ``llama3.2`` are one model. Lookups are otherwise exact:
        a model missing here has an unknown window, which the server may report.
        """
        info = self._models.get(f"{provider}/{model}")
        if info is None and model.endswith(":latest"):
            info = self._models.get(f"{provider}/{model.removesuffix(':latest')}")
        return info

    def require(self, provider: str, model: str) -> ModelInfo:
        info = self.get(provider, model)
        if info is None:
            raise ConfigError(
                f"model {provider}/{model} is not in the catalog; add it under 'catalog:' in "
                "your config with at least context_window and max_output_tokens"
            )
        return info

    def limits(
        self,
        provider: str,
        model: str,
        tier: str,
        *,
        safety_margin: int = 2,
        min_spacing: bool = False,
    ) -> Limits:
        """The :class:`Limits` of ``tier`` for a model (an unknown tier names the known)."""
        info = self.require(provider, model)
        tier_limits = info.limits.get(tier)
        if tier_limits is None:
            known = ", ".join(sorted(info.limits)) or "none"
            raise ConfigError(f"{provider}/{model}: no limits for tier {tier!r} (known: {known})")
        return Limits(
            **msgspec.structs.asdict(tier_limits),
            safety_margin=safety_margin,
            min_spacing=min_spacing,
            day_reset_tz=self.day_resets.get(provider, "UTC"),
        )

    def extend(self, entries: Mapping[str, Any], *, source: str = "config") -> Catalog:
        """A new catalog with ``entries`` (``{"provider/model": {...}}``) laid over this one.

        A known model takes only the fields given (``price``, single tiers of ``limits``);
        a new one needs ``context_window`` and ``max_output_tokens``.
        """
        merged = {name: msgspec.to_builtins(info) for name, info in self._models.items()}
        for name, fields in entries.items():
            provider, _, model = str(name).partition("/")
            if not provider or not model:
                raise ConfigError(f"{source}: catalog.{name}: expected 'provider/model' as the key")
            if not isinstance(fields, Mapping):
                raise ConfigError(f"{source}: catalog.{name}: expected a mapping of fields")
            base = merged.get(name, {})
            merged[name] = _deep_merge(base, dict(fields))
        for entry in merged.values():
            entry.pop("provider", None)
            entry.pop("model", None)
        models = {
            name: _convert(entry, ModelInfo, source, prefix=f"catalog.{name}")
            for name, entry in merged.items()
        }
        return Catalog(models, read=self.read, sources=self.sources, day_resets=self.day_resets)


def _deep_merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


def _convert(raw: Any, kind: Any, source: str, prefix: str = "") -> Any:
    """msgspec conversion whose errors name the file and the key (``$.models[...]``)."""
    try:
        return msgspec.convert(raw, kind)
    except msgspec.ValidationError as exc:
        message = str(exc)
        if prefix:
            message = (
                message.replace("$", prefix, 1) if "$" in message else f"{message} - at `{prefix}`"
            )

        raise ConfigError(f"{source}: {message}") from None


@functools.cache
def _shipped() -> Catalog:
    data = resources.files(__package__).joinpath("models.yaml").read_text(encoding="utf-8")
    parsed = _convert(yaml.safe_load(data), _CatalogFile, "llmrelay/catalog/models.yaml")
    return Catalog(
        parsed.models, read=parsed.read, sources=parsed.sources, day_resets=parsed.day_resets
    )


__all__ = ["Catalog", "LongContext", "ModelInfo", "Price", "Rates", "TierLimits"]
