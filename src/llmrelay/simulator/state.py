"""Rate-limit buckets and the billing ledger of a running simulator.

Limits work as OpenAI and Anthropic document theirs: a token bucket per API key and model
that holds at most one minute's allowance and refills continuously. A request needs one
request and its prompt tokens plus ``max_tokens``; the unused part of ``max_tokens`` is
given back when the answer is complete.
"""

from __future__ import annotations

import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any


@dataclass(slots=True)
class Bucket:
    """A continuously refilling bucket of ``capacity`` units per minute."""

    capacity: float
    level: float
    stamp: float

    @property
    def rate(self) -> float:
        return self.capacity / 60.0

    def refill(self, now: float) -> None:
        self.level = min(self.capacity, self.level + (now - self.stamp) * self.rate)
        self.stamp = now

    def wait_for(self, amount: float) -> float:
        """Seconds until ``amount`` units are available (0 if they are now)."""
        return max(0.0, (amount - self.level) / self.rate)

    def until_full(self) -> float:
        return max(0.0, (self.capacity - self.level) / self.rate)


@dataclass(slots=True)
class Window:
    """What the rate-limit headers of one response report."""

    requests_limit: int | None = None
    requests_remaining: int = 0
    requests_reset_s: float = 0.0
    tokens_limit: int | None = None
    tokens_remaining: int = 0
    tokens_reset_s: float = 0.0


@dataclass(slots=True)
class Refusal:
    """Why a request was refused by a limit and when to retry."""

    kind: str  # "requests" | "tokens"
    limit: int
    requested: int
    retry_after_s: float


class Limiter:
    """Per (API key, model) request and token buckets."""

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str, str], Bucket] = {}

    def reset(self) -> None:
        self._buckets.clear()

    def _bucket(self, key: str, model: str, kind: str, capacity: int, now: float) -> Bucket:
        bucket = self._buckets.get((key, model, kind))
        if bucket is None or bucket.capacity != capacity:
            bucket = Bucket(capacity=capacity, level=float(capacity), stamp=now)
            self._buckets[(key, model, kind)] = bucket
        bucket.refill(now)
        return bucket

    def admit(
        self, key: str, model: str, rpm: int | None, tpm: int | None, tokens: int
    ) -> Refusal | None:
        """Take one request and ``tokens`` tokens, or say which limit refuses them."""
        now = self._clock()
        req = self._bucket(key, model, "r", rpm, now) if rpm else None
        tok = self._bucket(key, model, "t", tpm, now) if tpm else None
        if req is not None and rpm is not None and req.level < 1.0:
            return Refusal("requests", rpm, 1, req.wait_for(1.0))
        if tok is not None and tpm is not None and tok.level < tokens:
            wait = tok.wait_for(tokens) if tokens <= tpm else 60.0
            return Refusal("tokens", tpm, tokens, wait)
        if req is not None:
            req.level -= 1.0
        if tok is not None:
            tok.level -= tokens
        return None

    def give_back(self, key: str, model: str, tpm: int | None, tokens: int) -> None:
        """Return tokens that were taken but not used (unused ``max_tokens``, failures)."""
        if not tpm or tokens <= 0:
            return
        bucket = self._bucket(key, model, "t", tpm, self._clock())
        bucket.level = min(bucket.capacity, bucket.level + tokens)

    def window(self, key: str, model: str, rpm: int | None, tpm: int | None) -> Window:
        now = self._clock()
        out = Window()
        if rpm:
            bucket = self._bucket(key, model, "r", rpm, now)
            out.requests_limit, out.requests_remaining = rpm, max(0, int(bucket.level))
            out.requests_reset_s = bucket.until_full()
        if tpm:
            bucket = self._bucket(key, model, "t", tpm, now)
            out.tokens_limit, out.tokens_remaining = tpm, max(0, int(bucket.level))
            out.tokens_reset_s = bucket.until_full()
        return out


@dataclass(slots=True)
class LedgerEntry:
    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    refused: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def as_dict(self) -> dict[str, Any]:
        return {
            "requests": self.requests,
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cost_usd": round(self.cost_usd, 8),
            "refused": dict(self.refused),
        }


class Ledger:
    """What was served and refused, per API key and model."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], LedgerEntry] = {}

    def reset(self) -> None:
        self._entries.clear()

    def _entry(self, key: str, model: str) -> LedgerEntry:
        entry = self._entries.get((key, model))
        if entry is None:
            entry = self._entries[(key, model)] = LedgerEntry()
        return entry

    def served(
        self, key: str, model: str, input_tokens: int, output_tokens: int, cost_usd: float
    ) -> None:
        entry = self._entry(key, model)
        entry.requests += 1
        entry.input_tokens += input_tokens
        entry.output_tokens += output_tokens
        entry.cost_usd += cost_usd

    def refused(self, key: str, model: str, reason: str) -> None:
        self._entry(key, model).refused[reason] += 1

    def report(self) -> dict[str, Any]:
        """``{"keys": {key: {model: entry}}, "totals": {...}}`` as JSON-ready data."""
        keys: dict[str, dict[str, Any]] = {}
        totals = LedgerEntry()
        for (key, model), entry in sorted(self._entries.items()):
            keys.setdefault(key, {})[model] = entry.as_dict()
            totals.requests += entry.requests
            totals.input_tokens += entry.input_tokens
            totals.output_tokens += entry.output_tokens
            totals.cost_usd += entry.cost_usd
            for reason, count in entry.refused.items():
                totals.refused[reason] += count
        return {"keys": keys, "totals": totals.as_dict()}
