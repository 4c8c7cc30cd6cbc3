"""Where cached answers are kept: bytes by key, in memory, in SQLite or in Redis.

A store knows nothing of answers; :class:`~llmrelay.cache.exact.ExactCache` encodes them.
Each backend turns its own failures (a Redis that is down, a locked or corrupt SQLite
file) into :class:`CacheUnavailable` at its boundary, and the cache above decides what a
failure costs (nothing: a miss). A backend is chosen by name from :data:`STORES`.

A ``ttl_s`` of ``None`` keeps an entry until it is evicted or cleared; a ``ttl_s`` of zero
or less stores nothing (and drops what the key held).
"""

from __future__ import annotations

import math
import sqlite3
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from llmrelay.errors import ConfigError, LLMRelayError
from llmrelay.sqlite import open_sqlite

if TYPE_CHECKING:
    from redis.asyncio import BlockingConnectionPool, Redis

Clock = Callable[[], float]

ENTRY_OVERHEAD_BYTES = 256
"""What :class:`MemoryStore` counts for one entry beyond its key and value lengths: the
ordered dict's slot and link, the (value, expiry, size) tuple and the headers of the key's
``str`` and the value's ``bytes`` — about 250 bytes measured with ``tracemalloc`` on
CPython 3.11 over 100,000 entries."""


class CacheUnavailable(LLMRelayError):
    """A store's backend failed: Redis is unreachable, SQLite is locked or corrupt."""


class CacheStore(Protocol):
    """Bytes by key with an expiry; one owner opens and closes it."""

    @property
    def where(self) -> str:
        """What and where the backend is, for logs (never a password)."""
        ...

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float | None) -> None: ...

    async def delete(self, key: str) -> None: ...

    async def clear(self) -> None:
        """Drop every entry of this store (only its own, in a shared backend)."""
        ...

    async def aclose(self) -> None: ...

    def stats(self) -> dict[str, int]:
        """Counters the backend keeps for itself; cheap, no I/O."""
        ...


def _expires(clock: Clock, ttl_s: float | None) -> float | None:
    return None if ttl_s is None else clock() + ttl_s


class MemoryStore:
    """A least-recently-used map in this process, bounded in bytes.

    An entry counts its key's UTF-8 length, its value's length and
    :data:`ENTRY_OVERHEAD_BYTES`; storing one evicts the least recently used entries until
    the total fits ``max_bytes``, and a value that could never fit is not stored. Expired
    entries are dropped when read and otherwise age out of the LRU order like any other.
    """

    def __init__(self, max_bytes: int, clock: Clock = time.time) -> None:
        if max_bytes <= 0:
            raise ValueError(f"max_bytes must be positive, got {max_bytes}")
        self.max_bytes = max_bytes
        self.bytes = 0
        self._clock = clock
        self._entries: OrderedDict[str, tuple[bytes, float | None, int]] = OrderedDict()
        self._evicted = self._expired = self._oversized = 0

    @property
    def where(self) -> str:
        return "memory"

    def __len__(self) -> int:
        return len(self._entries)

    def keys(self) -> list[str]:
        """The keys held, least recently used first."""
        return list(self._entries)

    async def get(self, key: str) -> bytes | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        value, expires, _ = entry
        if expires is not None and expires <= self._clock():
            self._drop(key)
            self._expired += 1
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        self._drop(key)
        if ttl_s is not None and ttl_s <= 0:
            return
        size = len(key.encode()) + len(value) + ENTRY_OVERHEAD_BYTES
        if size > self.max_bytes:
            self._oversized += 1
            return
        while self.bytes + size > self.max_bytes:
            _, (_, _, old) = self._entries.popitem(last=False)
            self.bytes -= old
            self._evicted += 1
        self._entries[key] = (value, _expires(self._clock, ttl_s), size)
        self.bytes += size

    async def delete(self, key: str) -> None:
        self._drop(key)

    async def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0

    async def aclose(self) -> None:
        await self.clear()

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._entries),
            "bytes": self.bytes,
            "max_bytes": self.max_bytes,
            "evicted": self._evicted,
            "expired": self._expired,
            "oversized": self._oversized,
        }

    def _drop(self, key: str) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[2]


class SqliteStore:
    """One SQLite file (WAL), kept across restarts and shared by the processes of a machine.

    Calls run on the caller's thread: a lookup by primary key takes microseconds, less than
    handing it to a thread would. ``busy_timeout_s`` bounds how long a write waits for
    another process's (it fails, and the cache skips it, rather than stall the loop).
    Expired rows are never returned; every :attr:`PURGE_EVERY` writes, at most
    :attr:`PURGE_ROWS` of them are deleted, so no call does unbounded work.
    """

    PURGE_EVERY = 64
    PURGE_ROWS = 256
    TABLE = "exact_cache"

    def __init__(
        self, path: Path | str, clock: Clock = time.time, *, busy_timeout_s: float = 0.05
    ) -> None:
        self.path = Path(path).expanduser()
        self._clock = clock
        self._writes = self._purged = 0
        self._db = open_sqlite(
            self.path,
            key="cache.path",
            busy_timeout_s=busy_timeout_s,
            # A cache may lose its last writes to a power cut, never its consistency.
            pragmas=["PRAGMA synchronous=NORMAL"],
            schema=[
                f"CREATE TABLE IF NOT EXISTS {self.TABLE} "
                "(key TEXT PRIMARY KEY, value BLOB NOT NULL, expires REAL)",
                f"CREATE INDEX IF NOT EXISTS {self.TABLE}_expires "
                f"ON {self.TABLE} (expires) WHERE expires IS NOT NULL",
            ],
        )

    @property
    def where(self) -> str:
        return f"SQLite at {self.path}"

    async def get(self, key: str) -> bytes | None:
        found = self._one(f"SELECT value, expires FROM {self.TABLE} WHERE key = ?", (key,))
        if found is None:
            return None
        value, expires = found
        if expires is not None and expires <= self._clock():
            return None
        return bytes(value)

    async def set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        if ttl_s is not None and ttl_s <= 0:
            await self.delete(key)
            return
        self._run(
            f"INSERT OR REPLACE INTO {self.TABLE} VALUES (?, ?, ?)",
            (key, value, _expires(self._clock, ttl_s)),
        )
        self._writes += 1
        if self._writes % self.PURGE_EVERY == 0:
            self.purge()

    async def delete(self, key: str) -> None:
        self._run(f"DELETE FROM {self.TABLE} WHERE key = ?", (key,))

    async def clear(self) -> None:
        self._run(f"DELETE FROM {self.TABLE}", ())

    def purge(self) -> int:
        """Delete up to :attr:`PURGE_ROWS` expired rows; how many went."""
        cursor = self._run(
            f"DELETE FROM {self.TABLE} WHERE rowid IN (SELECT rowid FROM {self.TABLE} "
            "WHERE expires <= ? LIMIT ?)",
            (self._clock(), self.PURGE_ROWS),
        )
        self._purged += cursor.rowcount
        return cursor.rowcount

    async def aclose(self) -> None:
        self._db.close()

    def stats(self) -> dict[str, int]:
        return {"purged": self._purged}

    def _one(self, sql: str, args: tuple[object, ...]) -> tuple[bytes, float | None] | None:
        try:
            found: tuple[bytes, float | None] | None = self._db.execute(sql, args).fetchone()
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc
        return found

    def _run(self, sql: str, args: tuple[object, ...]) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc


class RedisStore:
    """Entries in Redis under ``prefix``, shared by every replica, expiring by Redis (PX).

    The store owns a bounded connection pool and closes it. A cache answers now or not at
    all: no retries, and ``timeout_s`` bounds connecting, each command and the wait for a
    free connection.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "llmrelay:cache:",
        *,
        timeout_s: float = 0.5,
        max_connections: int = 32,
    ) -> None:
        # The redis extra, imported only when this backend is configured.
        from redis.asyncio import BlockingConnectionPool, Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import RedisError

        self.prefix = prefix
        self._where = f"Redis at {_redacted(url)}"
        self._errors: tuple[type[Exception], ...] = (RedisError, OSError)
        try:
            self._pool: BlockingConnectionPool = BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=timeout_s,
                socket_timeout=timeout_s,
                socket_connect_timeout=timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
        except ValueError as exc:
            raise ConfigError(f"cache.redis_url: {exc}") from None
        self._redis: Redis = Redis(connection_pool=self._pool)
        self._closed = False

    @property
    def where(self) -> str:
        return self._where

    async def get(self, key: str) -> bytes | None:
        try:
            value = await self._redis.get(self.prefix + key)
        except self._errors as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc
        if isinstance(value, str):  # only with decode_responses, which this store never sets
            return value.encode()
        return value

    async def set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        if ttl_s is not None and ttl_s <= 0:
            await self.delete(key)
            return
        px = None if ttl_s is None else max(1, math.ceil(ttl_s * 1000))
        try:
            await self._redis.set(self.prefix + key, value, px=px)
        except self._errors as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc

    async def delete(self, key: str) -> None:
        try:
            await self._redis.unlink(self.prefix + key)
        except self._errors as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc

    async def clear(self) -> None:
        try:
            batch: list[bytes] = []
            async for name in self._redis.scan_iter(match=_glob_escape(self.prefix) + "*"):
                batch.append(name)
                if len(batch) == 500:
                    await self._redis.unlink(*batch)
                    batch.clear()
            if batch:
                await self._redis.unlink(*batch)
        except self._errors as exc:
            raise CacheUnavailable(f"{self.where}: {exc}") from exc

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        await self._redis.aclose()
        await self._pool.disconnect()

    def stats(self) -> dict[str, int]:
        return {}


def _redacted(url: str) -> str:
    split = urllib.parse.urlsplit(url)
    if split.password is None:
        return url
    netloc = split.netloc.rsplit("@", 1)[1]
    user = f"{split.username}:" if split.username else ":"
    return urllib.parse.urlunsplit(split._replace(netloc=f"{user}***@{netloc}"))


def _glob_escape(text: str) -> str:
    return "".join(f"\\{c}" if c in "*?[]\\" else c for c in text)


@dataclass(frozen=True, kw_only=True)
class StoreSettings:
    """What opening a store may need; each backend reads its own fields."""

    max_bytes: int = 64 * 2**20
    """``memory``: the bound on keys, values and per-entry overhead together."""
    path: Path = Path("~/.cache/llmrelay/responses.sqlite3")
    """``sqlite``: the database file, created with its directory."""
    redis_url: str | None = None
    """``redis``: where the server is."""
    prefix: str = "llmrelay:cache:"
    """``redis``: the prefix of every key, so that stores can share a server."""


StoreFactory = Callable[[StoreSettings, Clock], CacheStore]


def _memory(settings: StoreSettings, clock: Clock) -> CacheStore:
    return MemoryStore(settings.max_bytes, clock)


def _sqlite(settings: StoreSettings, clock: Clock) -> CacheStore:
    return SqliteStore(settings.path, clock)


def _redis(settings: StoreSettings, clock: Clock) -> CacheStore:
    if not settings.redis_url:
        raise ConfigError("cache.redis_url: backend redis needs a URL")
    return RedisStore(settings.redis_url, settings.prefix)


STORES: Mapping[str, StoreFactory] = MappingProxyType(
    {"memory": _memory, "sqlite": _sqlite, "redis": _redis}
)
"""Each cache backend by name and how it is opened. Redis expires entries on its own
clock, so it does not take the clock the others do."""


def open_store(backend: str, settings: StoreSettings, clock: Clock = time.time) -> CacheStore:
    """The store ``backend`` names, opened with ``settings``."""
    factory = STORES.get(backend)
    if factory is None:
        raise ConfigError(
            f"cache.backend: unknown backend {backend!r} (known: {', '.join(sorted(STORES))})"
        )
    return factory(settings, clock)


__all__ = [
    "ENTRY_OVERHEAD_BYTES",
    "STORES",
    "CacheStore",
    "CacheUnavailable",
    "MemoryStore",
    "RedisStore",
    "SqliteStore",
    "StoreFactory",
    "StoreSettings",
    "open_store",
]
