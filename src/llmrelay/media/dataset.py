"""Labelled names for calibration and accuracy figures.

Two sources: guessit's own test fixtures (read from its installed wheel, not copied here)
and a second set shipped in ``data/names.jsonl``, built by :func:`build_names` from
release conventions guessit's fixtures cover thinly — fansub and absolute numbering,
obfuscated file names inside release folders, non-Latin titles, numeric and very short
titles, bare three-digit numbers, group-first names. Every name there is composed from its
fields, so its truth is known by construction. The split into calibration and held-out
names is a hash of the name: the same on every machine and every run.
"""

from __future__ import annotations

import random
import re
import zlib
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Literal

import msgspec
import yaml

Split = Literal["train", "test"]

NAMES_FILE = Path(__file__).with_name("data") / "names.jsonl"
HELD_OUT_PERCENT = 35


class Sample(msgspec.Struct, kw_only=True, omit_defaults=True):
    """A name and what it means; ``checked`` lists the fields its truth states."""

    name: str
    origin: str
    checked: list[str]
    title: str | None = None
    year: int | None = None
    season: list[int] = msgspec.field(default_factory=list)
    episode: list[int] = msgspec.field(default_factory=list)
    type: str | None = None


def split_of(name: str) -> Split:
    """Which side of the fixed split a name is on."""
    return "test" if zlib.crc32(name.encode()) % 100 < HELD_OUT_PERCENT else "train"


def _ints(value: object) -> list[int]:
    items = value if isinstance(value, list) else [value]
    return [v for v in items if isinstance(v, int) and not isinstance(v, bool)]


def fixture_samples() -> Iterator[Sample]:
    """guessit's own fixtures that state a title (options-dependent ones left out)."""
    folder = resources.files("guessit") / "test"
    for file in ("episodes.yml", "movies.yml", "various.yml"):
        data = yaml.safe_load((folder / file).read_text(encoding="utf-8"))
        default = data.pop("__default__", None) or {}
        for name, expected in data.items():
            truth = {**default, **(expected or {})}
            if str(name).startswith("-") or "options" in truth or "title" not in truth:
                continue  # "-" marks a case guessit itself is known to fail
            title = truth["title"]
            checked = ["title", "season", "episode"] + [k for k in ("year", "type") if k in truth]
            yield Sample(
                name=str(name),
                origin=f"guessit:{file}",
                checked=checked,
                title=str(title[0] if isinstance(title, list) else title),
                year=truth.get("year") if isinstance(truth.get("year"), int) else None,
                season=_ints(truth.get("season")),
                episode=_ints(truth.get("episode")),
                type=truth.get("type"),
            )


def shipped_samples(path: Path = NAMES_FILE) -> list[Sample]:
    """The second set, as shipped."""
    decoder = msgspec.json.Decoder(Sample)
    lines = path.read_text(encoding="utf-8").splitlines()
    return [decoder.decode(line) for line in lines if line.strip()]


def all_samples() -> list[Sample]:
    """Both sets, fixtures first."""
    return [*fixture_samples(), *shipped_samples()]


# -- building the second set -------------------------------------------------------------

_SHOWS = [
    "The Office", "Breaking Bad", "House of the Dragon", "Doctor Who", "Cobra Kai",
    "Yellowstone", "Severance", "Bluey", "Narcos", "The Boys", "Fallout", "Succession",
    "Ted Lasso", "Reacher", "Better Call Saul", "The Expanse", "Mr Robot", "Dark",
    "Lost", "Monk", "Heroes", "Girls", "Shameless", "Fargo", "Westworld", "Silo",
    "The Bear", "Slow Horses", "Andor", "Foundation", "Invincible", "Peaky Blinders",
    "Stranger Things", "True Detective", "The Crown", "Black Mirror", "Ozark",
    "Halt and Catch Fire",
]  # fmt: skip
_SHORT = ["You", "24", "Up", "Ray", "1883", "9-1-1", "Ms", "Mom", "Joe", "Tom"]
_ANIME = [
    "Sousou no Frieren", "Shingeki no Kyojin", "One Piece", "Naruto Shippuden", "Bleach",
    "Gintama", "Mob Psycho 100", "Spy x Family", "Jujutsu Kaisen", "Kimetsu no Yaiba",
    "Boku no Hero Academia", "Dandadan", "Chainsaw Man", "Oshi no Ko", "Detective Conan",
]  # fmt: skip
_NON_LATIN = [
    "進撃の巨人", "葬送のフリーレン", "鬼灭之刃", "Кухня", "Универ", "Метод",
    "Τα Καλύτερα μας Χρόνια",  # noqa: RUF001  # Greek letters on purpose: a non-Latin title
    "사랑의 불시착", "오징어 게임", "חזרות",
]  # fmt: skip
_MOVIES = [
    ("Inception", 2010), ("The Matrix", 1999), ("Dune Part Two", 2024), ("Oppenheimer", 2023),
    ("Parasite", 2019), ("Arrival", 2016), ("Heat", 1995), ("Alien", 1979), ("Her", 2013),
    ("Up", 2009), ("1917", 2019), ("2012", 2009), ("Nope", 2022), ("Tenet", 2020),
    ("Blade Runner 2049", 2017), ("Mad Max Fury Road", 2015), ("The Thing", 1982),
]  # fmt: skip
_GROUPS = ["NTb", "FLUX", "SPARKS", "EDITH", "GalaxyTV", "RARBG", "NOGRP", "KiNGS", "SiGMA"]
_FANSUB = ["SubsPlease", "Erai-raws", "HorribleSubs", "Judas", "EMBER", "ASW", "Commie"]
_RES = ["720p", "1080p", "2160p", "480p"]
_SRC = ["WEB-DL", "WEBRip", "HDTV", "BluRay", "AMZN.WEB-DL", "NF.WEBRip"]
_CODEC = ["x264", "x265", "H.264", "HEVC", "AV1"]


def _release(rng: random.Random) -> tuple[str, str, str, str]:
    return rng.choice(_RES), rng.choice(_SRC), rng.choice(_CODEC), rng.choice(_GROUPS)


def _dots(title: str) -> str:
    return re.sub(r"\s+", ".", title)


def _episode_names(rng: random.Random) -> Iterator[tuple[str, str, int | None, int]]:
    """(name, title, season, episode) in many conventions."""
    for show in _SHOWS:
        s, e = rng.randint(1, 12), rng.randint(1, 24)
        res, src, codec, grp = _release(rng)
        yield f"{_dots(show)}.S{s:02}E{e:02}.{res}.{src}.{codec}-{grp}.mkv", show, s, e
        yield f"{show}/Season {s}/{e:02}.mkv", show, s, e
        yield f"{show}/Season {s:02}/{show} - S{s:02}E{e:02}.mkv", show, s, e
        yield f"{show} - {s}x{e:02}.avi", show, s, e
        hexname = f"{zlib.crc32(show.encode()) * 7919:032x}"[-32:]
        yield f"{_dots(show)}.S{s:02}E{e:02}.{res}.{src}-{grp}/{hexname}.mkv", show, s, e
        yield f"{grp.lower()}-{_dots(show).lower()}.s{s:02}e{e:02}.mkv", show, s, e
        yield f"{show} Season {s} Episode {e}.mp4", show, s, e
        yield f"{_dots(show)}.{s}{e:02}.{res}.mkv", show, s, e
    for short in _SHORT:
        s, e = rng.randint(1, 9), rng.randint(1, 22)
        yield f"{_dots(short)}.S{s:02}E{e:02}.{rng.choice(_RES)}.mkv", short, s, e
        yield f"{short} {s}x{e:02}.mkv", short, s, e
        yield f"{short}/Season {s}/{short} {s}{e:02}.mkv", short, s, e
    for anime in _ANIME:
        e, big = rng.randint(1, 99), rng.randint(100, 1100)
        crc = f"{zlib.crc32(anime.encode()):08X}"
        fansub, res = rng.choice(_FANSUB), rng.choice(_RES)
        yield f"[{fansub}] {anime} - {e:02} ({res}) [{crc}].mkv", anime, None, e
        yield f"[{fansub}] {anime} - {big} [{res}].mkv", anime, None, big
        yield f"{anime} {big}.mkv", anime, None, big
        yield f"{anime} - Episode {e}.mp4", anime, None, e
        yield f"[{fansub}]_{anime.replace(' ', '_')}_-_{e:02}_[{crc}].mkv", anime, None, e
    for title in _NON_LATIN:
        s, e = rng.randint(1, 5), rng.randint(1, 24)
        yield f"{title} 第{e}話.mp4", title, None, e
        yield f"{title} - S{s:02}E{e:02}.mkv", title, s, e
        yield f"{title} {s} сезон {e} серия.mkv", title, s, e
        yield f"[{rng.choice(_FANSUB)}] {title} - {e:02} (1080p).mkv", title, None, e


def _movie_names(rng: random.Random) -> Iterator[tuple[str, str, int | None]]:
    for title, year in _MOVIES:
        res, src, codec, grp = _release(rng)
        yield f"{_dots(title)}.{year}.{res}.{src}.{codec}-{grp}.mkv", title, year
        yield f"{title} ({year}).mkv", title, year
        yield f"{title} ({year})/{title} ({year}) - {res}.mkv", title, year
        yield f"{_dots(title).lower()}.mkv", title, None
        hexname = f"{zlib.crc32(title.encode()) * 104729:024x}"[-24:]
        yield f"{_dots(title)}.{year}.{res}-{grp}/{hexname}.mkv", title, year


def build_names(seed: int = 14) -> list[Sample]:
    """The second set (deterministic in ``seed``)."""
    rng = random.Random(seed)
    samples = [
        Sample(name=name, origin="built:episode", checked=["title", "season", "episode"],
               title=title, season=[s] if s is not None else [], episode=[e], type="episode")
        for name, title, s, e in _episode_names(rng)
    ]  # fmt: skip
    samples += [
        Sample(name=name, origin="built:movie", checked=["title", "season", "episode", "year"],
               title=title, year=year, type="movie")
        for name, title, year in _movie_names(rng)
    ]  # fmt: skip
    return samples


def write_names(path: Path = NAMES_FILE) -> int:
    """Write :func:`build_names` to ``path`` (one JSON object a line); how many."""
    samples = build_names()
    encoder = msgspec.json.Encoder()
    path.write_text("".join(encoder.encode(s).decode() + "\n" for s in samples), "utf-8")
    return len(samples)


__all__ = [
    "HELD_OUT_PERCENT",
    "NAMES_FILE",
    "Sample",
    "all_samples",
    "build_names",
    "fixture_samples",
    "shipped_samples",
    "split_of",
    "write_names",
]
