"""Stores: bytes by key with an expiry, in memory (bounded in bytes, LRU), SQLite or Redis."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cache.conftest import FakeClock
from llmrelay.cache.stores import (
    ENTRY_OVERHEAD_BYTES,
    STORES,
    CacheStore,
    CacheUnavailable,
    MemoryStore,
    RedisStore,
    SqliteStore,
    StoreSettings,
    open_store,
)
from llmrelay.errors import ConfigError
from services import redis_url, require_redis

BACKENDS = ["memory", "sqlite", "redis"]


@pytest.fixture(params=BACKENDS)
async def store(
    request: pytest.FixtureRequest, tmp_path: Path, clock: FakeClock
) -> AsyncIterator[CacheStore]:
    backend: str = request.param
    if backend == "redis":
        require_redis()
    settings = StoreSettings(
        max_bytes=1 << 20,
        path=tmp_path / "cache" / "responses.sqlite3",
        redis_url=redis_url(),
        prefix=f"llmrelay:test:{uuid.uuid4().hex}:",
    )
    opened = open_store(backend, settings, clock)
    yield opened
    await opened.clear()
    await opened.aclose()


async def test_every_store_gives_back_what_it_was_given(store: CacheStore) -> None:
    """Set, get, replace and delete behave alike on every backend."""
    assert await store.get("k") is None
    await store.set("k", b"\x00value\xff", None)
    assert await store.get("k") == b"\x00value\xff"
    await store.set("k", b"other", 60)
    assert await store.get("k") == b"other"
    await store.delete("k")
    assert await store.get("k") is None
    await store.delete("never-there")


async def test_clear_empties_the_store(store: CacheStore) -> None:
    """After clear, no key the store held answers."""
    for i in range(20):
        await store.set(f"k{i}", b"v", None)
    await store.clear()
    assert [await store.get(f"k{i}") for i in range(20)] == [None] * 20


async def test_a_zero_ttl_stores_nothing_and_drops_the_old_value(store: CacheStore) -> None:
    """ttl_s <= 0 is already expired: the key holds nothing afterwards."""
    await store.set("k", b"old", None)
    await store.set("k", b"new", 0)
    assert await store.get("k") is None


@pytest.mark.parametrize("backend", ["memory", "sqlite"])
async def test_entries_expire_on_the_injected_clock(
    backend: str, tmp_path: Path, clock: FakeClock
) -> None:
    """An entry answers until its TTL has passed on the store's clock, then never again."""
    store = open_store(backend, StoreSettings(path=tmp_path / "c.sqlite3"), clock)
    await store.set("short", b"s", 10)
    await store.set("forever", b"f", None)
    clock.advance(9.999)
    assert await store.get("short") == b"s"
    clock.advance(0.001)
    assert await store.get("short") is None
    clock.advance(10**9)
    assert await store.get("forever") == b"f"
    await store.aclose()


async def test_redis_expires_entries_by_pttl() -> None:
    """Redis keeps the TTL itself (SET … PX), to the millisecond; no TTL means none."""
    require_redis()
    prefix = f"llmrelay:test:{uuid.uuid4().hex}:"
    store = RedisStore(redis_url(), prefix)
    try:
        await store.set("k", b"v", 12.3456)
        await store.set("forever", b"v", None)
        pttl = await store._redis.pttl(prefix + "k")
        assert 12_000 < pttl <= 12_346
        assert await store._redis.pttl(prefix + "forever") == -1
    finally:
        await store.clear()
        await store.aclose()


async def test_redis_clear_leaves_other_prefixes_alone() -> None:
    """Two stores on one server, two prefixes: clearing one keeps the other's entries."""
    require_redis()
    base = f"llmrelay:test:{uuid.uuid4().hex}"
    mine, theirs = RedisStore(redis_url(), base + ":a[1]*:"), RedisStore(redis_url(), base + ":b:")
    try:
        await mine.set("k", b"mine", 60)
        await theirs.set("k", b"theirs", 60)
        await mine.clear()
        assert await mine.get("k") is None
        assert await theirs.get("k") == b"theirs"
    finally:
        await theirs.clear()
        await mine.aclose()
        await theirs.aclose()


async def test_an_unreachable_redis_raises_cache_unavailable_naming_it() -> None:
    """A refused connection is CacheUnavailable, not a redis error, and names the server."""
    store = RedisStore("redis://:secret@127.0.0.1:1/0")
    try:
        with pytest.raises(CacheUnavailable, match=r"Redis at redis://:\*\*\*@127\.0\.0\.1:1/0"):
            await store.get("k")
        with pytest.raises(CacheUnavailable):
            await store.set("k", b"v", 1)
        assert "secret" not in store.where
    finally:
        await store.aclose()
        await store.aclose()


async def test_a_sqlite_file_reopened_keeps_its_entries(tmp_path: Path, clock: FakeClock) -> None:
    """Written by one store, read by the next on the same file; expired ones stay expired."""
    path = tmp_path / "deep" / "dir" / "responses.sqlite3"
    first = SqliteStore(path, clock)
    await first.set("kept", b"v1", None)
    await first.set("brief", b"v2", 5)
    await first.aclose()
    clock.advance(6)
    second = SqliteStore(path, clock)
    assert await second.get("kept") == b"v1"
    assert await second.get("brief") is None
    await second.aclose()


async def test_sqlite_purges_expired_rows_a_bounded_number_at_a_time(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A purge deletes at most PURGE_ROWS expired rows, and never a live one."""
    store = SqliteStore(tmp_path / "c.sqlite3", clock)
    for i in range(SqliteStore.PURGE_ROWS + 10):
        await store.set(f"old{i}", b"v", 1)
    await store.set("live", b"v", None)
    clock.advance(2)
    assert store.purge() == SqliteStore.PURGE_ROWS
    assert store.purge() == 10
    assert store.purge() == 0
    assert await store.get("live") == b"v"
    await store.aclose()


async def test_sqlite_writes_purge_now_and_then(tmp_path: Path, clock: FakeClock) -> None:
    """Every PURGE_EVERY writes, expired rows are deleted without anyone asking."""
    store = SqliteStore(tmp_path / "c.sqlite3", clock)
    await store.set("old", b"v", 1)
    clock.advance(2)
    for i in range(SqliteStore.PURGE_EVERY - 1):
        await store.set(f"k{i}", b"v", None)
    assert store.stats() == {"purged": 1}
    await store.aclose()


async def test_a_broken_sqlite_file_is_unavailable_not_a_crash(
    tmp_path: Path, clock: FakeClock
) -> None:
    """A store whose database went away raises CacheUnavailable naming the file."""
    store = SqliteStore(tmp_path / "c.sqlite3", clock)
    await store.aclose()
    with pytest.raises(CacheUnavailable, match=r"c\.sqlite3"):
        await store.get("k")


def test_a_sqlite_file_that_cannot_be_opened_names_cache_path(tmp_path: Path) -> None:
    """A directory that is a file, or a file that is not a database: ConfigError at cache.path."""
    (tmp_path / "file").write_text("x")
    with pytest.raises(ConfigError, match=r"cache\.path: cannot open .*file"):
        SqliteStore(tmp_path / "file" / "c.sqlite3")
    (tmp_path / "junk.sqlite3").write_bytes(b"not a database, " * 100)
    with pytest.raises(ConfigError, match=r"cache\.path: .*junk\.sqlite3"):
        SqliteStore(tmp_path / "junk.sqlite3")


def test_backends_are_chosen_by_name_from_the_registry() -> None:
    """memory, sqlite and redis are registered; another name is a ConfigError naming the key."""
    assert set(STORES) == set(BACKENDS)
    with pytest.raises(ConfigError, match=r"cache\.backend: unknown backend 'memcached'"):
        open_store("memcached", StoreSettings())
    with pytest.raises(ConfigError, match=r"cache\.redis_url"):
        open_store("redis", StoreSettings(redis_url=None))


def _size(key: str, value: bytes) -> int:
    return len(key.encode()) + len(value) + ENTRY_OVERHEAD_BYTES


@settings(max_examples=60, deadline=None)
@given(
    bound=st.integers(ENTRY_OVERHEAD_BYTES + 8, 8 * 1024),
    writes=st.lists(
        st.tuples(st.integers(0, 40), st.integers(0, 3 * 1024)), min_size=1, max_size=200
    ),
)
async def test_memory_never_holds_more_bytes_than_its_bound(
    bound: int, writes: list[tuple[int, int]]
) -> None:
    """Under any sequence of writes of any size, the counted bytes stay within max_bytes,
    match what is held, and the last value that fits is kept."""
    store = MemoryStore(bound, FakeClock())
    for key_no, length in writes:
        key, value = f"key-{key_no}", bytes(length)
        await store.set(key, value, None)
        assert store.bytes <= bound
        fits = _size(key, value) <= bound
        assert (await store.get(key) == value) == fits
    held = [(k, await store.get(k)) for k in store.keys()]  # noqa: SIM118  # keys() is the LRU order, a list
    assert store.bytes == sum(_size(k, v) for k, v in held if v is not None)


async def test_memory_evicts_the_least_recently_used_first(clock: FakeClock) -> None:
    """Reading an entry makes it recent: the one neither written nor read lately goes."""
    value = b"x" * 100
    store = MemoryStore(3 * _size("a", value), clock)
    for key in "abc":
        await store.set(key, value, None)
    assert await store.get("a") == value
    await store.set("d", value, None)
    assert store.keys() == ["c", "a", "d"]
    assert await store.get("b") is None
    await store.set("c", value, None)
    await store.set("e", value, None)
    assert store.keys() == ["d", "c", "e"]
    assert store.stats()["evicted"] == 2


async def test_memory_skips_a_value_larger_than_its_bound(clock: FakeClock) -> None:
    """A value that could never fit is not stored, evicts nothing, and drops the key's old value."""
    store = MemoryStore(1024, clock)
    await store.set("small", b"s", None)
    await store.set("k", b"old", None)
    await store.set("k", bytes(1024), None)
    assert await store.get("k") is None
    assert await store.get("small") == b"s"
    assert store.stats()["oversized"] == 1
    assert store.bytes == _size("small", b"s")


async def test_memory_counts_keys_in_utf8_bytes(clock: FakeClock) -> None:
    """A key's cost is its encoded length, not its length in characters."""
    store = MemoryStore(1 << 20, clock)
    await store.set("é" * 10, b"", None)
    assert store.bytes == 20 + ENTRY_OVERHEAD_BYTES


def test_memory_needs_a_positive_bound() -> None:
    """max_bytes of zero could hold nothing: refused when the store is made."""
    with pytest.raises(ValueError, match="max_bytes"):
        MemoryStore(0, FakeClock())
