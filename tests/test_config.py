"""The YAML configuration: validation errors name the file and the key; ${ENV}; any case."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmrelay import SmartLLM
from llmrelay.config import load_settings
from llmrelay.errors import ConfigError
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


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "llmrelay.yaml"
    path.write_text(text)
    return path


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: {}", "models: Dictionary should have at least 1 item"),
        (
            "models: {default: {primary: [{provider: opnai, model: x}]}}",
            "models.default.primary.0.provider: Value error, unknown provider 'opnai'",
        ),
        (
            "models: {default: {primary: [{provider: openai, model: x, rpm: many}]}}",
            "models.default.primary.0.rpm: Input should be a valid integer",
        ),
        (
            "models: {default: {primary: [{provider: openai, model: x, rpmm: 5}]}}",
            "models.default.primary.0.rpmm: Extra inputs are not permitted",
        ),
        (
            "models: {default: {primary: []}}",
            "models.default.primary: List should have at least 1 item",
        ),
        (
            "routing: {context_margin: 1.5}\nmodels: {}",
            "routing.context_margin: Input should be less than or equal to 1",
        ),
        (
            "models: {default: {primary: [{provider: openai, model: x, api_key: '${NOPE_NOT_SET}'}]}}",
            "models.default.primary.0.api_key: environment variable NOPE_NOT_SET is not set",
        ),
        ("- just a list", "expected a mapping at the top level"),
        ("models: [unclosed", "not valid YAML"),
    ],
)
def test_invalid_files_name_the_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    """Each mistake is a ConfigError with the path, the key and what was expected."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


def test_model_missing_from_the_catalog_needs_a_window(tmp_path: Path) -> None:
    """An unknown model without context_window is refused at start, naming where."""
    path = write(
        tmp_path,
        "models: {default: {primary: [{provider: vllm, model: my-llama, base_url: 'http://x'}]}}",
    )
    with pytest.raises(
        ConfigError, match=r"models\.default\.primary\.0: vllm/my-llama is not in the catalog"
    ):
        SmartLLM.from_config(path)


def test_unknown_policy_and_balancer_are_config_errors(tmp_path: Path) -> None:
    """Policy and load-balancing names are checked at start."""
    body = "models: {default: {primary: [{provider: openai, model: gpt-4o-mini}], load_balancing: fastest}}"
    with pytest.raises(ConfigError, match="unknown load-balancing strategy 'fastest'"):
        SmartLLM.from_config(write(tmp_path, body))
    body = "routing: {policy: yolo}\nmodels: {default: {primary: [{provider: openai, model: gpt-4o-mini}]}}"
    with pytest.raises(ConfigError, match="unknown fallback policy 'yolo'"):
        SmartLLM.from_config(write(tmp_path, body))


def test_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """A path that does not exist says so."""
    with pytest.raises(ConfigError, match="cannot read the configuration"):
        load_settings(tmp_path / "absent.yaml")


def test_for_tier_without_any_key_explains(monkeypatch: pytest.MonkeyPatch) -> None:
    """No provider in the environment: the error lists the variables to set."""
    with pytest.raises(ConfigError, match="set OPENAI_API_KEY, ANTHROPIC_API_KEY"):
        SmartLLM.for_tier(env={})
