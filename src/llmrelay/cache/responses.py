"""The response cache a :class:`~llmrelay.SmartLLM` consults: exact first, then semantic.

Only deterministic requests are cached (temperature 0), unless the configuration caches
any temperature or a call opts in with ``cache=True``; ``cache=False`` skips the cache for
one call. Only answers that finished are stored — an error never is. Neither cache can
fail a call: a backend that cannot be reached makes a miss (one warning per outage, and
its ``errors`` count).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any, Literal, Protocol

from llmrelay.cache.entry import CachedAnswer, decode, encode, hit_response, replay
from llmrelay.cache.key import deterministic, exact_key, semantic_parts
from llmrelay.types import ChatRequest, ChatResponse, StreamEvent

Kind = Literal["exact", "semantic"]


class _Exact(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer, ttl_s: float | None = None) -> object: ...

    def stats(self) -> Mapping[str, Any]: ...

    async def aclose(self) -> None: ...


class _Semantic(Protocol):
    async def get(self, context_key: str, text: str) -> Any: ...

    async def put(
        self, context_key: str, text: str, value: bytes, ttl_s: float | None = None
    ) -> None: ...

    def stats(self) -> Mapping[str, Any]: ...

    async def aclose(self) -> None: ...


class Hit:
    """A cached answer for this request, and how it was found."""

    __slots__ = ("answer", "kind", "similarity")

    def __init__(self, answer: CachedAnswer, kind: Kind, similarity: float = 1.0) -> None:
        self.answer = answer
        self.kind = kind
        self.similarity = similarity

    def response(self, request_id: str) -> ChatResponse:
        response = hit_response(self.answer, self.kind)
        response.request_id = request_id
        return response

    def events(self) -> list[StreamEvent]:
        return replay(self.answer)


class ResponseCache:
    """Exact and semantic caches behind one lookup and one store (either may be absent)."""

    def __init__(
        self,
        exact: _Exact | None = None,
        semantic: _Semantic | None = None,
        *,
        any_temperature: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.exact = exact
        self.semantic = semantic
        self.any_temperature = any_temperature
        self._clock = clock

    def wants(self, request: ChatRequest, opt_in: bool | None) -> bool:
        """Whether this call goes through the cache: the caller's ``cache=`` when given,
        else deterministic requests (or any, when so configured)."""
        if opt_in is not None:
            return opt_in
        return self.any_temperature or deterministic(request)

    async def lookup(self, request: ChatRequest, group: str) -> Hit | None:
        if self.exact is not None:
            answer = await self.exact.get(exact_key(request, group))
            if answer is not None:
                return Hit(answer, "exact")
        if self.semantic is not None and (parts := semantic_parts(request, group)):
            found = await self.semantic.get(*parts)
            if found is not None and (answer := decode(found.value)) is not None:
                return Hit(answer, "semantic", found.similarity)
        return None

    async def store(
        self,
        request: ChatRequest,
        group: str,
        response: ChatResponse,
        events: list[StreamEvent] | None = None,
        ttl_s: float | None = None,
    ) -> None:
        """Keep a finished answer (an error or a cut stream is never kept)."""
        if response.finish_reason == "error":
            return
        answer = CachedAnswer(response=response, events=events, stored_at=self._clock())
        if self.exact is not None:
            await self.exact.put(exact_key(request, group), answer, ttl_s)
        if self.semantic is not None and (parts := semantic_parts(request, group)):
            await self.semantic.put(*parts, encode(answer), ttl_s)

    def stats(self) -> dict[str, Any]:
        return {
            "exact": self.exact.stats() if self.exact is not None else None,
            "semantic": self.semantic.stats() if self.semantic is not None else None,
        }

    async def aclose(self) -> None:
        for part in (self.exact, self.semantic):
            if part is not None:
                await part.aclose()


__all__ = ["Hit", "ResponseCache"]
