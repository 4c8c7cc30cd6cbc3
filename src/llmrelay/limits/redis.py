"""The Redis limiter backend: N replicas, one set of limits.

Every decision is one Lua script run atomically inside Redis — refill, check, take — on a
hash per deployment, with Redis's own clock (``TIME``), so replicas on different machines
need no clock agreement. The arithmetic is that of :mod:`llmrelay.limits.memory`.

When Redis cannot be reached, the backend keeps deciding on local state (a
:class:`~llmrelay.limits.memory.MemoryBackend`, scaled by ``fallback_share`` — set it to
1/N for N replicas so that together they stay under the limit), logs a warning once, and
shows it in :attr:`RedisBackend.metrics`. It tries Redis again every ``retry_interval``
seconds and, once Redis answers, logs that and goes back to it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec
from redis import asyncio as aioredis
from redis.exceptions import RedisError

from llmrelay.limits.memory import (
    DEFAULT_WINDOW_S,
    MAX_PAD,
    UNCONFIRMED_GRACE_S,
    Clock,
    MemoryBackend,
)
from llmrelay.limits.plan import Amounts, Days, Plan, Snapshot
from llmrelay.types import RateLimitInfo

log = logging.getLogger("llmrelay.limits")
T = TypeVar("T")

# ARGV: 1 now ("" = Redis TIME), 2 day, 3 seconds left in the day, 4-8 caps, 9-12 rates,
# 13 request margin, 14 token margin, 15-19 the operation's own arguments, 20 grace,
# 21 short window, 22 its pad, 23 the reservation id.
# The short window's log is field 'g': a JSON list of {id, time, amount of each rolling limit}.
_PRELUDE = """
local key = KEYS[1]
local now = tonumber(ARGV[1])
if now == nil then
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local day, day_left, margin = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[13])
local token_margin = tonumber(ARGV[14])
local f = redis.call('HMGET', key, 'l1', 'l2', 'l3', 'l4', 'st', 'c1', 'c2', 'c3', 'c4', 'c5',
  'r1', 'r2', 'r3', 'r4', 'd', 'u', 'b', 'cf', 'o', 'g', 'w', 'p')
local caps, rates, levels, learned = {}, {}, {}, {}
for i = 1, 5 do
  learned[i] = tonumber(f[5 + i]) or 0
  caps[i] = learned[i]
  if caps[i] == 0 then caps[i] = tonumber(ARGV[3 + i]) end
end
for i = 1, 4 do
  rates[i] = tonumber(f[10 + i]) or 0
  if rates[i] == 0 then rates[i] = tonumber(ARGV[8 + i]) end
end
-- Until the provider has answered, no refill for a grace period (see memory.py, _State).
local confirmed = f[18] == '1'
local origin = tonumber(f[19]) or now
local start = tonumber(f[5]) or now
if not confirmed then start = math.max(start, origin + tonumber(ARGV[20])) end
local elapsed = math.max(0, now - start)
for i = 1, 4 do
  local level = tonumber(f[i])
  if caps[i] == 0 then level = nil
  elseif level == nil then level = caps[i]
  else level = math.min(caps[i], level + elapsed * rates[i]) end
  levels[i] = level
end
local used = tonumber(f[16]) or 0
if tonumber(f[15]) ~= day then used = 0 end
local blocked = tonumber(f[17]) or 0

-- The short window (see plan.py): who occupies it, for how long.
local learned_window = tonumber(f[21]) or 0
local window = learned_window
if window == 0 then window = tonumber(ARGV[21]) end
local learned_pad = tonumber(f[22]) or 0
local pad = learned_pad
if pad == 0 then pad = tonumber(ARGV[22]) end
local padded = window * (1 + pad)
local shorts = {0, 0, 0, 0}
if window > 0 then
  for i = 1, 4 do
    if caps[i] > 0 then
      local keep = 1
      if i > 1 then keep = 1 - token_margin end
      shorts[i] = rates[i] * window * keep
    end
  end
end
local log = {}
if f[20] then log = cjson.decode(f[20]) end
local occ = {{}, {}, {}, {}}
local kept = {}
for _, e in ipairs(log) do
  local present = false
  for i = 1, 4 do
    local a = e[2 + i]
    if shorts[i] > 0 and a > 0 then
      local left = e[2] + padded * math.max(1, a / shorts[i]) - now
      if left > 0 then
        table.insert(occ[i], {left, a})
        present = true
      end
    end
  end
  if present then table.insert(kept, e) end
end
log = kept
for i = 1, 4 do table.sort(occ[i], function(p, q) return p[1] < q[1] end) end
local function window_wait(o, cap, a)
  local sum = 0
  for _, x in ipairs(o) do sum = sum + x[2] end
  if sum <= 1e-9 or sum + a <= cap + 1e-9 then return 0 end
  for _, x in ipairs(o) do
    sum = sum - x[2]
    if sum <= 1e-9 or sum + a <= cap + 1e-9 then return math.max(0, x[1]) end
  end
  return math.max(0, o[#o][1])
end

local function num(x) return string.format('%.17g', x) end
local function save()
  local args = {'st', num(now), 'd', day, 'u', num(used), 'b', num(blocked),
    'cf', confirmed and '1' or '0', 'o', num(origin), 'w', num(learned_window),
    'p', num(learned_pad)}
  if #log > 0 then
    table.insert(args, 'g')
    table.insert(args, cjson.encode(log))
  else
    redis.call('HDEL', key, 'g')
  end
  for i = 1, 4 do
    if levels[i] ~= nil then
      table.insert(args, 'l' .. i)
      table.insert(args, num(levels[i]))
    end
  end
  redis.call('HSET', key, unpack(args))
  redis.call('EXPIRE', key, 172800)
end
local function wait_for(a)
  local wait = math.max(0, blocked - now)
  for i = 1, 4 do
    if caps[i] > 0 and a[i] > 0 then
      if a[i] > caps[i] then return -1 end
      if a[i] > levels[i] then wait = math.max(wait, (a[i] - levels[i]) / rates[i]) end
      if shorts[i] > 0 then wait = math.max(wait, window_wait(occ[i], shorts[i], a[i])) end
    end
  end
  if caps[5] > 0 and a[5] > 0 then
    if a[5] > caps[5] then return -1 end
    if used + a[5] > caps[5] then wait = math.max(wait, day_left) end
  end
  return wait
end
local function amounts()
  local a = {}
  for i = 1, 5 do a[i] = tonumber(ARGV[14 + i]) end
  return a
end
"""

_RESERVE = """
local a = amounts()
local wait = wait_for(a)
if wait == 0 then
  for i = 1, 4 do if levels[i] ~= nil then levels[i] = levels[i] - a[i] end end
  used = used + a[5]
  if window > 0 then table.insert(log, {ARGV[23], now, a[1], a[2], a[3], a[4]}) end
end
save()
return num(wait)
"""

_GIVE_BODY = """
confirmed = true
local a = amounts()
for i = 1, 4 do
  if levels[i] ~= nil then levels[i] = math.min(caps[i], levels[i] + a[i]) end
end
used = math.max(0, used - a[5])
for _, e in ipairs(log) do
  if e[1] == ARGV[23] then
    for i = 1, 4 do e[2 + i] = math.max(0, e[2 + i] - a[i]) end
  end
end
"""

_GIVE = (
    _GIVE_BODY
    + """
save()
return 1
"""
)

_STAMP = """
for _, e in ipairs(log) do
  if e[1] == ARGV[23] then e[2] = now end
end
save()
return 1
"""

# ARGV 15-16: the first window learned, the largest pad
_TIGHTEN = """
-- As tightened() in memory.py.
if window == 0 then
  learned_window = tonumber(ARGV[15])
  learned_pad = pad
else
  learned_window = window
  learned_pad = math.min(tonumber(ARGV[16]), math.max(2 * pad, 0.01))
end
save()
return num(learned_window * (1 + learned_pad))
"""

# Header feedback, as _State.observe in memory.py. ARGV[at .. at+3]: requests limit and
# remaining, tokens limit and remaining; ARGV[apart .. apart+3]: input tokens limit and
# remaining, output tokens limit and remaining ("" = none).
_OBSERVE_FN = """
local function observe(at, apart)
  confirmed = true
  local function lower(i, remaining)
    if levels[i] == nil then levels[i] = remaining
    else levels[i] = math.min(levels[i], remaining) end
  end
  local rl, rr = tonumber(ARGV[at]), tonumber(ARGV[at + 1])
  local tl, tr = tonumber(ARGV[at + 2]), tonumber(ARGV[at + 3])
  if rl ~= nil and rl > 0 then
    if tonumber(ARGV[4]) == 1 then caps[1] = 1 else caps[1] = math.max(1, rl - margin) end
    redis.call('HSET', key, 'c1', num(caps[1]), 'r1', num(rl / 60))
  end
  if rr ~= nil then lower(1, rr - margin) end
  -- Which bucket each token figure governs: as _token_figures in memory.py.
  local function learn(t, lim, rem)
    if lim ~= nil and lim > 0 then
      caps[t] = math.floor(lim * (1 - token_margin))
      redis.call('HSET', key, 'c' .. t, num(caps[t]), 'r' .. t, num(lim / 60))
    end
    if rem ~= nil then
      local held = 0
      if caps[t] > 0 then held = caps[t] / (1 - token_margin) * token_margin end
      lower(t, rem - held)
    end
  end
  local il, ir = tonumber(ARGV[apart]), tonumber(ARGV[apart + 1])
  if il ~= nil or ir ~= nil then
    learn(3, il, ir)
    learn(4, tonumber(ARGV[apart + 2]), tonumber(ARGV[apart + 3]))
    if tonumber(ARGV[5]) > 0 then learn(2, tl, tr) end
  else
    local t = 2
    if tonumber(ARGV[5]) == 0 and tonumber(ARGV[6]) > 0 then t = 3 end
    learn(t, tl, tr)
  end
  for i = 1, 4 do
    if levels[i] ~= nil and caps[i] > 0 then levels[i] = math.min(levels[i], caps[i]) end
  end
end
"""

_OBSERVE = (
    _OBSERVE_FN
    + """
observe(15, 24)
save()
return 1
"""
)

_SETTLE = (
    _OBSERVE_FN
    + _GIVE_BODY
    + """
-- ARGV 24-31: header feedback, observed when ARGV[32] is "1"
if ARGV[32] == '1' then observe(24, 28) end
save()
return 1
"""
)

_BLOCK = """
blocked = math.max(blocked, now + tonumber(ARGV[15]))
save()
return 1
"""

_SNAPSHOT = """
local out = {}
for i = 1, 4 do out[i] = levels[i] and num(levels[i]) or '' end
for i = 1, 5 do out[4 + i] = num(caps[i]) end
for i = 1, 4 do out[9 + i] = num(rates[i]) end
out[14] = num(used)
out[15] = num(day_left)
out[16] = num(math.max(0, blocked - now))
out[17] = num(window > 0 and padded or 0)
for i = 1, 4 do out[17 + i] = num(shorts[i]) end
for i = 1, 4 do
  table.insert(out, tostring(#occ[i]))
  for _, x in ipairs(occ[i]) do
    table.insert(out, num(x[1]))
    table.insert(out, num(x[2]))
  end
end
return out
"""


@dataclass(slots=True)
class LimiterMetrics:
    """What the Redis backend exposes for monitoring (read by the metrics exporters)."""

    redis_available: bool = True
    redis_errors: int = 0
    fallback_decisions: int = 0
    outages: int = 0


def _feedback(info: RateLimitInfo) -> tuple[Any, ...]:
    """The eight header figures the Lua ``observe`` reads ("" for a figure not sent)."""
    figures = (info.requests_limit, info.requests_remaining, info.tokens_limit,
               info.tokens_remaining, info.input_tokens_limit, info.input_tokens_remaining,
               info.output_tokens_limit, info.output_tokens_remaining)  # fmt: skip
    return tuple("" if v is None else v for v in figures)


class RedisBackend:
    """Limiter state in Redis, shared by every process that uses the same ``prefix``."""

    shared = True

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        prefix: str = "llmrelay:limits:",
        fallback_share: float = 1.0,
        retry_interval: float = 1.0,
        timeout: float = 0.5,
        max_connections: int = 32,
        pool_wait: float = 30.0,
        clock: Clock | None = None,
        wall: Clock = time.time,
        client: aioredis.Redis | None = None,
    ) -> None:
        if not 0 < fallback_share <= 1:
            raise ValueError(f"fallback_share must be in (0, 1], got {fallback_share}")
        self.url = url
        self.prefix = prefix
        self.fallback_share = fallback_share
        self.retry_interval = retry_interval
        self.metrics = LimiterMetrics()
        if client is None:
            # A bounded pool that queues callers: a burst must not open a connection per
            # waiter (Redis would refuse past maxclients) or fail for want of one.
            pool = aioredis.BlockingConnectionPool.from_url(
                url,
                max_connections=max_connections,
                timeout=pool_wait,
                socket_timeout=timeout,
                socket_connect_timeout=timeout,
            )
            client = aioredis.Redis(connection_pool=pool)
        self._redis = client
        self._clock = clock
        self._wall = wall
        self._local = MemoryBackend(clock=clock or time.monotonic, wall=wall)
        self._days = Days()
        self._retry_at = 0.0
        self._scripts = {
            name: self._redis.register_script(_PRELUDE + body)
            for name, body in (
                ("reserve", _RESERVE),
                ("give", _GIVE),
                ("settle", _SETTLE),
                ("observe", _OBSERVE),
                ("block", _BLOCK),
                ("tighten", _TIGHTEN),
                ("stamp", _STAMP),
                ("snapshot", _SNAPSHOT),
            )
        }

    def _argv(
        self, plan: Plan, extra: tuple[Any, ...], ident: str, more: tuple[Any, ...] = ()
    ) -> list[Any]:
        day, day_left = self._days(plan, self._wall())
        now = "" if self._clock is None else repr(self._clock())
        own = [*extra, *[""] * (5 - len(extra))]
        return [now, day, repr(day_left), *map(repr, plan.caps), *map(repr, plan.rates),
                plan.margin, repr(plan.token_margin), *own, repr(UNCONFIRMED_GRACE_S),
                repr(plan.window), repr(plan.pad), ident, *more]  # fmt: skip

    async def _run(
        self,
        op: str,
        key: str,
        plan: Plan,
        extra: tuple[Any, ...],
        local: Callable[[Plan], Awaitable[T]],
        ident: str = "",
        more: tuple[Any, ...] = (),
    ) -> T | Any:
        """Run ``op`` in Redis; on failure (or while Redis is down) decide locally instead."""
        if self._retry_at and time.monotonic() < self._retry_at:
            self.metrics.fallback_decisions += 1
            return await local(self._scaled(plan))
        try:
            argv = self._argv(plan, extra, ident, more)
            result = await self._scripts[op](keys=[self.prefix + key], args=argv)
        except (RedisError, OSError, TimeoutError) as exc:
            self.metrics.redis_errors += 1
            self.metrics.fallback_decisions += 1
            if self.metrics.redis_available:
                self.metrics.redis_available = False
                self.metrics.outages += 1
                log.warning(
                    "Redis at %s is unreachable (%s); rate limits are now enforced on local "
                    "state with %.0f%% of each limit until it is back",
                    self.url,
                    exc,
                    self.fallback_share * 100,
                )
            self._retry_at = time.monotonic() + self.retry_interval
            return await local(self._scaled(plan))
        if not self.metrics.redis_available:
            self.metrics.redis_available = True
            self._retry_at = 0.0
            log.warning("Redis at %s is reachable again; rate limits are shared again", self.url)
        return result

    def _scaled(self, plan: Plan) -> Plan:
        if self.fallback_share == 1.0:
            return plan
        share = self.fallback_share
        caps = tuple(max(1.0, c * share) if c else 0.0 for c in plan.caps)
        rates = tuple(r * share for r in plan.rates)
        return msgspec.structs.replace(plan, caps=caps, rates=rates)

    async def reserve(self, key: str, plan: Plan, amounts: Amounts, ident: str) -> float:
        result = await self._run(
            "reserve", key, plan, tuple(map(repr, amounts)),
            lambda p: self._local.reserve(key, p, amounts, ident), ident,
        )  # fmt: skip
        wait = float(result)
        return math.inf if wait < 0 else wait

    async def give(
        self,
        key: str,
        plan: Plan,
        amounts: Amounts,
        ident: str,
        info: RateLimitInfo | None = None,
    ) -> None:
        if info is None:
            await self._run(
                "give", key, plan, tuple(map(repr, amounts)),
                lambda p: self._local.give(key, p, amounts, ident), ident,
            )  # fmt: skip
            return
        await self._run(
            "settle", key, plan, tuple(map(repr, amounts)),
            lambda p: self._local.give(key, p, amounts, ident, info), ident,
            (*_feedback(info), "1"),
        )  # fmt: skip

    async def tighten(self, key: str, plan: Plan) -> float:
        result = await self._run(
            "tighten", key, plan, (repr(DEFAULT_WINDOW_S), repr(MAX_PAD)),
            lambda p: self._local.tighten(key, p),
        )  # fmt: skip
        return float(result)

    async def observe(self, key: str, plan: Plan, info: RateLimitInfo) -> None:
        figures = _feedback(info)
        await self._run(
            "observe", key, plan, figures[:4],
            lambda p: self._local.observe(key, p, info), "", figures[4:],
        )  # fmt: skip

    async def stamp(self, key: str, plan: Plan, ident: str) -> None:
        await self._run("stamp", key, plan, (), lambda p: self._local.stamp(key, p, ident), ident)

    async def block(self, key: str, plan: Plan, seconds: float) -> None:
        await self._run(
            "block", key, plan, (repr(seconds),), lambda p: self._local.block(key, p, seconds)
        )

    async def snapshot(self, key: str, plan: Plan) -> Snapshot:
        result = await self._run("snapshot", key, plan, (), lambda p: self._local.snapshot(key, p))
        if isinstance(result, Snapshot):
            return result
        v = [float(x) if x not in (b"", "") else math.nan for x in result]
        occupancy: list[tuple[tuple[float, float], ...]] = []
        at = 21
        for _ in range(4):
            n = int(v[at])
            occupancy.append(tuple((v[at + 1 + 2 * j], v[at + 2 + 2 * j]) for j in range(n)))
            at += 1 + 2 * n
        return Snapshot(
            levels=(v[0], v[1], v[2], v[3]),
            caps=(v[4], v[5], v[6], v[7], v[8]),
            rates=(v[9], v[10], v[11], v[12]),
            day_used=v[13],
            day_left_s=v[14],
            blocked_for=v[15],
            window=v[16],
            short_caps=(v[17], v[18], v[19], v[20]),
            occupancy=(occupancy[0], occupancy[1], occupancy[2], occupancy[3]),
        )

    async def clear(self, key: str) -> None:
        """Forget one deployment's state (tests, or after changing its limits)."""
        await self._redis.delete(self.prefix + key)

    async def aclose(self) -> None:
        await self._redis.aclose()
        await self._local.aclose()


__all__ = ["LimiterMetrics", "RedisBackend"]
