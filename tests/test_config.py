"""The configuration: one definition per option, errors naming file and key, ${ENV}, any case."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.builder import tier_settings
from llmrelay.config import (
    PACING,
    BreakerSettings,
    RelaySettings,
    RoutingSettings,
    SchedulerSettings,
    TimeoutSettings,
    load_settings,
    parse_settings,
)
from llmrelay.errors import ConfigError
from llmrelay.limits import DIMENSIONS, Limits
from llmrelay.providers import OpenAICompatibleProvider, Timeouts
from llmrelay.router import RouterConfig
from llmrelay.routing import BreakerConfig
from llmrelay.scheduling import SchedulerPolicy
from llmrelay.testing import SimulatorHandle

GOOD = """
Tier: tier1
Models:
  Default:
    primary:
      - {provider: OpenAI, model: sim-openai, api_key: "${SIM_KEY}",
         base_url: "${SIM_URL}/v1", context_window: 16000, rpm: 600}
    fallbacks:
      - {provider: anthropic, model: sim-anthropic, api_key: "${ANTHROPIC_SIM_KEY:-sk-b}",
         base_url: "${SIM_URL}", context_window: 16000}
Routing: {policy: smart, retries: 0}
"""

ONE = {"models": {"default": {"primary": [{"provider": "openai", "model": "gpt-4o-mini"}]}}}


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmrelay.yaml"
    path.write_text(text)
    return path


def names(struct: type[msgspec.Struct]) -> set[str]:
    return {f.name for f in msgspec.structs.fields(struct)}


async def test_a_valid_file_builds_a_working_client(
    tmp_path: Path, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Environment variables are substituted and keys match in any case."""
    monkeypatch.setenv("SIM_KEY", "sk-a")
    monkeypatch.setenv("SIM_URL", simulator.url)
    llm = SmartLLM.from_config(write(tmp_path, GOOD))
    try:
        response = await llm.ainvoke("hi", model="DEFAULT")
        assert response.content == "Echo: hi"
        assert llm.router.group("default").primary[0].scheduled.limits.rpm == 600
        assert simulator.usage("sk-a", "sim-openai")["requests"] == 1
    finally:
        await llm.aclose()


# -- one definition per option -------------------------------------------------------------


def test_every_field_of_the_runtime_structs_is_a_key() -> None:
    """The sections have exactly the structs' fields (plus their own few keys)."""
    assert set(RoutingSettings.model_fields) == names(RouterConfig) | {"policy", "breaker"}
    assert set(BreakerSettings.model_fields) == names(BreakerConfig)
    assert set(SchedulerSettings.model_fields) == names(SchedulerPolicy) | set(PACING)
    assert set(TimeoutSettings.model_fields) == names(Timeouts)
    assert set(PACING) | set(DIMENSIONS) < names(Limits)


def test_defaults_are_the_runtime_structs_own() -> None:
    """Settings left out build exactly the structs' defaults."""
    settings = parse_settings(ONE, "test")
    assert settings.routing.runtime() == RouterConfig()
    assert settings.routing.breaker.runtime() == BreakerConfig()
    assert settings.scheduler.runtime() == SchedulerPolicy()
    assert settings.scheduler.limits() == Limits()
    assert settings.timeouts.runtime() == Timeouts()


def test_the_structs_docstrings_describe_the_keys() -> None:
    """A key's description is the docstring written under its struct field."""
    assert RoutingSettings.model_fields["retries"].description == (
        "Extra tries of one deployment after a retryable error (outage, 429, 529)."
    )
    assert SchedulerSettings.model_fields["max_wait_seconds"].description == (
        "The bound when there is nowhere else to go."
    )


def test_set_values_reach_the_runtime_structs() -> None:
    """Each section's values build its struct; a deployment's timeouts override the global."""
    settings = parse_settings(
        {
            "routing": {"retries": 5, "retry_backoff_s": 0.5, "retry_backoff_max_s": 4,
                        "retry_jitter": 0, "stay_within_s": 1, "breaker": {"cooldown_s": 3}},
            "scheduler": {"max_wait_before_fallback": 10, "short_window_s": 2, "min_spacing": True},
            "timeouts": {"connect": 1, "idle": 5},
            "models": {"default": {"primary": [{"provider": "openai", "model": "gpt-4o-mini",
                                                "timeouts": {"idle": 9}}]}},
        },
        "test",
    )  # fmt: skip
    assert settings.routing.runtime() == RouterConfig(
        retries=5, retry_backoff_s=0.5, retry_backoff_max_s=4, retry_jitter=0, stay_within_s=1
    )
    assert settings.routing.breaker.runtime() == BreakerConfig(cooldown_s=3)
    assert settings.scheduler.runtime() == SchedulerPolicy(max_wait_before_fallback=10)
    assert settings.scheduler.limits(rpm=9) == Limits(rpm=9, short_window_s=2, min_spacing=True)
    deployment = settings.models["default"].primary[0]
    assert settings.timeouts.runtime(deployment.timeouts) == Timeouts(connect=1, idle=9)


async def test_builder_arguments_are_the_struct_field_names(simulator: SimulatorHandle) -> None:
    """with_routing/with_retries/with_hedging/with_scheduler/with_timeouts reach the parts."""
    llm = (
        LLMBuilder()
        .with_retries(4, retry_backoff_s=0.1, retry_backoff_max_s=2)
        .with_hedging(hedge_after_s=0.5, hedge_budget=0.2)
        .with_circuit_breaker(failure_threshold=9)
        .with_scheduler(max_wait_seconds=60, safety_margin=0)
        .with_timeouts(first_byte=30)
        .with_primary(
            "openai",
            "sim-openai",
            base_url=simulator.openai_base_url,
            api_key="k",
            rpm=100,
            timeouts={"connect": 2},
        )
        .build()
    )
    try:
        config = llm.router.config
        assert (config.retries, config.retry_backoff_s, config.retry_backoff_max_s) == (4, 0.1, 2)
        assert (config.hedge_after_s, config.hedge_budget) == (0.5, 0.2)
        candidate = llm.router.group("default").primary[0]
        assert candidate.breaker.config.failure_threshold == 9
        assert candidate.scheduled.limits == Limits(rpm=100, safety_margin=0)
        assert llm.scheduler.policy == SchedulerPolicy(max_wait_seconds=60)
        assert candidate.scheduled.provider.deployment.timeouts == Timeouts(
            connect=2, first_byte=30
        )
    finally:
        await llm.aclose()


# -- mistakes name the file and the key -----------------------------------------------------

DEPLOYMENT = "models: {default: {primary: [{provider: openai, model: gpt-4o-mini, %s}]}}"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: {}", "models: Dictionary should have at least 1 item"),
        (
            "models: {default: {primary: [{provider: opnai, model: x}]}}",
            "models.default.primary.0.provider: unknown provider 'opnai' (known: anthropic,",
        ),
        (DEPLOYMENT % "rpm: many", "models.default.primary.0.rpm: Input should be a valid integer"),
        (DEPLOYMENT % "rpm: 0", "models.default.primary.0.rpm: must be a positive integer, got 0"),
        (DEPLOYMENT % "rpmm: 5", "models.default.primary.0.rpmm: Extra inputs are not permitted"),
        (DEPLOYMENT % "context_window: -1",
         "models.default.primary.0.context_window: Input should be greater than 0"),
        ("models: {default: {primary: []}}",
         "models.default.primary: List should have at least 1 item"),
        ("routing: {context_margin: 1.5}\nmodels: {}",
         "routing.context_margin: must be in (0, 1], got 1.5"),
        ("routing: {retries: -1}\nmodels: {}", "routing.retries: must be >= 0, got -1"),
        ("routing: {retry_jitter: 1}\nmodels: {}", "routing.retry_jitter: must be in [0, 1), got 1"),
        ("routing: {hedge_quantile: 2}\nmodels: {}",
         "routing.hedge_quantile: must be in (0, 1), got 2.0"),
        ("routing: {breaker: {failure_threshold: 0}}\nmodels: {}",
         "routing.breaker.failure_threshold: failure_threshold and half_open_probes >= 1"),
        ("scheduler: {token_margin: 0.7}\nmodels: {}",
         "scheduler.token_margin: must be in [0, 0.5), got 0.7"),
        ("scheduler: {short_window_s: -1}\nmodels: {}",
         "scheduler.short_window_s: must be in [0, 60], got -1.0"),
        ("scheduler: {max_wait_seconds: -1}\nmodels: {}",
         "scheduler.max_wait_seconds: max_wait_before_fallback and max_wait_seconds must be >= 0"),
        ("scheduler: {max_rate_limit_retries: 4}\nmodels: {}",
         "scheduler.max_rate_limit_retries: Extra inputs are not permitted"),
        ("timeouts: {idle: soon}\nmodels: {}",
         "timeouts.idle: Input should be a valid number"),
        (
            "models: {default: {primary: [{provider: openai, model: x, api_key: '${NOPE_NOT_SET}'}]}}",
            "models.default.primary.0.api_key: environment variable NOPE_NOT_SET is not set",
        ),
        ("- just a list", "expected a mapping at the top level"),
        ("models: [unclosed", "not valid YAML"),
    ],
)  # fmt: skip
def test_invalid_files_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake is a ConfigError with the path, the key and what was expected."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(str(path))
    assert expected in str(caught.value)


def test_every_mistake_of_a_file_is_listed_at_once(tmp_path: Path) -> None:
    """Independent mistakes in several sections come in one error, each at its key."""
    text = """
        routing: {retries: -1, policy: yolo}
        scheduler: {token_margin: 0.9}
        models:
          default:
            primary: [{provider: openai, model: x, rpm: 0}]
            load_balancing: fastest
    """
    with pytest.raises(ConfigError) as caught:
        load_settings(write(tmp_path, textwrap.dedent(text)))
    lines = str(caught.value).splitlines()[1:]
    assert [line.split(":")[0].strip() for line in lines] == [
        "models.default.primary.0.rpm",
        "models.default.load_balancing",
        "routing.retries",
        "routing.policy",
        "scheduler.token_margin",
    ]


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"tier": "tier7", **ONE},
         "tier: unknown tier 'tier7' for openai (known: tier1, tier2, tier3, tier4, tier5)"),
        ({"tier": "free", **ONE}, "tier: unknown tier 'free' for openai"),
        ({"models": {"default": {"primary": [
            {"provider": "anthropic", "model": "claude-haiku-4-5", "tier": "tier9"}]}}},
         "models.default.primary.0.tier: unknown tier 'tier9' for anthropic (known: tier1, "),
        ({"models": {"default": {"primary": [{"provider": "openai", "model": "x"}],
                                 "fallbacks": [{"provider": "ollama", "model": "llama3.1",
                                                "tier": "tier1"}]}}},
         "models.default.fallbacks.0.tier: unknown tier 'tier1': the catalog has no tiers for "
         "ollama"),
    ],
)  # fmt: skip
def test_unknown_tiers_are_refused(data: dict[str, Any], expected: str) -> None:
    """A tier no model of the provider has would turn every limit off: it is an error."""
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, "llmrelay.yaml")
    assert f"llmrelay.yaml: invalid configuration:\n  {expected}" in str(caught.value)


def test_a_tier_is_known_from_the_catalog_including_its_overrides() -> None:
    """Gemini's free tier is valid for Gemini; a tier added under catalog: is valid too."""
    gemini = {"models": {"default": {"primary": [
        {"provider": "gemini", "model": "gemini-2.5-flash", "tier": "free"}]}}}  # fmt: skip
    assert parse_settings(gemini, "test").models["default"].primary[0].tier == "free"
    custom = {"tier": "enterprise",
              "catalog": {"openai/gpt-4o-mini": {"limits": {"enterprise": {"rpm": 90000}}}}, **ONE}  # fmt: skip
    assert parse_settings(custom, "test").tier == "enterprise"


def test_a_local_only_configuration_accepts_the_default_tier() -> None:
    """Providers without tiers (local servers) do not make the default tier an error."""
    local = {"models": {"default": {"primary": [{"provider": "ollama", "model": "llama3.1"}]}}}
    assert parse_settings(local, "test").tier == "tier1"


@pytest.mark.parametrize(
    ("base_url", "expected"),
    [
        ("127.0.0.1:8900/v1", "expected an http:// or https:// URL, got '127.0.0.1:8900/v1'"),
        ("localhost:8900", "expected an http:// or https:// URL, got 'localhost:8900'"),
        ("ftp://files.example", "expected an http:// or https:// URL, got 'ftp://files.example'"),
        ("https://", "expected an http:// or https:// URL, got 'https://'"),
    ],
)
def test_a_base_url_must_be_http(base_url: str, expected: str) -> None:
    """A base URL without a scheme, or with another scheme, is refused at its key."""
    data = {"models": {"default": {"primary": [
        {"provider": "openai", "model": "x", "base_url": base_url}]}}}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_settings(data, "llmrelay.yaml")
    assert f"models.default.primary.0.base_url: {expected}" in str(caught.value)


def test_empty_values_from_the_environment_mean_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    """``${VAR:-}`` for a key, URL or Redis gives None, so the defaults apply."""
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    data = {"redis_url": "${REDIS_X:-}", "models": {"default": {"primary": [
        {"provider": "openai", "model": "x", "base_url": "${U:-}", "api_key": "${K:-}"}]}}}  # fmt: skip
    settings = parse_settings(data, "test")
    deployment = settings.models["default"].primary[0]
    assert (settings.redis_url, deployment.base_url, deployment.api_key) == (None, None, None)


def test_policy_and_balancer_names_are_checked_when_the_file_is_read(tmp_path: Path) -> None:
    """Unknown names fail in load_settings, before anything is built or called."""
    body = "models: {default: {primary: [{provider: openai, model: x}], load_balancing: fastest}}"
    expected = "models.default.load_balancing: unknown load-balancing strategy 'fastest' (known:"
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_settings(write(tmp_path, body))
    body = "routing: {policy: yolo}\nmodels: {default: {primary: [{provider: openai, model: x}]}}"
    with pytest.raises(ConfigError, match=re.escape("routing.policy: unknown fallback policy")):
        load_settings(write(tmp_path, body))


def test_builder_mistakes_name_the_builder() -> None:
    """LLMBuilder's settings are validated like a file, named 'LLMBuilder'."""
    with pytest.raises(ConfigError) as caught:
        LLMBuilder().with_retries(-1).with_primary("openai", "x", rpm=0).build()
    assert str(caught.value) == (
        "LLMBuilder: invalid configuration:\n"
        "  models.default.primary.0.rpm: must be a positive integer, got 0\n"
        "  routing.retries: must be >= 0, got -1"
    )


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_settings(tmp_path / "absent.yaml")


# -- providers registered by configuration or in code ---------------------------------------

PROVIDER_MODULE = '''
from llmrelay.providers import OpenAICompatibleProvider

class MyCorpProvider(OpenAICompatibleProvider):
    """An OpenAI-compatible server under its own name."""
    name = "mycorp"
'''


async def test_a_provider_registered_by_import_path_serves_its_deployments(
    tmp_path: Path, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """providers: {name: module:Class} makes the name usable by deployments."""
    (tmp_path / "mycorp_llm.py").write_text(PROVIDER_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    text = f"""
        providers: {{MyCorp: "mycorp_llm:MyCorpProvider"}}
        models:
          default:
            primary: [{{provider: mycorp, model: sim-openai, base_url: "{simulator.url}/v1",
                        api_key: sk-corp}}]
    """
    llm = SmartLLM.from_config(write(tmp_path, textwrap.dedent(text)))
    try:
        assert (await llm.ainvoke("hi")).content == "Echo: hi"
        provider = llm.router.group("default").primary[0].scheduled.provider
        assert type(provider).__name__ == "MyCorpProvider"
        assert simulator.usage("sk-corp", "sim-openai")["requests"] == 1
    finally:
        await llm.aclose()


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("no_such_pkg.mod:X", "providers.mycorp: cannot import 'no_such_pkg.mod': No module named"),
        ("os:NoSuchClass", "providers.mycorp: 'os' has no class or factory named 'NoSuchClass'"),
        ("os.path", "providers.mycorp: expected 'package.module:ClassName', got 'os.path'"),
    ],
)
def test_a_bad_provider_path_names_the_key(path: str, expected: str) -> None:
    """An import path that does not lead to a factory is an error at providers.<name>."""
    with pytest.raises(ConfigError) as caught:
        parse_settings({"providers": {"mycorp": path}, **ONE}, "llmrelay.yaml")
    assert f"llmrelay.yaml: invalid configuration:\n  {expected}" in str(caught.value)


async def test_a_provider_registered_in_code_serves_its_deployments(
    simulator: SimulatorHandle,
) -> None:
    """with_provider(name, factory) lets deployments name it; without it the name is unknown."""
    with pytest.raises(ConfigError, match="provider: unknown provider 'corp'"):
        LLMBuilder().with_primary("corp", "sim-openai").build()
    made: list[str] = []

    def factory(deployment: Any, client: Any) -> OpenAICompatibleProvider:
        made.append(deployment.model)
        return OpenAICompatibleProvider(deployment, client)

    llm = (
        LLMBuilder()
        .with_provider("Corp", factory)
        .with_primary("corp", "sim-openai", base_url=simulator.openai_base_url, api_key="sk-c")
        .build()
    )
    try:
        assert (await llm.ainvoke("hi")).content == "Echo: hi"
        assert made == ["sim-openai"]
    finally:
        await llm.aclose()


# -- the environment -------------------------------------------------------------------------


async def test_a_deployment_without_base_url_uses_the_providers_variable(
    tmp_path: Path, simulator: SimulatorHandle, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OPENAI_BASE_URL points a YAML deployment elsewhere, as it does the official SDK."""
    monkeypatch.setenv("OPENAI_BASE_URL", simulator.openai_base_url)
    body = "models: {default: {primary: [{provider: openai, model: sim-openai, api_key: sk-env}]}}"
    llm = SmartLLM.from_config(write(tmp_path, body))
    try:
        assert (await llm.ainvoke("hi")).content == "Echo: hi"
        assert simulator.usage("sk-env", "sim-openai")["requests"] == 1
    finally:
        await llm.aclose()


def test_a_bad_base_url_variable_names_the_deployment_and_the_variable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A *_BASE_URL that is no URL fails at start, naming where it was used and from where."""
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "localhost:9999")
    body = "models: {default: {primary: [{provider: anthropic, model: claude-haiku-4-5}]}}"
    path = write(tmp_path, body)
    with pytest.raises(ConfigError) as caught:
        SmartLLM.from_config(path)
    message = str(caught.value)
    assert message.startswith(f"{path}: models.default.primary.0: ")
    assert "ANTHROPIC_BASE_URL" in message and "localhost:9999" in message


def test_for_tier_without_any_key_explains() -> None:
    """No provider in the environment: the error lists the variables to set."""
    with pytest.raises(
        ConfigError, match="environment: no provider configured; set OPENAI_API_KEY"
    ):
        SmartLLM.for_tier(env={})


def test_for_tier_reads_the_adapters_variables_from_the_mapping_given() -> None:
    """Keys and base URLs come from the adapters' own variable names, here from a mapping."""
    settings = tier_settings("tier2", {"GOOGLE_API_KEY": "g", "GEMINI_BASE_URL": "http://gem",
                                       "OLLAMA_HOST": "http://ollama:11434"})  # fmt: skip
    group = settings.models["default"]
    assert [(d.provider, d.model, d.base_url, d.api_key) for d in group.primary] == [
        ("gemini", "gemini-2.5-flash", "http://gem", "g")
    ]
    assert [(d.provider, d.model, d.base_url) for d in group.fallbacks] == [
        ("ollama", "llama3.1:8b", "http://ollama:11434")
    ]
    assert settings.tier == "tier2"


def test_for_tier_leaves_base_urls_to_the_adapters_with_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the process environment, base URLs are not copied: the adapters read them."""
    monkeypatch.setenv("OPENAI_API_KEY", "sk-o")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://proxy/v1")
    for name in ("ANTHROPIC_API_KEY", "GEMINI_API_KEY", "GOOGLE_API_KEY", "OLLAMA_BASE_URL",
                 "OLLAMA_HOST"):  # fmt: skip
        monkeypatch.delenv(name, raising=False)
    primary = tier_settings("tier1").models["default"].primary[0]
    assert (primary.provider, primary.api_key, primary.base_url) == ("openai", "sk-o", None)


# -- any model ------------------------------------------------------------------------------


async def test_a_model_missing_from_the_catalog_needs_nothing_more(
    simulator: SimulatorHandle,
) -> None:
    """No window, no output cap, no limits: unknown until the server or an error says."""
    llm = LLMBuilder().with_primary(
        "vllm", "sim-openai", base_url=simulator.openai_base_url, api_key="sk-any"
    ).build()  # fmt: skip
    try:
        candidate = llm.router.group("default").primary[0]
        assert candidate.max_output_tokens is None
        assert candidate.scheduled.limits.is_unlimited
        assert (await llm.ainvoke("hi")).content == "Echo: hi"
    finally:
        await llm.aclose()


def test_a_known_model_takes_window_and_limits_from_the_catalog() -> None:
    """A catalog model gets its window, output cap and the tier's limits."""
    llm = LLMBuilder().with_tier("tier2").with_primary("openai", "gpt-4o-mini").build()
    try:
        candidate = llm.router.group("default").primary[0]
        assert (candidate.context_window, candidate.max_output_tokens) == (128000, 16384)
        assert (candidate.scheduled.limits.rpm, candidate.scheduled.limits.tpm) == (5000, 2000000)
    finally:
        llm.close()


def test_settings_are_plain_data() -> None:
    """The settings round-trip through their own dump: they are data, not objects."""
    settings = parse_settings({"timeouts": {"idle": 3}, **ONE}, "test")
    assert RelaySettings.model_validate(settings.model_dump()) == settings
