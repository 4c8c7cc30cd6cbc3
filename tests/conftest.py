"""Shared fixtures: the ``simulator`` fixture comes from the ``llmrelay.testing`` plugin."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from llmrelay.providers import Deployment, HttpClient, Provider, Timeouts, default_registry
from llmrelay.testing import SimulatorHandle


@dataclass(frozen=True)
class AdapterCase:
    provider: str
    model: str
    path: str = ""

    def deployment(
        self, sim: SimulatorHandle, *, api_key: str = "sk-test", **kw: object
    ) -> Deployment:
        return Deployment(
            provider=self.provider,
            model=self.model,
            api_key=api_key,
            base_url=sim.url + self.path,
            **kw,
        )  # type: ignore[arg-type]


ADAPTERS = [
    AdapterCase("openai", "sim-openai", "/v1"),
    AdapterCase("openai_compatible", "sim-ollama", "/v1"),
    AdapterCase("anthropic", "sim-anthropic"),
    AdapterCase("gemini", "sim-gemini"),
    AdapterCase("ollama", "sim-ollama"),
]


@pytest.fixture(params=ADAPTERS, ids=lambda c: c.provider)
def case(request: pytest.FixtureRequest) -> AdapterCase:
    return request.param  # type: ignore[no-any-return]


@pytest.fixture
async def http_client() -> AsyncIterator[HttpClient]:
    async with HttpClient() as client:
        yield client


@pytest.fixture
def make_provider(simulator: SimulatorHandle, http_client: HttpClient, case: AdapterCase):  # type: ignore[no-untyped-def]
    def make(**kw: object) -> Provider:
        return default_registry().create(case.deployment(simulator, **kw), http_client)

    return make


FAST_TIMEOUTS = Timeouts(connect=2.0, first_byte=0.5, idle=0.5)
