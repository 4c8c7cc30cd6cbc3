"""The deterministic parse: guessit's answer as a typed result, and bad input refused."""

from __future__ import annotations

import re

import pytest

from llmrelay.media.analyze import Analyzer
from llmrelay.media.parse import MediaInputError, check_name, normalize
from llmrelay.media.result import CORE_FIELDS


def test_scene_release_maps_to_typed_fields(analyzer: Analyzer) -> None:
    """A scene name yields title, numbering and technical tags in our field names."""
    result, _ = analyzer.analyze(
        "Breaking.Bad.S05E14.Ozymandias.720p.HDTV.x264-EVOLVE.[a1b2c3d4].mkv"
    )
    assert (result.type, result.title, result.season, result.episode) == (
        "episode", "Breaking Bad", [5], [14])  # fmt: skip
    assert result.episode_title == "Ozymandias"
    assert (result.resolution, result.source, result.video_codec) == ("720p", "HDTV", "H.264")
    assert (result.release_group, result.container) == ("EVOLVE", "mkv")
    assert result.checksum == "a1b2c3d4"


def test_folder_names_complete_a_bare_file_name(analyzer: Analyzer) -> None:
    """``Show/Season 2/03.mkv``: the title and season come from the folders."""
    result, _ = analyzer.analyze("Better Call Saul/Season 2/03.mkv")
    assert (result.title, result.season, result.episode) == ("Better Call Saul", [2], [3])


def test_ranges_dates_and_movies(analyzer: Analyzer) -> None:
    """Multi-episode ranges are lists, date-based episodes keep the date, films the year."""
    assert analyzer.analyze("Fargo.S01E01-E03.mkv")[0].episode == [1, 2, 3]
    daily, _ = analyzer.analyze("The.Daily.Show.2016.05.18.720p.WEB.h264.mkv")
    assert (daily.date, daily.season) == ("2016-05-18", [])
    movie, _ = analyzer.analyze("Heat.1995.1080p.BluRay.x264-GRP.mkv")
    assert (movie.type, movie.title, movie.year) == ("movie", "Heat", 1995)


def test_every_result_reports_core_confidences_and_sources(analyzer: Analyzer) -> None:
    """Each core field has a confidence in 0..1 from the parser, present or not."""
    result, _ = analyzer.analyze("Heat (1995).mkv")
    assert set(CORE_FIELDS) <= set(result.fields)
    assert all(0 <= info.confidence <= 1 for info in result.fields.values())
    assert result.sources() == {"parser"}


def test_explicit_numbering_is_surer_than_a_bare_number(analyzer: Analyzer) -> None:
    """``S05E07`` scores above ``507``, which might be one absolute anime episode."""
    explicit, _ = analyzer.analyze("Seinfeld.S05E07.mkv")
    bare, _ = analyzer.analyze("One Piece 1071.mkv")
    assert explicit.confidence > 0.9 > bare.confidence


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("", "name: empty"),
        ("  / ", "name: empty"),
        ("x" * 10_000, "name: 10000 characters, longer than the 1024 allowed"),
        ("Show\x00.S01E01.mkv", "contains the control character U+0000"),
        (b"\xff\xfe.mkv".decode("utf-8", "surrogateescape"), "bytes that are not UTF-8"),
        (42, "name: expected text, got int"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(name: object, message: str) -> None:
    """Empty names, 10 kB names, binary junk and non-text are refused, saying why."""
    with pytest.raises(MediaInputError, match=re.escape(message)):
        check_name(name)


def test_names_are_normalized_for_comparison() -> None:
    """Backslashes become slashes, runs of spaces one, composed characters NFC."""
    assert normalize("Show\\Season  1\\Cafe\u0301.mkv") == "Show/Season 1/Caf\u00e9.mkv"
