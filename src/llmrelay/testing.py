"""Test helpers for llmrelay users and for llmrelay's own tests.

Load as a pytest plugin (``pytest -p llmrelay.testing`` or
``pytest_plugins = ["llmrelay.testing"]``) to get the ``simulator`` fixture: a provider
simulator on a free loopback port, reset before each test. Outside pytest, use
:class:`SimulatorHandle` with :class:`~llmrelay.simulator.SimulatorServer` (in this
process) or :func:`start_simulator_process` (a separate process).
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from typing import Any

import pytest
import yaml

from llmrelay.simulator.config import SimulatorConfig, validate_config
from llmrelay.simulator.server import SimulatorServer

TEST_MODELS: list[dict[str, Any]] = [
    {"name": "sim-openai", "api": "openai", "context_window": 16000, "max_output_tokens": 4096},
    {
        "name": "sim-anthropic",
        "api": "anthropic",
        "context_window": 16000,
        "max_output_tokens": 4096,
    },
    {"name": "sim-gemini", "api": "gemini", "context_window": 16000, "max_output_tokens": 4096},
    {"name": "sim-ollama", "api": "ollama", "context_window": 16000, "max_output_tokens": 4096},
]
"""Zero-latency, unlimited models, one per wire format: the default of the fixtures."""


def make_config(**overrides: Any) -> SimulatorConfig:
    """The :data:`TEST_MODELS` config, with top-level keys replaced by ``overrides``."""
    return validate_config({"models": TEST_MODELS, **overrides}, source="llmrelay.testing")


class SimulatorHandle:
    """Talks to a running simulator's control endpoints (``/_sim/...``)."""

    def __init__(self, url: str, *, pid: int | None = None) -> None:
        self.url = url.rstrip("/")
        self.pid = pid
        """The simulator's process id when it runs in a process of its own."""

    @property
    def openai_base_url(self) -> str:
        """Base URL for OpenAI SDKs and OpenAI-compatible clients (ends in ``/v1``)."""
        return f"{self.url}/v1"

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(
            self.url + path, data=data, method=method, headers={"content-type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode("utf-8", "replace")
            raise RuntimeError(f"simulator {method} {path} failed: {exc.code} {detail}") from None

    def ledger(self) -> dict[str, Any]:
        """What was served and refused, per API key and model."""
        return dict(self._call("GET", "/_sim/ledger"))

    def usage(self, api_key: str, model: str) -> dict[str, Any]:
        """The ledger entry of one key and model (zeros if it saw no traffic)."""
        entry = self.ledger()["keys"].get(api_key, {}).get(model)
        return entry or {
            "requests": 0,
            "input_tokens": 0,
            "cached_input_tokens": 0,
            "cache_write_input_tokens": 0,
            "output_tokens": 0,
            "cost_micros": 0,
            "cost_usd": 0.0,
            "refused": {},
            "refused_by_limit": {},
        }

    def reset(self) -> None:
        """Forget usage and limits; restore the start-up config; reseed fault draws."""
        self._call("POST", "/_sim/reset", {})

    def configure(self, patch: Mapping[str, Any]) -> dict[str, Any]:
        """Apply a config patch (models merged by name) and return the new config."""
        return dict(self._call("POST", "/_sim/config", dict(patch)))

    def set_model(self, model: str, **fields: Any) -> None:
        """Change keys of one model, e.g. ``rpm=5, ttft_ms=100``."""
        self.configure({"models": [{"name": model, **fields}]})

    def set_faults(self, model: str, faults: Mapping[str, float]) -> None:
        """Inject faults: ``{"500": 0.2, "stream_cut": 1.0}``; ``{}`` clears them."""
        self.set_model(model, faults=dict(faults))

    def set_limits(
        self,
        model: str,
        *,
        rpm: int | None = None,
        tpm: int | None = None,
        itpm: int | None = None,
        otpm: int | None = None,
        rpd: int | None = None,
        short_window_s: float | None = None,
    ) -> None:
        """Replace a model's limits; those not given are lifted.

        ``itpm`` / ``otpm`` are Anthropic's input / output tokens per minute. Every
        per-minute limit is also enforced over the short window, ``short_window_s`` seconds
        (``None``: the config's, 1 s by default; 0: the minute only).
        """
        self.set_model(
            model,
            rpm=rpm,
            tpm=tpm,
            itpm=itpm,
            otpm=otpm,
            rpd=rpd,
            short_window_s=short_window_s,
        )


@contextlib.contextmanager
def start_simulator_process(
    config: SimulatorConfig | None = None, *, python: str = sys.executable
) -> Iterator[SimulatorHandle]:
    """Run ``llmrelay simulate`` in a child process on a free port; stop it on exit."""
    with tempfile.TemporaryDirectory() as tmp:
        args = [python, "-m", "llmrelay.cli", "simulate", "--port", "0"]
        if config is not None:
            path = os.path.join(tmp, "simulator.yaml")
            with open(path, "w") as fh:
                yaml.safe_dump(config.model_dump(mode="json"), fh)
            args += ["--config", path]
        process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            assert process.stdout is not None
            first = process.stdout.readline()
            if "listening on" not in first:
                process.kill()
                _, err = process.communicate(timeout=10)
                raise RuntimeError(f"simulator process failed to start: {first}{err}")
            yield SimulatorHandle(first.rsplit(" ", 1)[-1].strip(), pid=process.pid)
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@pytest.fixture(scope="session")
def simulator_config() -> SimulatorConfig:
    """The config the ``simulator`` fixture starts with; override it in a conftest."""
    return make_config()


@pytest.fixture(scope="session")
def simulator_server(simulator_config: SimulatorConfig) -> Iterator[SimulatorServer]:
    """One in-process simulator for the whole session."""
    with SimulatorServer(simulator_config) as server:
        yield server


@pytest.fixture
def simulator(simulator_server: SimulatorServer) -> SimulatorHandle:
    """A simulator on loopback, reset (usage, limits, faults, config) for this test."""
    handle = SimulatorHandle(simulator_server.url)
    handle.reset()
    return handle
