"""Simulator configuration: the models it serves, their limits, latency, faults, prices
and prompt caching.

Validated with pydantic so that a typo in a YAML file is reported with the file, the key
and what was expected, never as a traceback.

Prompt-caching defaults, per API, from the providers' documentation (where the documents
disagree, the stricter figure):

- **OpenAI**: automatic prefix caching of prompts of 1024 tokens or more, hits in
  128-token increments (platform.openai.com, "Prompt caching"); entries "cleared within
  5-10 minutes of inactivity" (OpenAI and Azure OpenAI guides): 300 s, refreshed on use.
- **Anthropic**: explicit ``cache_control`` breakpoints (at most 4), a 5-minute TTL
  refreshed on each read. Minimum cacheable prompt per model family (Anthropic's prompt
  caching guide): 4096 tokens for Opus 4.5 / 4.6 and Haiku 4.5; 2048 for Haiku 3 / 3.5,
  Sonnet 4.6 and Opus 4.7 (sources disagree between 1024 and 2048: the stricter); 1024 for
  Sonnet 3.5 / 3.7 / 4 / 4.5, Opus 3 / 4 / 4.1; 4096 for a name it does not recognise.
- **Gemini**: implicit caching on Gemini 2.5 and newer (not 1.x / 2.0). Minimum prompt:
  2048 tokens for 2.5 Flash and 4096 for 2.5 Pro (Google's pages have said 1024 / 4096 and
  later 2048 / 2048: the stricter of each), 4096 for other models. Google documents no TTL
  nor increment for implicit hits: the simulator uses 300 s and 128-token increments.
- **Local servers** (Ollama, vLLM, llama.cpp): no prompt caching and no price.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmrelay.catalog import LongContext, Price
from llmrelay.errors import ConfigError

Api = Literal["openai", "anthropic", "gemini", "ollama", "vllm", "llamacpp"]
"""Which server a model is served as: a hosted API, or a local server (Ollama, vLLM,
llama.cpp) whose own endpoints report its models and context sizes."""

LOCAL_APIS: frozenset[Api] = frozenset({"ollama", "vllm", "llamacpp"})
DAY_ZONES: Mapping[Api, str] = {"gemini": "America/Los_Angeles"}
"""Where a provider's day starts (its RPD counter resets at midnight there); UTC otherwise."""
FaultKind = Literal[
    "500",
    "503",
    "overloaded",
    "rate_limit",
    "timeout",
    "disconnect",
    "stream_error",
    "malformed",
    "stream_cut",
    "slow",
]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Script(_Strict):
    """A scripted reply: when the last user message matches ``pattern``, answer ``reply``.

    ``reply`` may use ``{0}``, ``{1}``… for the pattern's groups and ``{input}`` for the
    whole message. ``tool_call`` makes the model call that tool with ``arguments``.
    """

    pattern: str
    reply: str = ""
    tool_call: str | None = None
    arguments: dict[str, Any] = Field(default_factory=dict)

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from exc
        return value


CACHE_TTL_S = 300.0
"""How long a prompt-cache entry lives by default, refreshed on each hit (module docstring)."""
OPENAI_MIN_CACHEABLE = 1024
_ANTHROPIC_MIN_CACHEABLE: tuple[tuple[str, int], ...] = (
    (r"haiku-4-5|opus-4-[56]", 4096),
    (r"sonnet-4-6|opus-4-7|haiku-3|3-5-haiku|3-haiku", 2048),
    (
        r"sonnet-4-5|opus-4-1|(?:opus|sonnet)-4(?:-\d{8})?$|3-7-sonnet|sonnet-3-7"
        r"|3-5-sonnet|3-opus",
        1024,
    ),
)
_GEMINI_MIN_CACHEABLE: tuple[tuple[str, int], ...] = (
    (r"gemini-2\.5-flash", 2048),
    (r"gemini-2\.5-pro", 4096),
)
_UNKNOWN_MIN_CACHEABLE = 4096
_GEMINI_WITHOUT_IMPLICIT_CACHE = re.compile(r"gemini-(?:1\.|2\.0)")


class LongContextPrices(_Strict):
    """The prices of every token of a call whose prompt has more than ``above`` tokens
    (Gemini 2.5 Pro above 200k; ``None`` prices: as the model's own)."""

    above: int = Field(gt=0)
    input_price_per_mtok: float = Field(ge=0)
    output_price_per_mtok: float = Field(ge=0)
    cached_input_price_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_price_per_mtok: float | None = Field(default=None, ge=0)


class ModelSpec(_Strict):
    """One simulated model.

    Limits are per API key: ``rpm`` requests, ``tpm`` tokens (prompt + ``max_tokens``)
    per minute; ``itpm`` / ``otpm`` input / output tokens per minute, as Anthropic
    counts them (Anthropic models only); ``rpd`` requests per day. ``short_window_s``
    overrides the config's short window for this model (``None``: the config's).

    Prices are USD per million tokens: ``cached_input_price_per_mtok`` for prompt tokens
    read from the cache, ``cache_write_price_per_mtok`` for those written to it (Anthropic
    only; ``None``: billed as input), ``long_context`` the prices past a prompt size.

    Prompt caching: ``prompt_caching`` turns it on or off (``None``: the API's default: on
    for OpenAI, Anthropic and Gemini 2.5+, off for local servers); ``min_cacheable_tokens``
    is the shortest prefix that is cached and ``cache_ttl_s`` how long an entry lives after
    its last use (``None``: the API's and model family's defaults, see the module docstring).
    """

    name: str = Field(min_length=1)
    api: Api
    context_window: int = Field(gt=0)
    max_output_tokens: int = Field(gt=0)
    rpm: int | None = Field(default=None, gt=0)
    tpm: int | None = Field(default=None, gt=0)
    itpm: int | None = Field(default=None, gt=0)
    otpm: int | None = Field(default=None, gt=0)
    rpd: int | None = Field(default=None, gt=0)
    short_window_s: float | None = Field(default=None, ge=0, le=60)
    ttft_ms: float = Field(default=0.0, ge=0)
    tokens_per_s: float = Field(default=0.0, ge=0, description="0 means instantaneous")
    faults: dict[FaultKind, float] = Field(default_factory=dict)
    input_price_per_mtok: float = Field(default=0.0, ge=0)
    output_price_per_mtok: float = Field(default=0.0, ge=0)
    cached_input_price_per_mtok: float | None = Field(default=None, ge=0)
    cache_write_price_per_mtok: float | None = Field(default=None, ge=0)
    long_context: LongContextPrices | None = None
    prompt_caching: bool | None = None
    min_cacheable_tokens: int | None = Field(default=None, gt=0)
    cache_ttl_s: float | None = Field(default=None, gt=0)
    scripts: tuple[Script, ...] = ()

    @field_validator("faults")
    @classmethod
    def _probabilities(cls, value: dict[FaultKind, float]) -> dict[FaultKind, float]:
        for kind, p in value.items():
            if not 0.0 <= p <= 1.0:
                raise ValueError(f"probability of fault {kind!r} must be within 0..1, got {p}")
        if sum(value.values()) > 1.0 + 1e-9:
            raise ValueError("fault probabilities add up to more than 1")
        return value

    @model_validator(mode="after")
    def _split_token_limits(self) -> ModelSpec:
        if self.api != "anthropic" and (self.itpm or self.otpm):
            raise ValueError(
                f"itpm and otpm are Anthropic's limits; a model of api {self.api!r} takes tpm"
            )
        return self

    @model_validator(mode="after")
    def _prices_and_caching(self) -> ModelSpec:
        writes = self.cache_write_price_per_mtok is not None or (
            self.long_context is not None
            and self.long_context.cache_write_price_per_mtok is not None
        )
        if writes and self.api != "anthropic":
            raise ValueError(
                "cache_write_price_per_mtok is Anthropic's cache-write price; a model of api "
                f"{self.api!r} writes its prompt cache for free"
            )
        if self.api in LOCAL_APIS:
            priced = self.input_price_per_mtok or self.output_price_per_mtok
            if priced or self.cached_input_price_per_mtok is not None or self.long_context:
                raise ValueError(f"a local model (api {self.api!r}) has no price")
            if self.prompt_caching:
                raise ValueError(f"a local model (api {self.api!r}) has no prompt caching")
        return self

    @property
    def day_zone(self) -> str:
        """The time zone whose midnight resets this model's requests-per-day counter."""
        return DAY_ZONES.get(self.api, "UTC")

    @property
    def caches_prompts(self) -> bool:
        """Whether this model caches prompts (``prompt_caching``, else the API's default)."""
        if self.prompt_caching is not None:
            return self.prompt_caching
        if self.api == "gemini":
            return _GEMINI_WITHOUT_IMPLICIT_CACHE.search(self.name) is None
        return self.api in ("openai", "anthropic")

    @property
    def min_cacheable(self) -> int:
        """The shortest prompt prefix, in tokens, this model caches."""
        if self.min_cacheable_tokens is not None:
            return self.min_cacheable_tokens
        if self.api == "openai":
            return OPENAI_MIN_CACHEABLE
        table = _ANTHROPIC_MIN_CACHEABLE if self.api == "anthropic" else _GEMINI_MIN_CACHEABLE
        for pattern, minimum in table:
            if re.search(pattern, self.name):
                return minimum
        return _UNKNOWN_MIN_CACHEABLE

    @property
    def cache_ttl(self) -> float:
        """Seconds a prompt-cache entry lives after its last use."""
        return CACHE_TTL_S if self.cache_ttl_s is None else self.cache_ttl_s

    def price(self) -> Price:
        """The catalog's :class:`~llmrelay.catalog.Price` of these prices: the one rule that
        turns a call's usage into micro-dollars."""
        tier = self.long_context
        return Price(
            input=self.input_price_per_mtok,
            output=self.output_price_per_mtok,
            cached_input=self.cached_input_price_per_mtok,
            cache_write=self.cache_write_price_per_mtok,
            long_context=None
            if tier is None
            else LongContext(
                above=tier.above,
                input=tier.input_price_per_mtok,
                output=tier.output_price_per_mtok,
                cached_input=tier.cached_input_price_per_mtok,
                cache_write=tier.cache_write_price_per_mtok,
            ),
        )


class SimulatorConfig(_Strict):
    """The whole simulator: models plus global knobs."""

    models: tuple[ModelSpec, ...] = Field(min_length=1)
    seed: int = 0
    hang_s: float = Field(
        default=600.0, gt=0, description="how long a 'timeout' fault hangs before answering"
    )
    slow_s: float = Field(
        default=2.0, ge=0, description="extra time a 'slow' fault adds before a normal answer"
    )
    scripts: tuple[Script, ...] = Field(
        default=(), description="scripted replies shared by every model, tried after its own"
    )
    short_window_s: float | None = Field(
        default=1.0,
        ge=0,
        le=60,
        description="also enforce limit/60 a second over this window (0 or null: the minute only)",
    )

    @field_validator("models")
    @classmethod
    def _unique(cls, value: tuple[ModelSpec, ...]) -> tuple[ModelSpec, ...]:
        seen: set[str] = set()
        for spec in value:
            if spec.name in seen:
                raise ValueError(f"model {spec.name!r} is listed twice")
            seen.add(spec.name)
        return value

    def model(self, name: str) -> ModelSpec | None:
        """The model called ``name``; Ollama names without a tag mean ``:latest``, as there."""
        for spec in self.models:
            if spec.name == name:
                return spec
        base, _, tag = name.partition(":")
        for spec in self.models:
            if spec.api == "ollama" and _ollama_name(spec.name) == f"{base}:{tag or 'latest'}":
                return spec
        return None

    def window_s(self, spec: ModelSpec) -> float:
        """The short window enforced for ``spec`` in seconds (0: the minute only)."""
        window = self.short_window_s if spec.short_window_s is None else spec.short_window_s
        return window or 0.0

    def patched(self, patch: Mapping[str, Any]) -> SimulatorConfig:
        """A copy with ``patch`` applied: models are merged by name, other keys replaced."""
        data = self.model_dump()
        by_name = {m["name"]: m for m in data["models"]}
        for key, value in patch.items():
            if key != "models":
                data[key] = value
                continue
            if not isinstance(value, list):
                raise ConfigError("'models' must be a list of model entries")
            for entry in value:
                if not isinstance(entry, dict) or "name" not in entry:
                    raise ConfigError("every entry of 'models' needs a 'name'")
                by_name[entry["name"]] = {**by_name.get(entry["name"], {}), **entry}
        data["models"] = list(by_name.values())
        return validate_config(data, source="POST /_sim/config")


def _ollama_name(name: str) -> str:
    return name if ":" in name else f"{name}:latest"


def _format_errors(exc: ValidationError, source: str) -> str:
    lines = [f"invalid simulator config in {source}:"]
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"])
        lines.append(f"  {loc or '(top level)'}: {err['msg']}")
    return "\n".join(lines)


def validate_config(data: object, *, source: str) -> SimulatorConfig:
    """Validate parsed YAML/JSON; raise :class:`ConfigError` naming ``source`` and each key."""
    if not isinstance(data, dict):
        raise ConfigError(f"invalid simulator config in {source}: expected a mapping at top level")
    try:
        return SimulatorConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_errors(exc, source)) from None


def load_config(path: str | Path | None = None) -> SimulatorConfig:
    """Load a YAML config file, or the default one shipped with the package."""
    if path is None:
        text = resources.files("llmrelay.simulator").joinpath("default.yaml").read_text()
        source = "llmrelay/simulator/default.yaml"
    else:
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"cannot read simulator config {path}: {exc.strerror}") from None
        source = str(path)
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML in {source}: {exc}") from None
    return validate_config(data, source=source)
