"""ChatLLMRelay: LangChain's standard chat-model tests, unit and against the simulator."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

pytest.importorskip("langchain_tests")

from langchain_tests.integration_tests import ChatModelIntegrationTests  # noqa: E402 - after the skip
from langchain_tests.unit_tests import ChatModelUnitTests  # noqa: E402 - after the skip

from llmrelay import LLMBuilder, SmartLLM  # noqa: E402 - after the skip
from llmrelay.integrations.langchain import ChatLLMRelay  # noqa: E402 - after the skip
from llmrelay.simulator.server import SimulatorServer  # noqa: E402 - after the skip
from llmrelay.testing import make_config  # noqa: E402 - after the skip


@pytest.fixture(scope="module")
def relay() -> Iterator[SmartLLM]:
    with SimulatorServer(make_config()) as server:
        llm = (
            LLMBuilder()
            .with_primary("openai", "sim-openai", base_url=server.url + "/v1", api_key="sk-lc",
                          context_window=16000, max_output_tokens=4096)  # fmt: skip
            .build()
        )
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
