"""The semantic cache with the bundled model: what hits, what must not, and how its stores
keep replicas in step. Store failures are tested with a small stand-in embedder."""

from __future__ import annotations

import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

pytest.importorskip("sentence_transformers")

from cache.conftest import FakeClock
from cache.semantic_support import BagOfWords, BrokenEmbedder, minilm
from llmrelay.cache.embed import MiniLM
from llmrelay.cache.semantic import DEFAULT_THRESHOLD, SemanticCache
from llmrelay.cache.vectors import RedisVectorStore, SqliteVectorStore
from services import redis_url, require_redis

CONTEXT = "ctx-" + "0" * 60
OTHER_CONTEXT = "ctx-" + "1" * 60


@pytest.fixture(scope="session")
def model() -> MiniLM:
    return minilm()


@pytest.fixture
async def cache(model: MiniLM, clock: FakeClock) -> AsyncIterator[SemanticCache]:
    semantic = SemanticCache(model, SqliteVectorStore(":memory:"), ttl_s=3600, clock=clock)
    yield semantic
    await semantic.aclose()


@pytest.fixture
async def redis_prefix() -> AsyncIterator[str]:
    require_redis()
    import redis.asyncio

    prefix = f"test:semantic:{uuid.uuid4().hex}:"
    yield prefix
    client = redis.asyncio.Redis.from_url(redis_url())
    keys = [key async for key in client.scan_iter(match=prefix + "*")]
    if keys:
        await client.delete(*keys)
    await client.aclose()


async def test_a_paraphrase_gets_the_stored_answer(cache: SemanticCache) -> None:
    """A question asked again in other words is a hit, with its similarity and stored text."""
    await cache.put(CONTEXT, "How do I reverse a list in Python?", b"use reversed()")
    hit = await cache.get(CONTEXT, "What's the way to reverse a Python list?")
    assert hit is not None
    assert hit.value == b"use reversed()"
    assert hit.matched_text == "How do I reverse a list in Python?"
    assert DEFAULT_THRESHOLD <= hit.similarity <= 1.0


async def test_a_different_sum_misses(cache: SemanticCache) -> None:
    """ "what is 2+3" is not answered with what "what is 2+2" got."""
    await cache.put(CONTEXT, "what is 2+2", b"4")
    assert await cache.get(CONTEXT, "what is 2+3") is None
    assert (await cache.get(CONTEXT, "what is 2+2")) is not None


async def test_another_context_never_hits(cache: SemanticCache) -> None:
    """The same question under another system prompt or history is a miss."""
    await cache.put(CONTEXT, "What is the capital of Australia?", b"Canberra")
    assert await cache.get(OTHER_CONTEXT, "What is the capital of Australia?") is None


async def test_an_entry_expires_after_its_ttl(cache: SemanticCache, clock: FakeClock) -> None:
    """An answer is served until its time to live has passed, and not after."""
    await cache.put(CONTEXT, "Who wrote Pride and Prejudice?", b"Jane Austen", ttl_s=60)
    clock.advance(59)
    assert await cache.get(CONTEXT, "Who wrote Pride and Prejudice?") is not None
    clock.advance(1)
    assert await cache.get(CONTEXT, "Who wrote Pride and Prejudice?") is None


async def test_an_expired_entry_does_not_shadow_a_live_one(
    cache: SemanticCache, clock: FakeClock
) -> None:
    """When the closest entry has expired, the next closest live one still answers."""
    await cache.put(CONTEXT, "What is the capital of Canada?", b"short-lived", ttl_s=10)
    await cache.put(CONTEXT, "What's the capital of Canada?", b"Ottawa", ttl_s=1000)
    clock.advance(10)
    hit = await cache.get(CONTEXT, "What is the capital of Canada?")
    assert hit is not None and hit.value == b"Ottawa"


async def test_entries_survive_reopening_the_sqlite_file(
    model: MiniLM, clock: FakeClock, tmp_path: Path
) -> None:
    """A cache opened on the same SQLite file finds what an earlier one stored."""
    path = tmp_path / "semantic.sqlite"
    first = SemanticCache(model, SqliteVectorStore(path), ttl_s=None, clock=clock)
    await first.put(CONTEXT, "How many bones are in the adult human body?", b"206")
    await first.aclose()

    second = SemanticCache(model, SqliteVectorStore(path), ttl_s=None, clock=clock)
    hit = await second.get(CONTEXT, "How many bones does an adult human have?")
    await second.aclose()
    assert hit is not None and hit.value == b"206"


async def test_two_replicas_on_redis_see_each_others_puts(
    model: MiniLM, clock: FakeClock, redis_prefix: str
) -> None:
    """A put on one replica is found by the other, through the shared store's stream."""
    one = SemanticCache(model, RedisVectorStore(redis_url(), redis_prefix), ttl_s=60, clock=clock)
    two = SemanticCache(model, RedisVectorStore(redis_url(), redis_prefix), ttl_s=60, clock=clock)
    try:
        assert await two.get(CONTEXT, "What does HTTP status code 404 mean?") is None
        await one.put(CONTEXT, "What does HTTP status code 404 mean?", b"Not Found")
        hit = await two.get(CONTEXT, "What is the meaning of the HTTP 404 status code?")
        assert hit is not None and hit.value == b"Not Found"
        assert two.stats()["entries"] == 1
    finally:
        await one.aclose()
        await two.aclose()


async def test_a_replica_started_later_loads_what_is_already_stored(
    model: MiniLM, clock: FakeClock, redis_prefix: str
) -> None:
    """A replica that joins after the puts finds the entries already in Redis."""
    one = SemanticCache(model, RedisVectorStore(redis_url(), redis_prefix), ttl_s=60, clock=clock)
    await one.put(CONTEXT, "Why is the sky blue?", b"Rayleigh scattering")
    await one.aclose()
    late = SemanticCache(model, RedisVectorStore(redis_url(), redis_prefix), ttl_s=60, clock=clock)
    hit = await late.get(CONTEXT, "What makes the sky look blue?")
    await late.aclose()
    assert hit is not None and hit.value == b"Rayleigh scattering"


async def test_a_replica_that_fell_behind_a_trimmed_stream_reloads(
    clock: FakeClock, redis_prefix: str
) -> None:
    """When the stream was trimmed past what a replica had read, it reloads every entry."""
    writer_store = RedisVectorStore(redis_url(), redis_prefix, stream_maxlen=1)
    writer = SemanticCache(BagOfWords(), writer_store, ttl_s=60, clock=clock)
    reader = SemanticCache(
        BagOfWords(), RedisVectorStore(redis_url(), redis_prefix), ttl_s=60, clock=clock
    )
    try:
        await writer.put(CONTEXT, "first question here", b"1")
        assert await reader.get(CONTEXT, "first question here") is not None
        for n in range(300):  # MAXLEN ~ trims whole nodes (100 entries each by default)
            await writer.put(CONTEXT, f"filler question number {n}", b"x")
        await writer.put(CONTEXT, "last question here", b"2")
        assert await _stream_length(redis_prefix) < 302  # the first entries were trimmed
        hit = await reader.get(CONTEXT, "last question here")
        assert hit is not None and hit.value == b"2"
        assert reader.stats()["entries"] == 302
    finally:
        await writer.aclose()
        await reader.aclose()


async def test_unreachable_redis_is_a_miss_and_one_warning(
    clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    """With Redis down, lookups miss and puts do nothing; one warning, every error counted."""
    store = RedisVectorStore("redis://127.0.0.1:1/0", "down:", timeout_s=0.2)
    cache = SemanticCache(BagOfWords(), store, ttl_s=60, clock=clock, retry_after_s=5)
    with caplog.at_level(logging.WARNING, logger="llmrelay.cache"):
        assert await cache.get(CONTEXT, "anything at all") is None
        await cache.put(CONTEXT, "anything at all", b"x")  # resting: not even tried
        clock.advance(5)
        await cache.put(CONTEXT, "anything at all", b"x")
        clock.advance(5)
        assert await cache.get(CONTEXT, "anything at all") is None
    await cache.aclose()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    assert "semantic cache unavailable" in warnings[0].getMessage()
    stats = cache.stats()
    assert stats["errors"] == 3 and stats["misses"] == 2 and stats["hits"] == 0


async def test_a_failing_embedder_is_a_miss_not_an_error_for_the_caller(
    clock: FakeClock,
) -> None:
    """A model that cannot run costs the cache, never the call."""
    embedder = BrokenEmbedder()
    cache = SemanticCache(embedder, SqliteVectorStore(":memory:"), ttl_s=None, clock=clock)
    await cache.put(CONTEXT, "a question", b"an answer")
    clock.advance(10)
    assert await cache.get(CONTEXT, "a question") is None
    await cache.aclose()
    assert embedder.calls == 2 and cache.stats()["errors"] == 2


async def test_stats_count_hits_misses_and_time(cache: SemanticCache) -> None:
    """Hits, misses, entries and the time spent embedding and searching are reported."""
    await cache.put(CONTEXT, "What is photosynthesis?", b"...")
    await cache.get(CONTEXT, "Can you explain what photosynthesis is?")
    await cache.get(CONTEXT, "What is the capital of Peru?")
    stats = cache.stats()
    assert (stats["hits"], stats["misses"], stats["errors"], stats["entries"]) == (1, 1, 0, 1)
    assert stats["embed_s"] > 0 and stats["search_s"] > 0


async def test_a_closed_cache_misses_and_keeps_nothing(cache: SemanticCache) -> None:
    """After aclose a call still running at shutdown gets a miss, not an exception."""
    await cache.aclose()
    await cache.put(CONTEXT, "What is photosynthesis?", b"...")
    assert await cache.get(CONTEXT, "What is photosynthesis?") is None
    await cache.aclose()


async def _stream_length(prefix: str) -> int:
    import redis.asyncio

    client = redis.asyncio.Redis.from_url(redis_url())
    try:
        return int(await client.xlen(prefix + "log"))
    finally:
        await client.aclose()
