"""Features of one parse that say how likely guessit got it wrong.

Each is a number in 0..1 read from the name and guessit's spans: what is left
unexplained, numbers that could be read two ways, titles that look like hashes or release
groups, scripts guessit's rules were not written for. The confidence model
(:mod:`.confidence`) weighs them; the weights are fitted on labelled names, not chosen.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping

from llmrelay.media.parse import Guess

_ALNUM = re.compile(r"[^\W_]+")
_HEX = re.compile(r"^[0-9a-f]{6,}$", re.IGNORECASE)
_MIXED = re.compile(r"(?=.*\d)(?=.*[a-z])[a-z0-9]{8,}", re.IGNORECASE)
_TECH = ("screen_size", "source", "video_codec", "audio_codec", "release_group")
_META = frozenset({"mimetype", "type", "container"})


def _basename_start(name: str) -> int:
    return name.rfind("/") + 1


def _covered(guess: Guess, start: int) -> list[bool]:
    """Per character of the base name: whether some guessit value spans it."""
    name = guess.name
    covered = [False] * (len(name) - start)
    for key, spans in guess.spans.items():
        if key in _META:
            continue
        for span in spans:
            for i in range(max(span.start, start), min(span.end, len(name))):
                covered[i - start] = True
    return covered


def _uncovered_tokens(guess: Guess) -> list[str]:
    name = guess.name
    start = _basename_start(name)
    base = name[start:]
    stem_end = len(base)
    container = guess.values.get("container")
    if container and base.lower().endswith("." + str(container).lower()):
        stem_end -= len(str(container)) + 1
    covered = _covered(guess, start)
    return [
        m.group()
        for m in _ALNUM.finditer(base, 0, stem_end)
        if not any(covered[m.start() : m.end()])
    ]


def _title(guess: Guess) -> str:
    title = guess.values.get("title")
    if isinstance(title, list):
        return str(title[0]) if title else ""
    return str(title) if title else ""


def _tags(guess: Guess, *keys: str) -> set[str]:
    return {tag for key in keys for span in guess.spans.get(key, []) for tag in span.tags}


def _numbers(guess: Guess, key: str) -> list[int]:
    value = guess.values.get(key)
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, int) and not isinstance(v, bool)]


def _non_latin(text: str) -> bool:
    for char in text:
        if char.isalpha() and ord(char) > 0x24F:
            return not unicodedata.name(char, "").startswith("LATIN")
    return False


def _unexplained_share(guess: Guess) -> float:
    base = guess.name[_basename_start(guess.name) :]
    letters = sum(len(m.group()) for m in _ALNUM.finditer(base)) or 1
    return min(1.0, sum(len(t) for t in _uncovered_tokens(guess)) / letters)


def _unexplained_count(guess: Guess) -> float:
    return min(len(_uncovered_tokens(guess)), 5) / 5


def _no_title(guess: Guess) -> float:
    return float(not _title(guess))


def _short_title(guess: Guess) -> float:
    return float(0 < len("".join(_ALNUM.findall(_title(guess)))) <= 3)


def _hex_title(guess: Guess) -> float:
    words = _ALNUM.findall(_title(guess))
    return float(any(_HEX.match(w) or _MIXED.fullmatch(w) for w in words))


def _digit_title(guess: Guess) -> float:
    title = "".join(_ALNUM.findall(_title(guess)))
    return sum(c.isdigit() for c in title) / len(title) if title else 0.0


def _group_title(guess: Guess) -> float:
    title = _title(guess).lower()
    group = str(guess.values.get("release_group") or "").lower()
    return float(bool(title) and (title == group or title in group.split()))


def _title_candidates(guess: Guess) -> float:
    title = guess.values.get("title")
    return float(isinstance(title, list) or bool(guess.values.get("alternative_title")))


def _non_latin_name(guess: Guess) -> float:
    return float(_non_latin(guess.name))


def _explicit_numbering(guess: Guess) -> float:
    return float("SxxExx" in _tags(guess, "season", "episode"))


def _weak_episode(guess: Guess) -> float:
    return float("weak-episode" in _tags(guess, "season", "episode"))


def _ambiguous_number(guess: Guess) -> float:
    """A bare ``507``: season 5 episode 7, or episode 507 of an anime."""
    return float("weak-duplicate" in _tags(guess, "season", "episode"))


def _episode_without_season(guess: Guess) -> float:
    return float(bool(_numbers(guess, "episode")) and not _numbers(guess, "season"))


def _conflicting_numbers(guess: Guess) -> float:
    seasons, episodes = _numbers(guess, "season"), _numbers(guess, "episode")
    gaps = any(b - a != 1 for a, b in zip(sorted(episodes), sorted(episodes)[1:], strict=False))
    return float(len(seasons) > 1 or gaps)


def _year_like_season(guess: Guess) -> float:
    return float(any(n >= 1900 or n > 60 for n in _numbers(guess, "season")))


def _large_episode(guess: Guess) -> float:
    return float(any(n > 99 for n in _numbers(guess, "episode")))


def _is_episode(guess: Guess) -> float:
    return float(guess.values.get("type") == "episode")


def _has_year(guess: Guess) -> float:
    return float("year" in guess.values)


def _has_date(guess: Guess) -> float:
    return float("date" in guess.values)


def _release_tags(guess: Guess) -> float:
    return sum(key in guess.values for key in _TECH) / len(_TECH)


def _checksum(guess: Guess) -> float:
    return float("crc32" in guess.values)


def _few_words(guess: Guess) -> float:
    base = guess.name[_basename_start(guess.name) :]
    return float(len(_ALNUM.findall(base)) <= 2)


def _from_folders(guess: Guess) -> float:
    start = _basename_start(guess.name)
    return float(start > 0 and any(s.start < start for s in guess.spans.get("title", [])))


def _implausible_split(guess: Guess) -> float:
    """Season and episode read from one number, the episode past any season's length."""
    seasons, episodes = _numbers(guess, "season"), _numbers(guess, "episode")
    return float(bool(seasons) and any(n > 26 for n in episodes))


def _glued_title(guess: Guess) -> float:
    """``ntb-the.office``: a word stuck to the title by a hyphen, often a group's name."""
    spans = guess.spans.get("title", [])
    raw = " ".join(guess.name[s.start : s.end] for s in spans)
    return float(bool(re.search(r"[a-z]-[a-z]", raw)) and raw == raw.lower())


def _title_ends_with_number(guess: Guess) -> float:
    words = _ALNUM.findall(_title(guess))
    return float(len(words) > 1 and words[-1].isdigit())


def _anime_group(guess: Guess) -> float:
    return float("anime" in _tags(guess, "release_group"))


def _movie_without_year(guess: Guess) -> float:
    return float(guess.values.get("type") == "movie" and "year" not in guess.values)


FEATURES: Mapping[str, Callable[[Guess], float]] = {
    "unexplained_share": _unexplained_share,
    "unexplained_count": _unexplained_count,
    "no_title": _no_title,
    "short_title": _short_title,
    "hex_title": _hex_title,
    "digit_title": _digit_title,
    "group_title": _group_title,
    "title_candidates": _title_candidates,
    "non_latin": _non_latin_name,
    "explicit_numbering": _explicit_numbering,
    "weak_episode": _weak_episode,
    "ambiguous_number": _ambiguous_number,
    "episode_without_season": _episode_without_season,
    "conflicting_numbers": _conflicting_numbers,
    "year_like_season": _year_like_season,
    "large_episode": _large_episode,
    "is_episode": _is_episode,
    "has_year": _has_year,
    "has_date": _has_date,
    "release_tags": _release_tags,
    "checksum": _checksum,
    "few_words": _few_words,
    "from_folders": _from_folders,
    "movie_without_year": _movie_without_year,
    "implausible_split": _implausible_split,
    "glued_title": _glued_title,
    "title_ends_with_number": _title_ends_with_number,
    "anime_group": _anime_group,
}
"""Every feature by name, in the order of the model's weights."""


def features(guess: Guess) -> list[float]:
    """The feature vector of one guess, in :data:`FEATURES` order."""
    return [feature(guess) for feature in FEATURES.values()]


def unexplained(guess: Guess) -> list[str]:
    """The words of the base name no guessit value accounts for (shown to the LLM)."""
    return _uncovered_tokens(guess)


__all__ = ["FEATURES", "features", "unexplained"]
