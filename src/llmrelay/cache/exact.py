"""The exact response cache: the same normalized request, the same answer, at no cost.

The caller computes the key (:func:`llmrelay.cache.key.exact_key`), asks :meth:`ExactCache.get`
before routing and hands the answer it got to :meth:`ExactCache.put` afterwards. Only
answers are kept: ``put`` refuses a response that finished with ``"error"``, one that
itself came from a cache, and a recorded stream that did not end normally.

A cache must never cost a call. When the store fails (Redis down, SQLite locked or
corrupt), ``get`` answers ``None`` and ``put`` keeps nothing; the failure is counted in
``errors``, logged once as a WARNING on the ``llmrelay.cache`` logger, and the store is
left alone for ``retry_after_s`` before it is tried again. It is logged again only after
the store has answered once more and failed anew.
"""

from __future__ import annotations

import logging
import time

import msgspec

from llmrelay.cache.entry import CachedAnswer, decode, encode
from llmrelay.cache.outage import Outage
from llmrelay.cache.stores import CacheStore, Clock
from llmrelay.types import StreamEnd

log = logging.getLogger("llmrelay.cache")


class ExactCache:
    """Cached answers by exact key over a :class:`~llmrelay.cache.stores.CacheStore`,
    which it owns and closes.

    ``ttl_s`` is how long an answer is kept unless :meth:`put` says otherwise (``None``:
    until the store evicts it). After :meth:`aclose`, lookups miss and nothing is stored,
    so a call still running at shutdown is not failed by it.
    """

    def __init__(
        self,
        store: CacheStore,
        *,
        ttl_s: float | None,
        clock: Clock = time.time,
        retry_after_s: float = 5.0,
    ) -> None:
        self.store = store
        self.ttl_s = ttl_s
        self.outage = Outage("response cache", clock, retry_after_s)
        self._clock = clock
        self._hits = self._misses = self._stores = self._refused = 0
        self._closed = False

    @property
    def retry_after_s(self) -> float:
        return self.outage.retry_after_s

    async def get(self, key: str) -> CachedAnswer | None:
        """The answer cached under ``key``; ``None`` on a miss, an entry another version
        wrote, or a store that fails (counted as a miss too)."""
        if self._closed or self.outage.resting():
            self._misses += 1
            return None
        try:
            data = await self.store.get(key)
        except Exception as exc:  # any failure of the store is a miss, never the call's
            self.outage.failed(exc, self.store.where)
            self._misses += 1
            return None
        self.outage.answered(self.store.where)
        answer = None if data is None else decode(data)
        if answer is None:
            self._misses += 1
        else:
            self._hits += 1
        return answer

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float | None = None) -> bool:
        """Keep ``answer`` under ``key`` for ``ttl_s`` (default: the cache's); whether it
        was kept. Errors, answers served from a cache and streams cut short are refused."""
        if self._closed or self.outage.resting():
            return False
        if not _cacheable(answer):
            self._refused += 1
            return False
        stamped = msgspec.structs.replace(answer, stored_at=self._clock())
        try:
            await self.store.set(key, encode(stamped), self.ttl_s if ttl_s is None else ttl_s)
        except Exception as exc:  # any failure of the store costs the entry, never the call
            self.outage.failed(exc, self.store.where)
            return False
        self.outage.answered(self.store.where)
        self._stores += 1
        return True

    def stats(self) -> dict[str, int | bool]:
        """``hits``, ``misses``, ``stores``, ``refused`` and store ``errors`` so far, and
        whether the store is ``unreachable`` now."""
        return {
            "hits": self._hits,
            "misses": self._misses,
            "stores": self._stores,
            "refused": self._refused,
            "errors": self.outage.errors,
            "unreachable": self.outage.down,
        }

    async def aclose(self) -> None:
        """Close the store, once; a store that fails to close is logged, not raised."""
        if self._closed:
            return
        self._closed = True
        try:
            await self.store.aclose()
        except Exception:  # shutting down: nothing is left that could use it
            log.warning("response cache: closing %s failed", self.store.where, exc_info=True)


def _cacheable(answer: CachedAnswer) -> bool:
    response = answer.response
    if response.finish_reason == "error" or response.cached is not None:
        return False
    if answer.events is None:
        return True
    end = answer.events[-1] if answer.events else None
    return isinstance(end, StreamEnd) and end.finish_reason != "error"


__all__ = ["ExactCache"]
