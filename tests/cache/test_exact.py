"""The exact cache: answers by key, only real answers kept, and a failing store never fails a call."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path

import pytest

from cache.conftest import FakeClock
from llmrelay.cache.entry import FORMAT, CachedAnswer, decode
from llmrelay.cache.exact import ExactCache
from llmrelay.cache.stores import CacheUnavailable, MemoryStore, RedisStore, SqliteStore
from llmrelay.types import ChatResponse, StreamEnd, StreamStart, TextDelta, Usage

ANSWER = CachedAnswer(
    response=ChatResponse(content="Paris.", usage=Usage(input_tokens=9, output_tokens=2),
                          cost_micros=321, model="gpt-4o-mini"),
)  # fmt: skip
STREAMED = CachedAnswer(
    response=ANSWER.response,
    events=[StreamStart(id="r"), TextDelta("Paris."), StreamEnd(usage=Usage(output_tokens=2))],
)


class FlakyStore(MemoryStore):
    """A memory store that fails while ``down`` is set, as a backend outage would."""

    def __init__(self, clock: FakeClock) -> None:
        super().__init__(1 << 20, clock)
        self.down = False
        self.calls = 0
        self.closed = 0

    def _check(self) -> None:
        self.calls += 1
        if self.down:
            raise CacheUnavailable("flaky store: connection refused")

    async def get(self, key: str) -> bytes | None:
        self._check()
        return await super().get(key)

    async def set(self, key: str, value: bytes, ttl_s: float | None) -> None:
        self._check()
        await super().set(key, value, ttl_s)

    async def aclose(self) -> None:
        self.closed += 1
        await super().aclose()


def _warnings(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "llmrelay.cache" and r.levelno == logging.WARNING
    ]


async def test_an_answer_put_is_got_back_and_counted(clock: FakeClock) -> None:
    """A miss, a put, then a hit returning the answer as stored; stats count each."""
    cache = ExactCache(MemoryStore(1 << 20, clock), ttl_s=None, clock=clock)
    assert await cache.get("k") is None
    assert await cache.put("k", STREAMED)
    hit = await cache.get("k")
    assert hit is not None
    assert (hit.response, hit.events, hit.stored_at) == (
        STREAMED.response,
        STREAMED.events,
        clock.now,
    )
    assert cache.stats() == {
        "hits": 1, "misses": 1, "stores": 1, "refused": 0, "errors": 0, "unreachable": False,
    }  # fmt: skip
    await cache.aclose()


async def test_answers_expire_after_the_cache_ttl_or_the_one_put_gives(clock: FakeClock) -> None:
    """The cache's ttl_s applies unless put names another."""
    cache = ExactCache(MemoryStore(1 << 20, clock), ttl_s=60, clock=clock)
    await cache.put("default", ANSWER)
    await cache.put("longer", ANSWER, ttl_s=600)
    clock.advance(60)
    assert await cache.get("default") is None
    assert await cache.get("longer") is not None
    await cache.aclose()


@pytest.mark.parametrize(
    "answer",
    [
        CachedAnswer(response=ChatResponse(content="", finish_reason="error")),
        CachedAnswer(response=ChatResponse(content="Paris.", cached="exact")),
        CachedAnswer(response=ChatResponse(content="Paris.", cached="semantic")),
        CachedAnswer(response=ANSWER.response, events=[StreamStart(), TextDelta("Par")]),
        CachedAnswer(response=ANSWER.response, events=[TextDelta("x"), StreamEnd("error")]),
        CachedAnswer(response=ANSWER.response, events=[]),
    ],
    ids=["error", "exact-hit", "semantic-hit", "cut-stream", "stream-error", "empty-stream"],
)
async def test_errors_hits_and_broken_streams_are_never_cached(
    answer: CachedAnswer, clock: FakeClock
) -> None:
    """put refuses what is not a deployment's whole answer, and counts the refusal."""
    cache = ExactCache(MemoryStore(1 << 20, clock), ttl_s=None, clock=clock)
    assert not await cache.put("k", answer)
    assert await cache.get("k") is None
    assert cache.stats()["refused"] == 1
    assert cache.stats()["stores"] == 0


async def test_an_entry_of_another_version_is_a_miss(clock: FakeClock) -> None:
    """Bytes another version wrote are a miss, and the next put replaces them."""
    store = MemoryStore(1 << 20, clock)
    await store.set("k", b"\x09 written by llmrelay 9", None)
    cache = ExactCache(store, ttl_s=None, clock=clock)
    assert await cache.get("k") is None
    await cache.put("k", ANSWER)
    data = await store.get("k")
    assert data is not None and data[:1] == FORMAT and decode(data) is not None
    assert cache.stats()["misses"] == 1 and cache.stats()["errors"] == 0


async def test_an_unreachable_redis_misses_with_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Redis down: get answers None, put keeps nothing, one WARNING, errors counted; the
    store is tried again only after retry_after_s, and a second failure does not warn again."""
    cache = ExactCache(RedisStore("redis://127.0.0.1:1/0"), ttl_s=60, clock=clock, retry_after_s=5)
    with caplog.at_level(logging.WARNING, logger="llmrelay.cache"):
        assert await cache.get("k") is None
        assert await cache.get("k") is None
        assert not await cache.put("k", ANSWER)
        assert cache.stats()["errors"] == 1
        clock.advance(5)
        assert await cache.get("k") is None
    assert cache.stats() == {
        "hits": 0, "misses": 3, "stores": 0, "refused": 0, "errors": 2, "unreachable": True,
    }  # fmt: skip
    [warning] = _warnings(caplog)
    assert "Redis at redis://127.0.0.1:1/0" in warning
    await cache.aclose()


async def test_an_outage_warns_again_only_after_the_store_recovered(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """down → one warning; back → served again, not unreachable; down again → a second warning."""
    store = FlakyStore(clock)
    cache = ExactCache(store, ttl_s=None, clock=clock, retry_after_s=1)
    await cache.put("k", ANSWER)
    with caplog.at_level(logging.INFO, logger="llmrelay.cache"):
        store.down = True
        assert await cache.get("k") is None
        assert cache.stats()["unreachable"]
        calls = store.calls
        assert await cache.get("k") is None
        assert store.calls == calls  # resting: the store is left alone
        clock.advance(1)
        store.down = False
        assert await cache.get("k") is not None
        assert not cache.stats()["unreachable"]
        store.down = True
        assert not await cache.put("k2", ANSWER)
    assert len(_warnings(caplog)) == 2
    assert any("answers again" in r.getMessage() for r in caplog.records)
    assert cache.stats()["errors"] == 2
    await cache.aclose()


async def test_a_locked_sqlite_file_costs_the_entry_not_the_call(
    tmp_path: Path, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Another process holds the write lock: put keeps nothing and warns; reads still hit."""
    path = tmp_path / "c.sqlite3"
    cache = ExactCache(SqliteStore(path, clock, busy_timeout_s=0), ttl_s=None, clock=clock)
    assert await cache.put("k", ANSWER)
    other = sqlite3.connect(path, isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with caplog.at_level(logging.WARNING, logger="llmrelay.cache"):
            assert not await cache.put("k2", ANSWER)
        [warning] = _warnings(caplog)
        assert "database is locked" in warning and str(path) in warning
    finally:
        other.execute("ROLLBACK")
        other.close()
    clock.advance(cache.retry_after_s)
    assert await cache.get("k") is not None
    await cache.aclose()


async def test_an_unexpected_store_error_is_a_miss_with_its_traceback(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """Even a bug in a store is a miss for the call; the warning carries the traceback."""

    class Broken(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise KeyError(key)

    cache = ExactCache(Broken(1024, clock), ttl_s=None, clock=clock)
    with caplog.at_level(logging.WARNING, logger="llmrelay.cache"):
        assert await cache.get("k") is None
    [record] = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert record.exc_info is not None and "KeyError" in record.getMessage()


async def test_cancelling_a_lookup_is_not_swallowed(clock: FakeClock) -> None:
    """A cancelled call stays cancelled: only Exceptions of the store are misses."""

    class Slow(MemoryStore):
        async def get(self, key: str) -> bytes | None:
            raise asyncio.CancelledError

    cache = ExactCache(Slow(1024, clock), ttl_s=None, clock=clock)
    with pytest.raises(asyncio.CancelledError):
        await cache.get("k")
    assert cache.stats()["errors"] == 0


async def test_a_closed_cache_misses_and_closes_its_store_once(clock: FakeClock) -> None:
    """After aclose, get misses and put keeps nothing; closing twice closes the store once."""
    store = FlakyStore(clock)
    cache = ExactCache(store, ttl_s=None, clock=clock)
    await cache.put("k", ANSWER)
    await cache.aclose()
    await cache.aclose()
    assert store.closed == 1
    assert await cache.get("k") is None
    assert not await cache.put("k", ANSWER)
