"""Fixtures of the media tests: one guessit engine per session, SmartLLMs on the simulator."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from llmrelay import LLMBuilder, SmartLLM
from llmrelay.media.analyze import Analyzer
from llmrelay.media.cache import NoCache
from llmrelay.media.config import ChainStep, MediaSettings
from llmrelay.media.service import MediaParser
from llmrelay.testing import SimulatorHandle

SIM = {"context_window": 16000, "max_output_tokens": 4096}


def reply(items: list[dict[str, Any]]) -> str:
    """A scripted reply carrying ``items`` (braces doubled: replies are format strings)."""
    return json.dumps({"items": items}).replace("{", "{{").replace("}", "}}")


def item(index: int, title: str | None, season: list[int], episode: list[int],
         year: int | None = None, kind: str = "episode") -> dict[str, Any]:  # fmt: skip
    return {"index": index, "type": kind, "title": title, "year": year, "season": season,
            "episode": episode}  # fmt: skip


@pytest.fixture(scope="session")
def analyzer() -> Analyzer:
    """guessit's rules take about a second to build: once for the session."""
    return Analyzer()


@pytest.fixture
async def chain_llm(simulator: SimulatorHandle) -> AsyncIterator[SmartLLM]:
    """Group ``cheap`` on the OpenAI simulator, ``strong`` on the Anthropic one."""
    llm = (
        LLMBuilder()
        .with_retries(0)
        .with_primary("openai", "sim-openai", group="cheap", base_url=simulator.url + "/v1",
                      api_key="sk-cheap", **SIM)
        .with_primary("anthropic", "sim-anthropic", group="strong", base_url=simulator.url,
                      api_key="sk-strong", **SIM)
        .build()
    )  # fmt: skip
    yield llm
    await llm.aclose()


MakeParser = Callable[..., MediaParser]


@pytest.fixture
async def make_parser(analyzer: Analyzer, chain_llm: SmartLLM) -> AsyncIterator[MakeParser]:
    """A MediaParser on the chain cheap → strong, no cache unless one is given."""
    made: list[MediaParser] = []

    def make(**settings: Any) -> MediaParser:
        cache = settings.pop("cache", None) or NoCache()
        settings.setdefault("chain", [ChainStep(group="cheap", trust=0.8),
                                      ChainStep(group="strong", trust=0.9)])  # fmt: skip
        parser = MediaParser(MediaSettings(**settings), llm=chain_llm, cache=cache,
                             analyzer=analyzer)  # fmt: skip
        made.append(parser)
        return parser

    yield make
    for parser in made:
        await parser.aclose()
