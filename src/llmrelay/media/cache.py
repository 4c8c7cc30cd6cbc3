"""Parsed names kept by key: SQLite on one machine (default), Redis when shared.

The key is a hash of the parser's version, the refinement settings and the normalized name,
so a new guessit, a new calibration or another chain never serves an old answer. Values are
:class:`MediaResult` JSON. A backend is chosen by name from :data:`BACKENDS`.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import msgspec

from llmrelay.errors import ConfigError
from llmrelay.media.config import MediaCacheSettings
from llmrelay.media.result import RESULT_DECODER, RESULT_ENCODER, MediaResult
from llmrelay.sqlite import open_sqlite

Clock = Callable[[], float]


def cache_key(name: str, parser_version: str, variant: str = "") -> str:
    """The key of a normalized ``name`` under a parser version and refinement settings."""
    raw = "\0".join((parser_version, variant, name)).encode("utf-8", "surrogatepass")
    return hashlib.sha256(raw).hexdigest()


class MediaCache(Protocol):
    """Where results are kept between runs."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, MediaResult]: ...

    async def put_many(self, items: Mapping[str, MediaResult]) -> None: ...

    async def aclose(self) -> None: ...


class NoCache:
    """Keeps nothing (``backend: none``)."""

    async def get_many(self, keys: Sequence[str]) -> dict[str, MediaResult]:
        return {}

    async def put_many(self, items: Mapping[str, MediaResult]) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _decode(data: bytes) -> MediaResult | None:
    try:
        return RESULT_DECODER.decode(data)
    except msgspec.DecodeError:
        return None  # written by an incompatible version: parse again


class SqliteCache:
    """One SQLite file; calls are short local writes, made on the caller's thread."""

    def __init__(self, path: Path, *, ttl_s: float | None = None, clock: Clock = time.time) -> None:
        self._db = open_sqlite(path, key="media.cache.path", schema=[
            "CREATE TABLE IF NOT EXISTS media_parse "
            "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL)"
        ])  # fmt: skip
        self._ttl_s = ttl_s
        self._clock = clock

    async def get_many(self, keys: Sequence[str]) -> dict[str, MediaResult]:
        if not keys:
            return {}
        found: dict[str, MediaResult] = {}
        now = self._clock()
        for start in range(0, len(keys), 500):  # SQLite's limit on bound parameters
            chunk = list(keys[start : start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value, expires FROM media_parse WHERE key IN ({marks})", chunk
            ).fetchall()
            for key, value, expires in rows:
                result = _decode(value) if expires is None or expires > now else None
                if result is not None:
                    found[key] = result
        return found

    async def put_many(self, items: Mapping[str, MediaResult]) -> None:
        expires = None if self._ttl_s is None else self._clock() + self._ttl_s
        rows = [(key, RESULT_ENCODER.encode(value), expires) for key, value in items.items()]
        self._db.executemany("INSERT OR REPLACE INTO media_parse VALUES (?, ?, ?)", rows)

    async def aclose(self) -> None:
        self._db.close()


class RedisCache:
    """Entries in Redis under ``llmrelay:media:<key>``, shared by every process."""

    PREFIX = "llmrelay:media:"

    def __init__(self, url: str, *, ttl_s: float | None = None) -> None:
        from redis.asyncio import Redis  # the redis extra; imported only when configured

        self._redis: Any = Redis.from_url(url)
        self._ttl_ms = None if ttl_s is None else int(ttl_s * 1000)

    async def get_many(self, keys: Sequence[str]) -> dict[str, MediaResult]:
        if not keys:
            return {}
        values = await self._redis.mget([self.PREFIX + k for k in keys])
        found = {}
        for key, value in zip(keys, values, strict=True):
            result = _decode(value) if value is not None else None
            if result is not None:
                found[key] = result
        return found

    async def put_many(self, items: Mapping[str, MediaResult]) -> None:
        if not items:
            return
        async with self._redis.pipeline(transaction=False) as pipe:
            for key, value in items.items():
                pipe.set(self.PREFIX + key, RESULT_ENCODER.encode(value), px=self._ttl_ms)
            await pipe.execute()

    async def aclose(self) -> None:
        await self._redis.aclose()


def _sqlite(settings: MediaCacheSettings, redis_url: str | None) -> MediaCache:
    return SqliteCache(settings.path, ttl_s=settings.ttl_s)


def _redis(settings: MediaCacheSettings, redis_url: str | None) -> MediaCache:
    url = settings.redis_url or redis_url
    if not url:
        raise ConfigError("media.cache.redis_url: backend redis needs a URL (or a redis_url)")
    return RedisCache(url, ttl_s=settings.ttl_s)


def _none(settings: MediaCacheSettings, redis_url: str | None) -> MediaCache:
    return NoCache()


BACKENDS: Mapping[str, Callable[[MediaCacheSettings, str | None], MediaCache]] = {
    "sqlite": _sqlite,
    "redis": _redis,
    "none": _none,
}
"""Each ``media.cache.backend`` and how it is opened (with the top-level ``redis_url``)."""


def open_cache(settings: MediaCacheSettings, redis_url: str | None = None) -> MediaCache:
    """The cache ``settings`` describe."""
    return BACKENDS[settings.backend](settings, redis_url)


__all__ = [
    "BACKENDS",
    "MediaCache",
    "NoCache",
    "RedisCache",
    "SqliteCache",
    "cache_key",
    "open_cache",
]
