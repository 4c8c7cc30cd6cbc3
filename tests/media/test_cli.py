"""``llmrelay media parse`` and the media: section of llmrelay.yaml."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import yaml

from llmrelay.cli import main
from llmrelay.config import parse_settings
from llmrelay.errors import ConfigError
from llmrelay.media.config import ChainStep, MediaSettings
from llmrelay.media.service import MediaParser
from llmrelay.testing import SimulatorHandle

SECTIONS = {"media": MediaSettings}
MODELS = {"cheap": {"primary": [{"provider": "openai", "model": "gpt-4o-mini"}]}}


def test_names_on_stdin_give_one_json_line_each(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Each stdin line is a name; a bad one is an error line and exit status 1."""
    monkeypatch.setattr("sys.stdin", io.StringIO("Heat (1995).mkv\n\nShow\x01.mkv\n"))
    assert main(["media", "parse", "--jsonl", "--no-cache", "--no-llm"]) == 1
    heat, bad = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert (heat["title"], heat["year"], heat["fields"]["title"]["source"]) == ("Heat", 1995,
                                                                               "parser")  # fmt: skip
    assert bad["error"].startswith("name: not a file name: contains the control character")


def test_a_folder_is_walked_and_parsed_with_its_folder_names(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``parse DIR``: video files found recursively, parsed with the show's folder names."""
    episode = tmp_path / "TV" / "The Expanse" / "Season 3" / "05.mkv"
    episode.parent.mkdir(parents=True)
    episode.write_text("")
    (tmp_path / "TV" / "readme.txt").write_text("")
    assert main(["media", "parse", str(tmp_path / "TV"), "--json", "--no-cache", "--no-llm"]) == 0
    (result,) = json.loads(capsys.readouterr().out)
    assert result["name"] == "The Expanse/Season 3/05.mkv"
    assert (result["title"], result["season"], result["episode"]) == ("The Expanse", [3], [5])


def test_the_table_marks_unsure_names(capsys: pytest.CaptureFixture[str]) -> None:
    """The default output is a table with the confidence first."""
    assert main(["media", "parse", "Seinfeld.S05E07.mkv", "One Piece 1071.mkv",
                 "--no-cache", "--no-llm"]) == 0  # fmt: skip
    header, sure, unsure = capsys.readouterr().out.splitlines()
    assert header.split()[:3] == ["conf", "type", "title"]
    assert float(sure.split()[0]) > 0.9 > float(unsure.split()[0])
    assert "S05E07" in sure


def test_media_section_is_validated_like_the_rest(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keys are case-insensitive, ${VAR} is substituted, errors name the key."""
    monkeypatch.setenv("MEDIA_THRESHOLD", "0.75")
    raw = {"models": MODELS, "Media": {"Threshold": "${MEDIA_THRESHOLD}",
                                       "Chain": [{"Group": "Cheap", "trust": 0.7}]}}  # fmt: skip
    settings = parse_settings(raw, "llmrelay.yaml", sections=SECTIONS).media
    assert isinstance(settings, MediaSettings) and settings.threshold == 0.75
    assert settings.chain == [ChainStep(group="cheap", trust=0.7)]
    bad = {"models": MODELS, "media": {"treshold": 0.8, "batch_size": 0,
                                       "episode_template": "{titel}{ext}"}}  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        parse_settings(bad, "llmrelay.yaml", sections=SECTIONS)
    message = str(caught.value)
    assert "media.treshold: Extra inputs are not permitted" in message
    assert "media.batch_size: Input should be greater than or equal to 1" in message
    assert "media.episode_template: unknown field 'titel'" in message


def test_the_router_alone_leaves_the_media_section_to_the_parser(tmp_path: Path) -> None:
    """SmartLLM reads a file with a media: section (validated only by the parser)."""
    raw = {"models": MODELS, "media": {"threshold": 0.5}}
    assert parse_settings(raw, "llmrelay.yaml").media == {"threshold": 0.5}
    with pytest.raises(ValueError, match="not an application section: 'mediaa'"):
        parse_settings(raw, "llmrelay.yaml", sections={"mediaa": MediaSettings})


def test_chain_groups_must_exist_in_models(tmp_path: Path) -> None:
    """A chain group that models: lacks is an error naming media.chain.N.group."""
    path = tmp_path / "llmrelay.yaml"
    path.write_text(yaml.safe_dump({"models": MODELS, "media": {"chain": [{"group": "strong"}]}}))
    with pytest.raises(ConfigError, match=r"media\.chain\.0\.group: no model group 'strong'"):
        MediaParser.from_config(path)


async def test_from_config_builds_the_chain_on_the_configured_models(
    tmp_path: Path, simulator: SimulatorHandle
) -> None:
    """From llmrelay.yaml: the media: settings, its cache file and a SmartLLM for the chain."""
    deployment = {"provider": "openai", "model": "sim-openai", "base_url": simulator.url + "/v1",
                  "api_key": "sk-config", "context_window": 16000, "max_output_tokens": 4096}  # fmt: skip
    config = {"models": {"cheap": {"primary": [deployment]}},
              "media": {"threshold": 0.99, "chain": [{"group": "cheap"}],
                        "cache": {"path": str(tmp_path / "m.sqlite3")}}}  # fmt: skip
    path = tmp_path / "llmrelay.yaml"
    path.write_text(yaml.safe_dump(config))
    async with MediaParser.from_config(path) as parser:
        await parser.parse_many(["One Piece 1071.mkv"])
        assert parser.metrics.llm_calls == 1
        health = await parser.health()
        assert health["groups"]["cheap"]["ok"] is True
        assert await parser.health() is health  # reused within health_ttl_s
    assert (tmp_path / "m.sqlite3").exists()
    assert simulator.usage("sk-config", "sim-openai")["requests"] == 2
