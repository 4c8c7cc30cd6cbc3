"""Who is calling, and what their key allows: the keyring and the per-key rate limits.

A caller presents the master key, a virtual key, or (with no master key configured) no
key at all. Virtual keys are looked up by the hash of the secret and cached here; the
store's revision is read on every request, and any change in any process sharing the
store (a revocation, an update) empties the cache, so the next request sees it.

A key's RPM / TPM are token buckets over the minute in the router's own limiter (memory,
or Redis shared by every replica): a request that does not fit is refused at once with
429 and ``retry-after`` — the caller's own limit is the one thing that answers 429.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from llmrelay.budget import BudgetLimit
from llmrelay.budget.limits import Who
from llmrelay.gateway.keys import KeyStore, VirtualKey, hash_secret
from llmrelay.gateway.wire import ApiError, Kind
from llmrelay.limits import Limiter, Limits
from llmrelay.limits.limiter import Reservation
from llmrelay.limits.plan import Plan, cost
from llmrelay.types import Usage

_CACHE_LIMIT = 10_000
"""Secrets remembered (found or not) between store changes; past it the cache restarts,
so guessing keys cannot grow memory."""


@dataclass(frozen=True, slots=True)
class Caller:
    """An authenticated caller: a virtual key, or the administrator (``key`` is None)."""

    key: VirtualKey | None
    admin: bool

    @property
    def key_id(self) -> str | None:
        return self.key.id if self.key is not None else None

    def check_group(self, group: str) -> None:
        """:class:`ApiError` 403 unless this caller may use model group ``group``."""
        if self.key is not None and not self.key.allows(group):
            allowed = ", ".join(self.key.groups or ())
            raise ApiError(Kind.PERMISSION, f"this key may not use model group {group!r} "
                           f"(allowed: {allowed or 'none'})", param="model")  # fmt: skip


OPEN = Caller(key=None, admin=True)
"""The caller when no master key is configured: the gateway is open."""


class Keyring:
    """Authenticates callers against the master key and the key store (see the module
    docstring); the gateway owns the store and closes it."""

    def __init__(
        self,
        store: KeyStore,
        master_key: str | None,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.master_key = master_key
        self._clock = clock
        self._revision: int | None = None
        self._found: dict[str, VirtualKey | None] = {}
        self._by_id: dict[str, VirtualKey] = {}

    @property
    def open(self) -> bool:
        """Whether callers need no key (no master key configured)."""
        return self.master_key is None

    async def caller(self, secret: str | None) -> Caller:
        """The caller presenting ``secret``, or :class:`ApiError` 401 saying why not."""
        if self.master_key is None:
            return OPEN
        if not secret:
            raise ApiError(Kind.AUTHENTICATION, "no API key: send it as 'Authorization: Bearer "
                           "<key>' or 'x-api-key: <key>'")  # fmt: skip
        if hmac.compare_digest(secret.encode(), self.master_key.encode()):
            return Caller(key=None, admin=True)
        key = await self._lookup(secret)
        if key is None:
            raise ApiError(Kind.AUTHENTICATION, "invalid API key")
        status = key.status(self._clock())
        if status != "active":
            raise ApiError(Kind.AUTHENTICATION, f"this API key is {status}")
        return Caller(key=key, admin=key.admin)

    async def _lookup(self, secret: str) -> VirtualKey | None:
        revision = await self.store.revision()
        if revision != self._revision:
            self._found.clear()
            self._by_id.clear()
            self._revision = revision
        digest = hash_secret(secret)
        if digest in self._found:
            return self._found[digest]
        key = await self.store.find(secret)
        if len(self._found) >= _CACHE_LIMIT:
            self._found.clear()
        self._found[digest] = key
        if key is not None:
            self._by_id[key.id] = key
        return key

    def budget_limits(self, who: Who) -> Sequence[BudgetLimit]:
        """The budgets of the key a request is spent for (``Budgets.caller_limits``)."""
        key = self._by_id.get(who.key) if who.key else None
        return key.budget_limits() if key is not None and key.budgets else ()


class KeyLimits:
    """Per-key RPM / TPM over the router's limiter (see the module docstring)."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._plans: dict[tuple[int | None, int | None], Plan] = {}

    def _plan(self, key: VirtualKey) -> Plan:
        shape = (key.rpm, key.tpm)
        plan = self._plans.get(shape)
        if plan is None:
            limits = Limits(rpm=key.rpm, tpm=key.tpm, safety_margin=0, token_margin=0.0,
                            short_window_s=0.0)  # fmt: skip
            plan = self._plans[shape] = limits.plan()
        return plan

    async def admit(self, caller: Caller, tokens: int) -> Reservation | None:
        """Take one request and ``tokens`` from the caller's key, or raise 429."""
        key = caller.key
        if key is None or (key.rpm is None and key.tpm is None):
            return None
        got = await self.limiter.reserve(f"key:{key.id}", self._plan(key), cost(tokens, 0))
        if isinstance(got, Reservation):
            return got
        raise ApiError(Kind.RATE_LIMIT, f"this key's rate limit ({_limits(key)}) is reached: "
                       f"retry in {got:.1f} s", retry_after=got)  # fmt: skip

    async def settle(self, reservation: Reservation | None, usage: Usage | None) -> None:
        """Count what the call really used (nothing but the request when it failed)."""
        if reservation is None:
            return
        if usage is None:
            await self.limiter.release(reservation, sent=True)
        else:
            await self.limiter.reconcile(reservation, usage)


def _limits(key: VirtualKey) -> str:
    parts = [
        f"{key.rpm} requests/min" if key.rpm else "",
        f"{key.tpm} tokens/min" if key.tpm else "",
    ]
    return ", ".join(p for p in parts if p)


__all__ = ["OPEN", "Caller", "KeyLimits", "Keyring"]
