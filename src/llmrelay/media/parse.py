"""The deterministic parse: guessit's answer for one name, mapped to a :class:`MediaResult`.

guessit is the engine (it knows thousands of release conventions); this module only checks
the input, calls it once and keeps, besides the values, where in the name each one was
found — the confidence model reads those spans.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Mapping
from typing import Any

import msgspec
from guessit import __version__ as _guessit_version
from guessit.api import GuessItApi

from llmrelay.errors import LLMRelayError
from llmrelay.media.result import MediaResult, MediaType

PARSER_VERSION = f"guessit-{_guessit_version}/media-1"
"""Part of every cache key: a new guessit or a new mapping never serves an old parse."""

MAX_NAME_LENGTH = 1024
"""Longer than any path component a file system allows (255 bytes) times a few folders."""


class MediaInputError(LLMRelayError, ValueError):
    """A name that is not something to parse (empty, binary, far too long)."""


class Span(msgspec.Struct, frozen=True, array_like=True):
    """Where guessit found one value: ``name[start:end]`` and its rule's tags."""

    start: int
    end: int
    tags: tuple[str, ...]


class Guess(msgspec.Struct, kw_only=True):
    """guessit's answer for one name: its values and the spans they came from."""

    name: str
    values: dict[str, Any]
    spans: dict[str, list[Span]]


def normalize(name: str) -> str:
    """The form names are compared and cached in: NFC, ``/`` separators, one space."""
    text = unicodedata.normalize("NFC", name).replace("\\", "/")
    return " ".join(text.split())


def check_name(name: object, *, max_length: int = MAX_NAME_LENGTH) -> str:
    """``name`` normalized, or :class:`MediaInputError` saying what is wrong with it."""
    if not isinstance(name, str):
        raise MediaInputError(f"name: expected text, got {type(name).__name__}")
    text = normalize(name)
    if not text.strip("/ "):
        raise MediaInputError("name: empty")
    if len(text) > max_length:
        raise MediaInputError(
            f"name: {len(text)} characters, longer than the {max_length} allowed "
            f"(starts {text[:40]!r})"
        )
    bad = next((c for c in text if _is_binary(c)), None)
    if bad is not None:
        raise MediaInputError(
            f"name: not a file name: contains {_describe(bad)} (starts {text[:40]!r})"
        )
    return text


def _is_binary(char: str) -> bool:
    category = unicodedata.category(char)
    return category in ("Cc", "Cs", "Co", "Cn") or char == "\ufffd"


def _describe(char: str) -> str:
    if "\udc80" <= char <= "\udcff":
        return "bytes that are not UTF-8"
    return f"the control character U+{ord(char):04X}"


class GuessitEngine:
    """One guessit instance, configured once (its rebulk rules take ~1 s to build)."""

    def __init__(self) -> None:
        self._api = GuessItApi()
        self._api.configure({}, sanitize_options=True)

    def guess(self, name: str) -> Guess:
        """guessit's values and spans for an already checked name."""
        found: Any = self._api.guessit(name)  # a rebulk MatchesDict: values and spans
        spans = {
            key: [Span(m.span[0], m.span[1], tuple(m.tags)) for m in matches]
            for key, matches in found.matches.items()
        }
        return Guess(name=name, values=dict(found), spans=spans)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, list):
        return " ".join(str(v) for v in value) if value else None
    return str(value)


def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _numbers(value: Any) -> list[int]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return [int(v) for v in items if isinstance(v, int) and not isinstance(v, bool)]


def _first_number(value: Any) -> int | None:
    numbers = _numbers(value)
    return numbers[0] if numbers else None


def _title(value: Any) -> str | None:
    if isinstance(value, list):  # guessit lists the candidates it could not choose between
        return str(value[0]) if value else None
    return _text(value)


_FIELDS: Mapping[str, tuple[str, Callable[[Any], Any]]] = {
    "title": ("title", _title),
    "alternative_title": ("alternative_title", _texts),
    "year": ("year", _first_number),
    "season": ("season", _numbers),
    "episode": ("episode", _numbers),
    "absolute_episode": ("absolute_episode", _numbers),
    "date": ("date", _text),
    "episode_title": ("episode_title", _text),
    "part": ("part", _first_number),
    "resolution": ("screen_size", _text),
    "source": ("source", _text),
    "video_codec": ("video_codec", _text),
    "audio_codec": ("audio_codec", _texts),
    "audio_channels": ("audio_channels", _text),
    "language": ("language", _texts),
    "subtitle_language": ("subtitle_language", _texts),
    "release_group": ("release_group", _text),
    "container": ("container", _text),
    "checksum": ("crc32", _text),
}
"""Our field → (guessit's property, how its value becomes ours)."""


def to_result(guess: Guess, *, parser_version: str = PARSER_VERSION) -> MediaResult:
    """The typed result of a guess (confidences are filled in by :mod:`.confidence`)."""
    values = guess.values
    mapped = {ours: convert(values.get(theirs)) for ours, (theirs, convert) in _FIELDS.items()}
    kind = values.get("type")
    media_type: MediaType = (
        "episode" if kind == "episode" else "movie" if kind == "movie" else "unknown"
    )
    return MediaResult(name=guess.name, type=media_type, parser_version=parser_version, **mapped)


__all__ = [
    "MAX_NAME_LENGTH",
    "PARSER_VERSION",
    "Guess",
    "GuessitEngine",
    "MediaInputError",
    "Span",
    "check_name",
    "normalize",
    "to_result",
]
