"""Simulator configuration: the models it serves, their limits, latency and faults.

Validated with pydantic so that a typo in a YAML file is reported with the file, the key
and what was expected, never as a traceback.
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


class ModelSpec(_Strict):
    """One simulated model.

    Limits are per API key: ``rpm`` requests, ``tpm`` tokens (prompt + ``max_tokens``)
    per minute; ``itpm`` / ``otpm`` input / output tokens per minute, as Anthropic
    counts them (Anthropic models only); ``rpd`` requests per day. ``short_window_s``
    overrides the config's short window for this model (``None``: the config's).
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

    @property
    def day_zone(self) -> str:
        """The time zone whose midnight resets this model's requests-per-day counter."""
        return DAY_ZONES.get(self.api, "UTC")


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
