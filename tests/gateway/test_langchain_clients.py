"""LangChain's own chat models, ``ChatOpenAI`` and ``ChatAnthropic``, pointed at the
gateway: invoke, stream and tools work as against the services."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from langchain_anthropic import ChatAnthropic
from langchain_core.messages import AIMessage, AIMessageChunk, HumanMessage, ToolMessage
from langchain_openai import ChatOpenAI
from pydantic import SecretStr

from gateway.gateway_support import MASTER, running_gateway
from llmrelay.gateway.server import GatewayServer
from llmrelay.testing import SimulatorHandle


@pytest.fixture
def gateway(simulator: SimulatorHandle, tmp_path: Path) -> Iterator[GatewayServer]:
    with running_gateway(simulator, tmp_path) as server:
        yield server


@pytest.fixture
def chat_openai(gateway: GatewayServer) -> ChatOpenAI:
    return ChatOpenAI(
        base_url=f"{gateway.url}/v1", api_key=SecretStr(MASTER), model="default", max_retries=0
    )


@pytest.fixture
def chat_anthropic(gateway: GatewayServer) -> ChatAnthropic:
    return ChatAnthropic(  # type: ignore[call-arg]  # the stubs miss the aliases it accepts
        base_url=gateway.url, api_key=SecretStr(MASTER), model="claude", max_retries=0,
        max_tokens=200,
    )  # fmt: skip


def get_weather(city: str) -> str:
    """The weather in a city."""
    return f"18 C and sunny in {city}"


def test_chat_openai_invoke(chat_openai: ChatOpenAI) -> None:
    """invoke answers an AIMessage with the text and token usage."""
    answer = chat_openai.invoke("Hello LangChain")
    assert isinstance(answer, AIMessage)
    assert answer.content == "Echo: Hello LangChain"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 5


def test_chat_openai_stream(chat_openai: ChatOpenAI) -> None:
    """stream yields chunks that add up to the answer."""
    chunks = list(chat_openai.stream("Hello LangChain"))
    assert all(isinstance(c, AIMessageChunk) for c in chunks)
    assert "".join(str(c.content) for c in chunks) == "Echo: Hello LangChain"


async def test_chat_openai_astream(chat_openai: ChatOpenAI) -> None:
    """astream yields the same answer asynchronously."""
    chunks = [chunk async for chunk in chat_openai.astream("Hello LangChain")]
    assert "".join(str(c.content) for c in chunks) == "Echo: Hello LangChain"


def test_chat_openai_bind_tools_round_trip(chat_openai: ChatOpenAI) -> None:
    """bind_tools: the model calls the tool with parsed arguments, and its result sent back
    as a ToolMessage is answered."""
    model = chat_openai.bind_tools([get_weather])
    question = HumanMessage("Call get_weather for 'Paris'")
    call = model.invoke([question])
    assert isinstance(call, AIMessage)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("get_weather", {"city": "Paris"})]
    result = ToolMessage(get_weather("Paris"), tool_call_id=call.tool_calls[0]["id"] or "")
    answer = model.invoke([question, call, result])
    assert answer.content == "The tool get_weather returned: 18 C and sunny in Paris"


def test_chat_anthropic_invoke(chat_anthropic: ChatAnthropic) -> None:
    """invoke answers an AIMessage with the text and token usage."""
    answer = chat_anthropic.invoke("Hello LangChain")
    assert isinstance(answer, AIMessage)
    assert answer.text == "Echo: Hello LangChain"
    assert answer.usage_metadata is not None and answer.usage_metadata["output_tokens"] == 5


def test_chat_anthropic_stream(chat_anthropic: ChatAnthropic) -> None:
    """stream yields chunks that add up to the answer."""
    chunks = list(chat_anthropic.stream("Hello LangChain"))
    assert "".join(c.text for c in chunks) == "Echo: Hello LangChain"


def test_chat_anthropic_bind_tools(chat_anthropic: ChatAnthropic) -> None:
    """bind_tools: the model calls the tool with parsed arguments."""
    call = chat_anthropic.bind_tools([get_weather]).invoke("Call get_weather for 'Oslo'")
    assert isinstance(call, AIMessage)
    assert [(c["name"], c["args"]) for c in call.tool_calls] == [("get_weather", {"city": "Oslo"})]
