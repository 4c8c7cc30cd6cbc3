"""ChatLLMRelay: LangChain's standard chat-model tests, unit and against the simulator."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from langchain_tests.integration_tests import ChatModelIntegrationTests
from langchain_tests.unit_tests import ChatModelUnitTests

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.integrations.langchain import ChatLLMRelay
from llmrelay.simulator.server import SimulatorServer
from llmrelay.testing import make_config

SIM: dict[str, Any] = {
    "base_url": "",
    "api_key": "sk-lc",
    "context_window": 16000,
    "max_output_tokens": 4096,
}


@pytest.fixture(scope="module")
def relay() -> Iterator[SmartLLM]:
    with SimulatorServer(make_config()) as server:
        deployment = {**SIM, "base_url": server.url + "/v1"}
        llm = LLMBuilder().with_primary("openai", "sim-openai", **deployment).build()
        yield llm
        llm.close()


class TestChatLLMRelayUnit(ChatModelUnitTests):
    @property
    def chat_model_class(self) -> type[ChatLLMRelay]:
        return ChatLLMRelay

    @property
    def chat_model_params(self) -> dict[str, object]:
        return {"model": "default"}


class TestChatLLMRelayIntegration(ChatModelIntegrationTests):
    @pytest.fixture(autouse=True)
    def _bind(self, relay: SmartLLM) -> None:
        self._relay = relay

    @property
    def chat_model_class(self) -> type[ChatLLMRelay]:
        return ChatLLMRelay

    @property
    def chat_model_params(self) -> dict[str, object]:
        return {"model": "default", "llm": self._relay}
