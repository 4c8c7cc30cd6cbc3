"""Where budget counters live: memory, SQLite (survives a restart), Redis (shared).

A counter holds what a budget has ``spent`` in one period and what it ``held`` for calls in
flight. :meth:`Counters.reserve` is atomic over every counter a request touches: either
each can afford the amount and each holds it, or none changes — in one process (memory),
one machine (SQLite, one ``BEGIN IMMEDIATE`` transaction) or every replica (Redis, one Lua
script run on the server). A backend is chosen by name from :data:`COUNTERS`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from llmrelay.errors import ConfigError
from llmrelay.sqlite import open_sqlite


class Line(NamedTuple):
    """One counter a request is spent against: its key, its limit, when it may be dropped."""

    key: str
    limit: int
    expires_at: float
    """Epoch seconds: a day after the period ends (the counter is not needed after)."""


class Refusal(NamedTuple):
    line: int
    """Which of the lines cannot afford the amount."""
    spent: int
    held: int


class Counters(Protocol):
    async def reserve(self, lines: Sequence[Line], amount: int) -> Refusal | None:
        """Hold ``amount`` on every line if each stays within its limit; else change
        nothing and say which line refused."""

    async def settle(self, lines: Sequence[Line], held: int, spent: int) -> list[tuple[int, int]]:
        """Give back ``held`` and add ``spent`` on every line; each line's spend before and
        after, for threshold crossings."""

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        """``(spent, held)`` of each key (zeros for an unknown one)."""

    async def aclose(self) -> None: ...


class MemoryCounters:
    """In this process only; lost at exit."""

    def __init__(self) -> None:
        self._values: dict[str, list[int]] = {}

    async def reserve(self, lines: Sequence[Line], amount: int) -> Refusal | None:
        values = self._values
        for index, line in enumerate(lines):
            spent, held = values.get(line.key, (0, 0))
            if spent + held + amount > line.limit:
                return Refusal(index, spent, held)
        for line in lines:
            values.setdefault(line.key, [0, 0])[1] += amount
        return None

    async def settle(self, lines: Sequence[Line], held: int, spent: int) -> list[tuple[int, int]]:
        changes = []
        for line in lines:
            value = self._values.setdefault(line.key, [0, 0])
            before = value[0]
            value[0] += spent
            value[1] = max(0, value[1] - held)
            changes.append((before, value[0]))
        return changes

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        return [tuple(self._values.get(k, (0, 0))) for k in keys]  # type: ignore[misc]

    async def aclose(self) -> None:
        return None


class SqliteCounters:
    """One SQLite file: the spend survives a restart, and processes on one machine share
    it (each change is one ``BEGIN IMMEDIATE`` transaction; writers queue on the lock)."""

    def __init__(self, path: Path | str) -> None:
        self._db = open_sqlite(path, key="budget.path", busy_timeout_s=10.0, schema=[
            "CREATE TABLE IF NOT EXISTS budget_counters (key TEXT PRIMARY KEY, "
            "spent INTEGER NOT NULL, held INTEGER NOT NULL, expires REAL NOT NULL)"
        ])  # fmt: skip
        self._lock = asyncio.Lock()

    def _rows(self, keys: Sequence[str]) -> dict[str, tuple[int, int]]:
        marks = ",".join("?" * len(keys))
        rows = self._db.execute(
            f"SELECT key, spent, held FROM budget_counters WHERE key IN ({marks})",
            list(keys),
        )
        return {key: (spent, held) for key, spent, held in rows}

    def _upsert(self, line: Line, spent: int, held: int) -> None:
        self._db.execute(
            "INSERT INTO budget_counters (key, spent, held, expires) VALUES (?, ?, ?, ?) "
            "ON CONFLICT(key) DO UPDATE SET spent = spent + excluded.spent, "
            "held = MAX(0, held + excluded.held), expires = excluded.expires",
            (line.key, spent, held, line.expires_at),
        )

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[None]:
        """One ``BEGIN IMMEDIATE`` transaction at a time on this connection, rolled back
        if anything in it fails."""
        async with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    async def reserve(self, lines: Sequence[Line], amount: int) -> Refusal | None:
        async with self._transaction():
            rows = self._rows([line.key for line in lines])
            for index, line in enumerate(lines):
                spent, held = rows.get(line.key, (0, 0))
                if spent + held + amount > line.limit:
                    return Refusal(index, spent, held)  # nothing written: the commit is empty
            for line in lines:
                self._upsert(line, 0, amount)
        return None

    async def settle(self, lines: Sequence[Line], held: int, spent: int) -> list[tuple[int, int]]:
        async with self._transaction():
            rows = self._rows([line.key for line in lines])
            for line in lines:
                self._upsert(line, spent, -held)
            self._db.execute("DELETE FROM budget_counters WHERE expires < ?", (_oldest(lines),))
        befores = [rows.get(line.key, (0, 0))[0] for line in lines]
        return [(before, before + spent) for before in befores]

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        rows = self._rows(keys) if keys else {}
        return [rows.get(k, (0, 0)) for k in keys]

    async def aclose(self) -> None:
        self._db.close()


def _oldest(lines: Sequence[Line]) -> float:
    """Counters that expired before the earliest period a call touches: safe to drop."""
    return min(line.expires_at for line in lines) - 3 * 86_400 * 31


_RESERVE = """
local amount = tonumber(ARGV[1])
local n = #KEYS
for i = 1, n do
  local v = redis.call('HMGET', KEYS[i], 's', 'h')
  local spent, held = tonumber(v[1] or '0'), tonumber(v[2] or '0')
  if spent + held + amount > tonumber(ARGV[1 + i]) then
    return {i - 1, spent, held}
  end
end
for i = 1, n do
  redis.call('HINCRBY', KEYS[i], 'h', amount)
  redis.call('EXPIREAT', KEYS[i], ARGV[1 + n + i])
end
return {-1, 0, 0}
"""

_SETTLE = """
local held, spent = tonumber(ARGV[1]), tonumber(ARGV[2])
local out = {}
for i = 1, #KEYS do
  local after = redis.call('HINCRBY', KEYS[i], 's', spent)
  local h = redis.call('HINCRBY', KEYS[i], 'h', -held)
  if h < 0 then redis.call('HSET', KEYS[i], 'h', 0) end
  redis.call('EXPIREAT', KEYS[i], ARGV[2 + i])
  out[#out + 1] = after - spent
  out[#out + 1] = after
end
return out
"""


class RedisCounters:
    """Shared by every replica: each reserve and settle is one Lua script, atomic on the
    server. Keys are ``{prefix}{counter}`` hashes (``s`` spent, ``h`` held) that expire a
    day after their period ends."""

    def __init__(self, url: str, *, prefix: str = "llmrelay:budget:") -> None:
        try:
            from redis.asyncio import Redis
        except ImportError as exc:  # pragma: no cover - the optional ``redis`` extra
            raise ConfigError("budget.store: redis needs the redis extra") from exc
        self._redis = Redis.from_url(url)
        self._prefix = prefix
        self._reserve = self._redis.register_script(_RESERVE)
        self._settle = self._redis.register_script(_SETTLE)

    def _keys(self, lines: Sequence[Line]) -> list[str]:
        return [self._prefix + line.key for line in lines]

    async def reserve(self, lines: Sequence[Line], amount: int) -> Refusal | None:
        args: list[Any] = [amount, *(line.limit for line in lines)]
        args.extend(int(line.expires_at) for line in lines)
        index, spent, held = await self._reserve(keys=self._keys(lines), args=args)
        return None if index < 0 else Refusal(int(index), int(spent), int(held))

    async def settle(self, lines: Sequence[Line], held: int, spent: int) -> list[tuple[int, int]]:
        args = [held, spent, *(int(line.expires_at) for line in lines)]
        out = await self._settle(keys=self._keys(lines), args=args)
        return [(int(out[i]), int(out[i + 1])) for i in range(0, len(out), 2)]

    async def read(self, keys: Sequence[str]) -> list[tuple[int, int]]:
        async with self._redis.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.hmget(self._prefix + key, "s", "h")
            rows = await pipe.execute()
        return [(int(s or 0), int(h or 0)) for s, h in rows]

    async def aclose(self) -> None:
        await self._redis.aclose()


CounterFactory = Callable[..., Counters]
COUNTERS: Mapping[str, CounterFactory] = {
    "memory": lambda **_: MemoryCounters(),
    "sqlite": lambda *, path, **_: SqliteCounters(path),
    "redis": lambda *, redis_url, **_: RedisCounters(redis_url),
}
"""Backends by the name ``budget.store`` takes."""


__all__ = ["COUNTERS", "Counters", "Line", "MemoryCounters", "RedisCounters", "Refusal",
           "SqliteCounters"]  # fmt: skip
