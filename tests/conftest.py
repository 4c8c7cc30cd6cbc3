"""Shared fixtures: the ``simulator`` fixture comes from the ``llmrelay.testing`` plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

import pytest

from llmrelay import SmartLLM
from llmrelay.providers import Deployment, HttpClient, Provider, Timeouts, default_registry
from llmrelay.testing import SimulatorHandle


@dataclass(frozen=True)
class AdapterCase:
    provider: str
    model: str
    path: str = ""

    def deployment(
        self, sim: SimulatorHandle, *, api_key: str = "sk-test", timeouts: Timeouts | None = None
    ) -> Deployment:
        return Deployment(
            provider=self.provider,
            model=self.model,
            api_key=api_key,
            base_url=sim.url + self.path,
            timeouts=timeouts or Timeouts(),
        )


class ProviderFactory(Protocol):
    """Makes the current adapter's provider against the simulator (the ``make_provider``
    fixture)."""

    def __call__(self, *, api_key: str = ..., timeouts: Timeouts | None = ...) -> Provider: ...


ADAPTERS = [
    AdapterCase("openai", "sim-openai", "/v1"),
    AdapterCase("openai_compatible", "sim-ollama", "/v1"),
    AdapterCase("anthropic", "sim-anthropic"),
    AdapterCase("gemini", "sim-gemini"),
    AdapterCase("ollama", "sim-ollama"),
]


@pytest.fixture(params=ADAPTERS, ids=lambda c: c.provider)
def case(request: pytest.FixtureRequest) -> AdapterCase:
    param: AdapterCase = request.param
    return param


@pytest.fixture
async def http_client() -> AsyncIterator[HttpClient]:
    async with HttpClient() as client:
        yield client


@pytest.fixture
def make_provider(
    simulator: SimulatorHandle, http_client: HttpClient, case: AdapterCase
) -> ProviderFactory:
    def make(*, api_key: str = "sk-test", timeouts: Timeouts | None = None) -> Provider:
        deployment = case.deployment(simulator, api_key=api_key, timeouts=timeouts)
        return default_registry().create(deployment, http_client)

    return make


FAST_TIMEOUTS = Timeouts(connect=2.0, first_byte=0.5, idle=0.5)


@pytest.fixture
async def closing() -> AsyncIterator[list[SmartLLM]]:
    """SmartLLMs a test makes; each is closed when the test ends."""
    made: list[SmartLLM] = []
    yield made
    for llm in made:
        await llm.aclose()
