"""Reserve before sending, reconcile after, release on failure — over any backend."""

from __future__ import annotations

import itertools
import secrets
from typing import Protocol

import msgspec

from llmrelay.limits.memory import MemoryBackend
from llmrelay.limits.plan import Amounts, Plan, Snapshot
from llmrelay.types import RateLimitInfo, Usage


class LimitBackend(Protocol):
    """Where limiter state lives. Every method is atomic for one deployment ``key``."""

    shared: bool
    """Whether other processes see the same state (Redis) or not (memory)."""

    async def reserve(self, key: str, plan: Plan, amounts: Amounts, ident: str) -> float:
        """Take ``amounts`` as reservation ``ident`` and return 0, or take nothing and return
        seconds to wait."""
        ...

    async def give(
        self,
        key: str,
        plan: Plan,
        amounts: Amounts,
        ident: str,
        info: RateLimitInfo | None = None,
    ) -> None:
        """Give units of reservation ``ident`` back (negative: take more than was reserved);
        then, in the same step, correct the state with the answer's headers (``info``)."""
        ...

    async def tighten(self, key: str, plan: Plan) -> float:
        """Pace to a stricter short window from now on; return how long an entry now
        occupies it, padded, in seconds."""
        ...

    async def stamp(self, key: str, plan: Plan, ident: str) -> None:
        """Restart reservation ``ident``'s short-window occupancy now: it is being sent."""
        ...

    async def observe(self, key: str, plan: Plan, info: RateLimitInfo) -> None:
        """Correct the state with what a provider's response headers report."""
        ...

    async def block(self, key: str, plan: Plan, seconds: float) -> None:
        """Admit nothing for ``seconds`` (a 429's Retry-After)."""
        ...

    async def snapshot(self, key: str, plan: Plan) -> Snapshot: ...

    async def aclose(self) -> None: ...


class Reservation(msgspec.Struct, kw_only=True):
    """Units taken for one request; settled exactly once by reconcile or release."""

    key: str
    plan: Plan
    amounts: Amounts
    ident: str = ""
    """Names the reservation in the short window's log."""
    settled: bool = False
    queued: bool = False
    """Granted after a wait in a queue: its short-window entry is restarted when it is sent
    (:meth:`Limiter.sent`). One granted at once by an in-process backend is sent at the
    instant it was taken; a shared backend's instant is its server's, a round trip before
    the send, so its entries are always restarted."""


class Limiter:
    """Per-deployment RPM/TPM/ITPM/OTPM/RPD accounting with reservations."""

    def __init__(self, backend: LimitBackend | None = None) -> None:
        self.backend: LimitBackend = backend or MemoryBackend()
        # Reservation ids are unique across every process sharing a backend.
        self._prefix = secrets.token_hex(4)
        self._ids = itertools.count()

    async def reserve(self, key: str, plan: Plan, amounts: Amounts) -> Reservation | float:
        """A reservation if ``amounts`` fit now, else the seconds until they would."""
        ident = f"{self._prefix}{next(self._ids):x}"
        wait = await self.backend.reserve(key, plan, amounts, ident)
        if wait > 0:
            return wait
        return Reservation(key=key, plan=plan, amounts=amounts, ident=ident)

    async def reconcile(
        self, reservation: Reservation, usage: Usage, info: RateLimitInfo | None = None
    ) -> None:
        """Replace the estimate with what the provider reported it used, and adopt what the
        answer's headers say (``info``) in the same backend call."""
        if reservation.settled:
            if info is not None and not info.is_empty:
                await self.backend.observe(reservation.key, reservation.plan, info)
            return
        reservation.settled = True
        used_in, used_out = usage.input_tokens, usage.output_tokens
        _, tokens, input_tokens, output_tokens, _ = reservation.amounts
        back = (
            0.0,
            tokens - used_in - used_out,
            input_tokens - used_in,
            output_tokens - used_out,
            0.0,
        )
        # Even with nothing to give back, this is an answer: it confirms the buckets.
        feedback = None if info is None or info.is_empty else info
        await self.backend.give(
            reservation.key, reservation.plan, back, reservation.ident, feedback
        )

    async def release(self, reservation: Reservation, *, sent: bool) -> None:
        """Give back what a failed request took.

        Its tokens come back: the provider answered with an error. The request itself only
        does if it never reached the provider, which counts every request it receives,
        failed or not. (A call cancelled after it was sent is not released: the provider
        may be generating, so it is reconciled to its estimate instead.)
        """
        if reservation.settled:
            return
        reservation.settled = True
        back = reservation.amounts
        if sent:
            back = (0.0, back[1], back[2], back[3], 0.0)
        await self.backend.give(reservation.key, reservation.plan, back, reservation.ident)

    async def sent(self, reservation: Reservation) -> None:
        """The request is leaving now: its short-window occupancy counts from here.

        A burst admitted at one instant leaves over the next milliseconds (each call still
        has to be encoded and written), and the provider counts each from its arrival; so
        the window's clock for an entry starts when it is sent, not when it was admitted.
        """
        if reservation.queued or self.backend.shared:
            await self.backend.stamp(reservation.key, reservation.plan, reservation.ident)

    async def tighten(self, key: str, plan: Plan) -> float:
        """Pace ``key`` to a stricter short window (a 429 the buckets did not predict)."""
        return await self.backend.tighten(key, plan)

    async def observe(self, key: str, plan: Plan, info: RateLimitInfo | None) -> None:
        if info is not None and not info.is_empty:
            await self.backend.observe(key, plan, info)

    async def block(self, key: str, plan: Plan, seconds: float) -> None:
        if seconds > 0:
            await self.backend.block(key, plan, seconds)

    async def snapshot(self, key: str, plan: Plan) -> Snapshot:
        return await self.backend.snapshot(key, plan)

    async def aclose(self) -> None:
        await self.backend.aclose()


__all__ = ["LimitBackend", "Limiter", "Reservation"]
