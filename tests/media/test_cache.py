"""The cache: keyed by normalized name and parser version, SQLite or Redis, expiring."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest

from llmrelay.errors import ConfigError
from llmrelay.media.analyze import Analyzer
from llmrelay.media.cache import RedisCache, SqliteCache, cache_key, open_cache
from llmrelay.media.config import MediaCacheSettings, MediaSettings
from llmrelay.media.result import MediaResult
from llmrelay.media.service import MediaParser

NAME = "Severance.S02E03.1080p.WEB.h264-GRP.mkv"


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_keys_depend_on_name_parser_version_and_refinement() -> None:
    """A new parser version or another chain is another key; the same inputs, the same key."""
    key = cache_key(NAME, "guessit-4.4.0/media-1", "parser")
    assert key == cache_key(NAME, "guessit-4.4.0/media-1", "parser")
    assert key != cache_key(NAME, "guessit-4.5.0/media-1", "parser")
    assert key != cache_key(NAME, "guessit-4.4.0/media-1", "chain")
    assert key != cache_key(NAME + " ", "guessit-4.4.0/media-1", "parser")


async def test_sqlite_keeps_results_across_instances_until_they_expire(tmp_path: Path) -> None:
    """Written by one instance, read by the next; gone once ``ttl_s`` has passed."""
    clock = FakeClock()
    result = MediaResult(name=NAME, title="Severance", season=[2], episode=[3], confidence=0.9)
    first = SqliteCache(tmp_path / "c.sqlite3", ttl_s=60, clock=clock)
    await first.put_many({"k": result})
    await first.aclose()
    second = SqliteCache(tmp_path / "c.sqlite3", ttl_s=60, clock=clock)
    assert await second.get_many(["k", "other"]) == {"k": result}
    clock.now += 61
    assert await second.get_many(["k"]) == {}
    await second.aclose()


async def test_a_cache_that_cannot_be_opened_names_the_key(tmp_path: Path) -> None:
    """An unusable path is a configuration error at media.cache.path."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"media\.cache\.path"):
        SqliteCache(tmp_path / "file" / "c.sqlite3")
    with pytest.raises(ConfigError, match=r"media\.cache\.redis_url"):
        open_cache(MediaCacheSettings(backend="redis"))


async def test_second_parse_is_a_cache_hit(tmp_path: Path, analyzer: Analyzer) -> None:
    """The same name (spelled with other spaces) comes from the cache the second time."""
    settings = MediaSettings(cache=MediaCacheSettings(path=tmp_path / "m.sqlite3"))
    async with MediaParser(settings, analyzer=analyzer) as parser:
        (first,) = await parser.parse_many([NAME])
        (second,) = await parser.parse_many(["  " + NAME.replace(".mkv", ".mkv ")])
        assert isinstance(first, MediaResult) and isinstance(second, MediaResult)
        assert (first.cached, second.cached) == (False, True)
        assert second.title == first.title and second.confidence == first.confidence
        assert parser.metrics.cache_hits == 1 and parser.metrics.parsed == 1


async def test_redis_backend_round_trips_and_expires_by_the_server() -> None:
    """Entries are shared through Redis, with a server-side expiry."""
    url = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379")
    cache = RedisCache(url, ttl_s=30)
    key = f"test-{uuid.uuid4().hex}"
    result = MediaResult(name=NAME, title="Severance")
    try:
        await cache.put_many({key: result})
        assert await cache.get_many([key, key + "-missing"]) == {key: result}
        ttl = await cache._redis.pttl(RedisCache.PREFIX + key)
        assert 0 < ttl <= 30_000
    finally:
        await cache._redis.delete(RedisCache.PREFIX + key)
        await cache.aclose()
