"""Prompt caching as the providers do it, per API key and model, on the simulator's clock.

Two ways of caching, chosen by the model's API:

- **prefixes** (OpenAI; Gemini's implicit caching): every served prompt is cached. A later
  prompt reads the longest prefix, in tokens, that an earlier one of the same key and model
  shares and that is still alive, counted only from ``minimum`` tokens (OpenAI: 1024) and
  rounded down to ``minimum`` + a multiple of 128 (OpenAI: "cache hits occur in increments
  of 128 tokens"; Google documents no increment, so Gemini's hits are rounded the same way).
- **breakpoints** (Anthropic): only prefixes that end at a block marked ``cache_control``
  are written, and only when they hold ``minimum`` tokens or more. A read is the longest
  cached prefix ending at a block boundary, looked for from each breakpoint back over at
  most 20 blocks (Anthropic's documented look-back); the write is everything from there up
  to the last cacheable breakpoint. Usage then splits the prompt into the read, the
  written (``cache_creation_input_tokens``) and the rest (``input_tokens``).

An entry lives ``ttl`` seconds after its last use (write or read), and is usable only from
``delay`` seconds after it was written: the provider caches a prompt when its answer begins,
so a request sent while the first one is still before its first token does not hit.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Callable
from dataclasses import dataclass

from llmrelay.simulator.engine import Prompt

Clock = Callable[[], float]
INCREMENT = 128
"""Prefix hits grow in steps of this many tokens past the minimum (OpenAI's figure)."""
LOOKBACK_BLOCKS = 20
"""How many blocks back from a breakpoint Anthropic looks for a cached prefix."""
MAX_BREAKPOINTS = 4
"""Anthropic's limit on blocks with ``cache_control`` in one request."""


@dataclass(frozen=True, slots=True)
class CacheUse:
    """What one call did with the prompt cache: tokens read from it and written to it."""

    read: int = 0
    write: int = 0


@dataclass(slots=True)
class _Entry:
    since: float
    until: float


class PromptCache:
    """Cached prompt prefixes per (API key, model), by a digest of their tokens."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self._stores: dict[tuple[str, str], dict[bytes, _Entry]] = {}
        self._pruned = 0.0

    def reset(self) -> None:
        self._stores.clear()

    def _store(self, key: str, model: str, now: float) -> dict[bytes, _Entry]:
        if now - self._pruned >= 60.0:  # forget expired entries now and then, not per call
            self._pruned = now
            for store in self._stores.values():
                for digest in [d for d, e in store.items() if e.until <= now]:
                    del store[digest]
        return self._stores.setdefault((key, model), {})

    @staticmethod
    def _alive(entry: _Entry | None, now: float) -> bool:
        return entry is not None and entry.since <= now < entry.until

    @staticmethod
    def _keep(
        store: dict[bytes, _Entry], digest: bytes, now: float, delay: float, ttl: float
    ) -> None:
        """Write an entry, or push back the end of one still alive (it was used again)."""
        entry = store.get(digest)
        if entry is not None and entry.until > now:
            entry.until = max(entry.until, now + ttl)
        else:
            store[digest] = _Entry(now + delay, now + delay + ttl)

    def prefixes(
        self, key: str, model: str, prompt: Prompt, *, minimum: int, ttl: float, delay: float
    ) -> CacheUse:
        """Automatic prefix caching (OpenAI, Gemini): read the longest live prefix, then
        cache this prompt's own prefixes."""
        total = prompt.tokens
        if total < minimum:
            return CacheUse()
        now = self._clock()
        store = self._store(key, model, now)
        tokens = array("q", [t for ids in prompt.ids for t in ids]).tobytes()
        width = array("q").itemsize
        hasher = hashlib.blake2b(digest_size=16)
        done = 0
        boundaries: list[tuple[int, bytes]] = []
        for end in range(minimum, total + 1, INCREMENT):
            hasher.update(tokens[done * width : end * width])
            done = end
            boundaries.append((end, hasher.copy().digest()))
        read = 0
        for end, digest in boundaries:
            if not self._alive(store.get(digest), now):
                break
            read = end
        for end, digest in boundaries:
            if end <= read:
                self._keep(store, digest, now, 0.0, ttl)
            else:
                self._keep(store, digest, now, delay, ttl)
        return CacheUse(read=read)

    def breakpoints(
        self, key: str, model: str, prompt: Prompt, *, minimum: int, ttl: float, delay: float
    ) -> CacheUse:
        """Explicit breakpoints (Anthropic): read the longest cached prefix found back from
        a breakpoint, write up to the last breakpoint whose prefix reaches ``minimum``."""
        marks = [i for i, s in enumerate(prompt.segments) if s.breakpoint]
        if not marks:
            return CacheUse()
        now = self._clock()
        store = self._store(key, model, now)
        ends: list[int] = []
        digests: list[bytes] = []
        hasher = hashlib.blake2b(digest_size=16)
        total = 0
        for segment, size in zip(prompt.segments, prompt.sizes(), strict=True):
            ident = segment.text if segment.ident is None else segment.ident
            hasher.update(f"{segment.role}\x00{segment.framing}\x00{ident}\x01".encode())
            total += size
            ends.append(total)
            digests.append(hasher.copy().digest())
        read, hit = 0, -1
        for mark in marks:
            for block in range(mark, max(-1, mark - LOOKBACK_BLOCKS), -1):
                if self._alive(store.get(digests[block]), now):
                    if ends[block] > read:
                        read, hit = ends[block], block
                    break
        if hit >= 0:
            self._keep(store, digests[hit], now, 0.0, ttl)  # a read refreshes the entry
        cacheable = [m for m in marks if ends[m] >= minimum and ends[m] > read]
        if not cacheable:
            return CacheUse(read=read)
        for mark in cacheable:
            self._keep(store, digests[mark], now, delay, ttl)
        return CacheUse(read=read, write=ends[cacheable[-1]] - read)
