"""The simulator itself: config validation, limits, ledger, faults, scripts, processes."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from llmrelay.errors import ConfigError
from llmrelay.simulator import Simulator, load_config
from llmrelay.simulator.config import validate_config
from llmrelay.testing import SimulatorHandle, make_config, start_simulator_process

CHAT: dict[str, object] = {"model": "sim-openai", "messages": [{"role": "user", "content": "hi"}]}
AUTH = {"authorization": "Bearer sk-sim"}


def post(
    sim: SimulatorHandle, body: dict[str, object] = CHAT, key: str = "sk-sim"
) -> httpx.Response:
    return httpx.post(
        sim.openai_base_url + "/chat/completions",
        json=body,
        headers={"authorization": f"Bearer {key}"},
    )


def test_default_config_loads_every_api() -> None:
    """The shipped config has realistic models of every API and local server."""
    config = load_config()
    assert {m.api for m in config.models} == {
        "openai",
        "anthropic",
        "gemini",
        "ollama",
        "vllm",
        "llamacpp",
    }
    assert all(m.context_window >= 8192 for m in config.models)
    assert config.short_window_s == 1.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("models: []", "models: Tuple should have at least 1 item"),
        (
            "models:\n  - {name: a, api: openai, context_window: 10, max_output_tokens: 5, rmp: 3}",
            "models.0.rmp: Extra inputs are not permitted",
        ),
        (
            "models:\n  - {name: a, api: cohere, context_window: 10, max_output_tokens: 5}",
            "models.0.api: Input should be 'openai', 'anthropic', 'gemini', 'ollama', 'vllm' or 'llamacpp'",
        ),
        (
            "models:\n  - {name: a, api: openai, context_window: 10, max_output_tokens: 5, faults: {'500': 2}}",
            "probability of fault '500' must be within 0..1",
        ),
        (
            "models:\n  - {name: a, api: openai, context_window: 10, max_output_tokens: 5, faults: {boom: 0.1}}",
            "models.0.faults.boom.[key]",
        ),
        (
            "models:\n  - {name: a, api: openai, context_window: -1, max_output_tokens: 5}",
            "models.0.context_window: Input should be greater than 0",
        ),
        ("models: [ {name: a", "invalid YAML in"),
        ("- just a list", "expected a mapping at top level"),
    ],
)
def test_bad_config_names_file_and_key(tmp_path: Path, text: str, expected: str) -> None:
    """A malformed config raises ConfigError naming the file and the offending key."""
    path = tmp_path / "sim.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert str(path) in str(caught.value) and expected in str(caught.value)


def test_missing_config_file() -> None:
    """A config path that does not exist is a ConfigError, not a traceback."""
    with pytest.raises(ConfigError, match=r"cannot read simulator config /nope\.yaml"):
        load_config("/nope.yaml")


def test_cli_reports_bad_config_without_traceback(tmp_path: Path) -> None:
    """`llmrelay simulate --config bad.yaml` exits 2 with one clear message."""
    path = tmp_path / "bad.yaml"
    path.write_text("models:\n  - {name: a, api: openai}\n")
    done = subprocess.run(
        [sys.executable, "-m", "llmrelay.cli", "simulate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "models.0.context_window: Field required" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("argv", [["--help"], ["simulate", "--help"]])
def test_cli_help(argv: list[str]) -> None:
    """Every command documents itself."""
    done = subprocess.run(
        [sys.executable, "-m", "llmrelay.cli", *argv], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and "usage: llmrelay" in done.stdout


def test_missing_key_gets_401(simulator: SimulatorHandle) -> None:
    """No API key: the provider's 401 body."""
    response = httpx.post(simulator.openai_base_url + "/chat/completions", json=CHAT)
    assert response.status_code == 401
    assert "didn't provide an API key" in response.json()["error"]["message"]


def test_unknown_model_is_404_in_provider_format(simulator: SimulatorHandle) -> None:
    """An unknown model gets OpenAI's model_not_found, naming the model."""
    response = post(simulator, {**CHAT, "model": "gpt-9"})
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "model_not_found" and "gpt-9" in response.text


def test_limits_per_key_and_ledger(simulator: SimulatorHandle) -> None:
    """RPM is enforced per API key; the ledger counts what was served and refused."""
    simulator.set_limits("sim-openai", rpm=2, short_window_s=0)
    assert [post(simulator).status_code for _ in range(3)] == [200, 200, 429]
    assert post(simulator, key="sk-other").status_code == 200
    mine = simulator.usage("sk-sim", "sim-openai")
    assert mine["requests"] == 2 and mine["refused"] == {"429": 1}
    assert mine["refused_by_limit"] == {"429:requests": 1}
    assert mine["cost_usd"] == 0.0 and mine["input_tokens"] > 0
    assert simulator.ledger()["totals"]["requests"] == 3


def test_token_limit_counts_prompt_plus_max_tokens(simulator: SimulatorHandle) -> None:
    """TPM admits a request only if prompt + max_tokens fit; the 429 says tokens."""
    simulator.set_limits("sim-openai", tpm=1000)
    body = {**CHAT, "messages": [{"role": "user", "content": "word " * 300}], "max_tokens": 400}
    assert post(simulator, body).status_code == 200  # ~300 in + ~300 out of 1000 used
    refused = post(simulator, body)  # needs ~300 + 400 more
    assert refused.status_code == 429 and "tokens per min (TPM)" in refused.text
    assert refused.headers["x-ratelimit-limit-tokens"] == "1000"


def test_cost_uses_configured_prices(simulator: SimulatorHandle) -> None:
    """The ledger prices usage at the model's per-million prices."""
    simulator.set_model("sim-openai", input_price_per_mtok=1_000_000.0, output_price_per_mtok=0.0)
    usage = post(simulator).json()["usage"]
    assert simulator.usage("sk-sim", "sim-openai")["cost_usd"] == pytest.approx(
        usage["prompt_tokens"]
    )


def test_faults_are_deterministic_for_a_seed(simulator: SimulatorHandle) -> None:
    """The same seed draws the same faults in the same order."""

    def run() -> list[int]:
        simulator.reset()
        simulator.set_faults("sim-openai", {"500": 0.5})
        return [post(simulator).status_code for _ in range(20)]

    first = run()
    assert first == run() and {200, 500} <= set(first)


def test_scripted_replies(simulator: SimulatorHandle) -> None:
    """A script matched on the last user message answers with its groups filled in."""
    simulator.set_model("sim-openai", scripts=[{"pattern": r"parse (\S+)", "reply": "title={0}"}])
    body = {**CHAT, "messages": [{"role": "user", "content": "parse Movie.2019.mkv"}]}
    assert (
        post(simulator, body).json()["choices"][0]["message"]["content"] == "title=Movie.2019.mkv"
    )


def test_config_endpoint_rejects_bad_patch(simulator: SimulatorHandle) -> None:
    """POST /_sim/config with a bad value is a 422 naming the key; the config is unchanged."""
    response = httpx.post(
        simulator.url + "/_sim/config", json={"models": [{"name": "sim-openai", "rpm": -5}]}
    )
    assert response.status_code == 422 and "models.0.rpm" in response.json()["error"]["message"]
    assert post(simulator).status_code == 200


@pytest.mark.looptime
async def test_latency_is_simulated() -> None:
    """An answer takes ttft_ms plus its output tokens at tokens_per_s, on the loop's clock."""
    config = validate_config(
        {
            "models": [
                {
                    "name": "slow",
                    "api": "openai",
                    "context_window": 100,
                    "max_output_tokens": 10,
                    "ttft_ms": 200,
                    "tokens_per_s": 4,
                }
            ]
        },
        source="test",
    )
    loop = asyncio.get_running_loop()
    app = Simulator(config, clock=loop.time)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://sim") as client:
        started = loop.time()
        response = await client.post(
            "/v1/chat/completions", headers=AUTH, json={**CHAT, "model": "slow"}
        )
    assert response.json()["usage"]["completion_tokens"] == 3  # "Echo: hi"
    assert loop.time() - started == pytest.approx(0.2 + 3 / 4)


def test_simulator_in_a_subprocess() -> None:
    """start_simulator_process runs the CLI on a free port and stops it afterwards."""
    with start_simulator_process(make_config()) as sim:
        assert post(sim).json()["choices"][0]["message"]["content"] == "Echo: hi"
        assert sim.usage("sk-sim", "sim-openai")["requests"] == 1
