"""The typed result of parsing one video file name, with where each field came from.

msgspec Structs: results are built, cached and serialized on the hot path.
"""

from __future__ import annotations

from typing import Literal

import msgspec

MediaType = Literal["episode", "movie", "unknown"]

CORE_FIELDS = ("title", "season", "episode", "year", "type")
"""The fields every result reports a confidence for, whether they have a value or not."""

PARSER_SOURCE = "parser"
"""The ``source`` of a field the deterministic parse found."""


class FieldInfo(msgspec.Struct, frozen=True, kw_only=True):
    """How sure we are of one field and who answered it (``parser`` or ``llm:<group>``)."""

    confidence: float
    source: str = PARSER_SOURCE


class MediaResult(msgspec.Struct, kw_only=True, omit_defaults=True):
    """What a video file name says: the show or film, numbering, and technical tags.

    ``season`` / ``episode`` are lists because names hold ranges (``S01E01-E03``);
    ``absolute_episode`` is anime-style numbering over the whole show. ``fields`` holds a
    :class:`FieldInfo` per field that has a value, ``confidence`` the overall one: the
    calibrated probability that title, season, episode and year are all right.
    """

    name: str
    type: MediaType = "unknown"
    title: str | None = None
    alternative_title: list[str] = msgspec.field(default_factory=list)
    year: int | None = None
    season: list[int] = msgspec.field(default_factory=list)
    episode: list[int] = msgspec.field(default_factory=list)
    absolute_episode: list[int] = msgspec.field(default_factory=list)
    date: str | None = None
    episode_title: str | None = None
    part: int | None = None
    resolution: str | None = None
    source: str | None = None
    video_codec: str | None = None
    audio_codec: list[str] = msgspec.field(default_factory=list)
    audio_channels: str | None = None
    language: list[str] = msgspec.field(default_factory=list)
    subtitle_language: list[str] = msgspec.field(default_factory=list)
    release_group: str | None = None
    container: str | None = None
    checksum: str | None = None
    confidence: float = 0.0
    fields: dict[str, FieldInfo] = msgspec.field(default_factory=dict)
    parser_version: str = ""
    cached: bool = False

    def sources(self) -> set[str]:
        """Everyone who answered a field of this result."""
        return {info.source for info in self.fields.values()}


RESULT_ENCODER = msgspec.json.Encoder()
RESULT_DECODER = msgspec.json.Decoder(MediaResult)
