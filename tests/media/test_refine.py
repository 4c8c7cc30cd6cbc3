"""LLM refinement against the simulator: batching, retries alone, checks, the chain."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from llmrelay.errors import ConfigError
from llmrelay.media.cache import SqliteCache, cache_key
from llmrelay.media.config import ChainStep
from llmrelay.media.parse import PARSER_VERSION
from llmrelay.media.result import MediaResult
from llmrelay.media.service import ParseRequest, parse_batch
from llmrelay.testing import SimulatorHandle

from .conftest import MakeParser, item, reply

SURE = "Breaking.Bad.S05E14.720p.HDTV.x264-EVOLVE.mkv"
LOW = ["One Piece 1071.mkv", "Bleach 587.mkv", "Shingeki no Kyojin 448.mkv"]
ANSWERS = [
    item(0, "One Piece", [], [1071]),
    item(1, "Bleach", [], [587]),
    item(2, "Shingeki no Kyojin", [], [448]),
]


def script(pattern: str, items: list[dict[str, object]]) -> dict[str, str]:
    return {"pattern": re.escape(pattern), "reply": reply(items)}


def requests(sim: SimulatorHandle, key: str, model: str) -> int:
    return int(sim.usage(key, model)["requests"])


async def test_low_confidence_names_share_one_call_and_confident_ones_skip_it(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """Three unsure names go in one call; the sure one is never sent; sources are recorded."""
    simulator.set_model("sim-openai", scripts=[script(LOW[0], ANSWERS)])
    parser = make_parser(threshold=0.75)
    results = await parser.parse_many([SURE, *LOW])
    assert all(isinstance(r, MediaResult) for r in results)
    sure, *low = (r for r in results if isinstance(r, MediaResult))
    assert sure.sources() == {"parser"}
    assert [(r.season, r.absolute_episode, r.episode) for r in low] == [
        ([], [1071], []), ([], [587], []), ([], [448], [])]  # fmt: skip
    assert low[0].fields["episode"].source == "llm:cheap"
    assert low[0].fields["title"].source == "parser,llm:cheap"  # confirmed, not changed
    assert all(r.confidence >= 0.75 for r in low)
    assert requests(simulator, "sk-cheap", "sim-openai") == 1
    assert requests(simulator, "sk-strong", "sim-anthropic") == 0
    assert parser.metrics.llm_calls == 1 and parser.metrics.refined == 3
    assert parser.metrics.input_tokens > 0 and parser.metrics.output_tokens > 0


async def test_chain_moves_to_the_strong_group_only_while_still_unsure(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """Cheap's answer (trust 0.8) is below 0.9, so strong is asked; agreeing, it ends there."""
    simulator.set_model("sim-openai", scripts=[script(LOW[0], ANSWERS)])
    simulator.set_model("sim-anthropic", scripts=[script(LOW[0], ANSWERS)])
    parser = make_parser(threshold=0.9)
    results = await parser.parse_many(LOW)
    for result in results:
        assert isinstance(result, MediaResult)
        assert result.fields["episode"].source == "llm:cheap,llm:strong"
        assert result.confidence == pytest.approx(1 - 0.2 * 0.1)
    assert requests(simulator, "sk-cheap", "sim-openai") == 1
    assert requests(simulator, "sk-strong", "sim-anthropic") == 1


async def test_a_malformed_item_is_asked_again_alone_and_the_others_are_kept(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """Item 1 breaks the schema: items 0 and 2 are used, name 1 gets a call of its own."""
    broken = [ANSWERS[0], {**ANSWERS[1], "episode": "five hundred"}, ANSWERS[2]]
    alone = [item(0, "Bleach", [], [587])]
    simulator.set_model("sim-openai", scripts=[script(LOW[0], broken), script(LOW[1], alone)])
    parser = make_parser(threshold=0.75)
    results = await parser.parse_many(LOW)
    assert [r.absolute_episode for r in results if isinstance(r, MediaResult)] == [
        [1071], [587], [448]]  # fmt: skip
    assert requests(simulator, "sk-cheap", "sim-openai") == 2
    assert parser.metrics.retried_alone == 1


async def test_an_answer_that_is_not_json_loses_no_name(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """A batch answer that does not parse: each name is asked alone, none is dropped."""
    scripts = [{"pattern": re.escape(LOW[0]) + ".*" + re.escape(LOW[1]), "reply": "Sorry!"}]
    scripts += [script(name, [{**a, "index": 0}]) for name, a in zip(LOW, ANSWERS, strict=True)]
    simulator.set_model("sim-openai", scripts=scripts)
    parser = make_parser(threshold=0.75)
    results = await parser.parse_many(LOW)
    assert [r.absolute_episode for r in results if isinstance(r, MediaResult)] == [
        [1071], [587], [448]]  # fmt: skip
    assert requests(simulator, "sk-cheap", "sim-openai") == 4


async def test_answers_the_name_does_not_support_are_rejected(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """A title not in the name and an episode number not written in it are not taken."""
    invented = [item(0, "Attack on Titan", [], [448]), item(1, "Bleach", [], [999])]
    simulator.set_model("sim-openai", scripts=[script(LOW[2], invented)])
    parser = make_parser(threshold=0.75, chain=[ChainStep(group="cheap")])
    titan, bleach = await parser.parse_many([LOW[2], LOW[1]])
    assert isinstance(titan, MediaResult) and isinstance(bleach, MediaResult)
    assert titan.title == "Shingeki no Kyojin" and titan.fields["title"].source == "parser"
    assert titan.absolute_episode == [448] and titan.fields["episode"].source == "llm:cheap"
    assert (bleach.season, bleach.episode) == ([5], [87])  # the parser's reading stays
    assert bleach.fields["episode"].source == "parser"
    assert parser.metrics.rejected_answers == 3  # title; season and episode together


async def test_a_failed_call_keeps_the_parse_and_caches_nothing(
    simulator: SimulatorHandle, make_parser: MakeParser, tmp_path: Path
) -> None:
    """When the group cannot answer, names keep the parser's reading and are not cached."""
    simulator.set_faults("sim-openai", {"500": 1.0})
    cache = SqliteCache(tmp_path / "media.sqlite3")
    parser = make_parser(threshold=0.75, chain=[ChainStep(group="cheap")], cache=cache)
    (result,) = await parser.parse_many([LOW[0]])
    assert isinstance(result, MediaResult) and result.season == [10]
    assert parser.metrics.llm_failures == 1
    key = cache_key(LOW[0], PARSER_VERSION, parser._variant(True))
    assert await cache.get_many([key]) == {}


async def test_an_unknown_group_is_a_configuration_error_naming_the_key(
    make_parser: MakeParser,
) -> None:
    """A chain group missing from models: is reported at media.chain.N.group."""
    parser = make_parser(chain=[ChainStep(group="nope")])
    with pytest.raises(ConfigError, match=r"media\.chain\.0\.group"):
        await parser.parse_many([LOW[0]])


async def test_batch_api_returns_an_item_per_name_in_order(
    simulator: SimulatorHandle, make_parser: MakeParser
) -> None:
    """The gateway's function: results and per-name errors, by index, nothing dropped."""
    parser = make_parser()
    response = await parse_batch(parser, ParseRequest(names=[SURE, "", "x" * 5000],
                                                      refine=False))  # fmt: skip
    assert [i.index for i in response.items] == [0, 1, 2]
    assert response.items[0].result is not None and response.items[0].error is None
    assert response.items[1].error == "name: empty"
    assert "longer than the 1024 allowed" in (response.items[2].error or "")
    assert requests(simulator, "sk-cheap", "sim-openai") == 0
