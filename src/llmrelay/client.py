"""``SmartLLM``: the router behind one object, the parts it owns and closes, its counts.

Async at the core (``ainvoke``, ``astream``); the sync API (``invoke``, ``stream``) runs the
same coroutines on a private event-loop thread. Built from settings (:mod:`llmrelay.config`)
by :func:`llmrelay.builder.assemble`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Coroutine, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from llmrelay.cache.responses import Hit, ResponseCache
from llmrelay.config import RelaySettings, load_settings
from llmrelay.cost import Spending
from llmrelay.errors import BadRequest, LLMRelayError
from llmrelay.events import Event, EventKind
from llmrelay.inputs import Prompt, to_request
from llmrelay.observe import Observer
from llmrelay.providers import HttpClient
from llmrelay.providers.registry import ProviderFactory
from llmrelay.router import Router, new_request_id
from llmrelay.scheduling import Scheduler

if TYPE_CHECKING:
    from llmrelay.analytics import Analytics, Choice

from llmrelay.types import (
    ChatRequest,
    ChatResponse,
    RoutedResponse,
    StreamAccumulator,
    StreamEnd,
    StreamEvent,
)

T = TypeVar("T")

_RATE_LIMIT_ERRORS = ("RateLimited", "WaitTooLong")


class Stats:
    """Counts kept from the router's and the scheduler's events (see ``get_stats``).

    ``requests`` counts every routed request once, whatever its outcome (the router's
    ``finished`` event); ``failed`` counts the unanswered ones by error.
    """

    def __init__(self) -> None:
        self.requests = 0
        self.primary = 0
        self.fallback = 0
        self.rate_limit_fallbacks = 0
        self.context_fallbacks = 0
        self.exhausted = 0
        self.failed: dict[str, int] = {}
        self.cost_micros = 0
        self.cache_hits: dict[str, int] = {}
        self.saved_micros = 0
        self.downgraded = 0
        self.budget_refusals = 0
        self.deployments: dict[str, dict[str, Any]] = {}

    def _deployment(self, name: str) -> dict[str, Any]:
        return self.deployments.setdefault(
            name,
            {"calls": 0, "successes": 0, "failures": {}, "skipped": 0, "windows_learned": 0,
             "input_tokens": 0, "output_tokens": 0, "cost_micros": 0, "latency_s_total": 0.0},
        )  # fmt: skip

    def __call__(self, event: Event) -> None:
        kind = event.kind
        if kind is EventKind.FINISHED:
            self.requests += 1
            if event.error is None:
                if event.attempt == 0:
                    self.primary += 1
                else:
                    self.fallback += 1
            else:
                self.failed[event.error] = self.failed.get(event.error, 0) + 1
                if event.error == "AllModelsExhausted":
                    self.exhausted += 1
        elif kind is EventKind.ATTEMPT_SUCCEEDED:
            self.cost_micros += event.cost_micros
            d = self._deployment(event.deployment)
            d["calls"] += 1
            d["successes"] += 1
            d["input_tokens"] += event.input_tokens
            d["output_tokens"] += event.output_tokens
            d["cost_micros"] += event.cost_micros
            d["latency_s_total"] += event.latency_s
        elif kind is EventKind.ATTEMPT_FAILED:
            d = self._deployment(event.deployment)
            d["calls"] += 1
            failures = d["failures"]
            failures[event.error] = failures.get(event.error, 0) + 1
        elif kind is EventKind.SKIPPED:
            self._deployment(event.deployment)["skipped"] += 1
        elif kind is EventKind.FELL_BACK:
            if event.error in _RATE_LIMIT_ERRORS:
                self.rate_limit_fallbacks += 1
            elif event.error == "ContextWindowExceeded":
                self.context_fallbacks += 1
        elif kind is EventKind.LIMIT_LEARNED:
            self._deployment(event.deployment)["windows_learned"] += 1
        elif kind is EventKind.CACHE_HIT:
            self.cache_hits[event.message] = self.cache_hits.get(event.message, 0) + 1
            self.saved_micros += event.cost_micros
        elif kind is EventKind.DOWNGRADED:
            self.downgraded += 1
        elif kind is EventKind.BUDGET_REFUSED:
            self.budget_refusals += 1

    def snapshot(self) -> dict[str, Any]:
        deployments = {}
        for name, d in self.deployments.items():
            out = {k: v for k, v in d.items() if k != "latency_s_total"}
            out["failures"] = dict(d["failures"])
            out["cost_usd"] = d["cost_micros"] / 1_000_000
            out["mean_latency_s"] = (
                d["latency_s_total"] / d["successes"] if d["successes"] else None
            )
            deployments[name] = out
        return {
            "requests": self.requests,
            "primary": self.primary,
            "fallback": self.fallback,
            "rate_limit_fallbacks": self.rate_limit_fallbacks,
            "context_fallbacks": self.context_fallbacks,
            "exhausted": self.exhausted,
            "failed": dict(self.failed),
            "cost_micros": self.cost_micros,
            "cost_usd": self.cost_micros / 1_000_000,
            "cache_hits": dict(self.cache_hits),
            "saved_usd": self.saved_micros / 1_000_000,
            "downgraded": self.downgraded,
            "budget_refusals": self.budget_refusals,
            "deployments": deployments,
        }


class _LoopThread:
    """A private event loop on a daemon thread, for the synchronous API.

    The thread runs ``asyncio.run``, so stopping it ends the loop the standard way: tasks
    still pending are cancelled and async generators closed before the loop is.
    """

    def __init__(self) -> None:
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stop: asyncio.Future[None] | None = None
        self._lock = threading.Lock()

    def _running(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self.loop is None:
                ready = threading.Event()
                self._thread = threading.Thread(
                    target=asyncio.run,
                    args=(self._serve(ready),),
                    name="llmrelay-sync",
                    daemon=True,
                )
                self._thread.start()
                ready.wait()
            assert self.loop is not None
            return self.loop

    async def _serve(self, ready: threading.Event) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = self.loop.create_future()
        ready.set()
        await self._stop

    @property
    def in_thread(self) -> bool:
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(work, self._running())

    def run(self, work: Coroutine[Any, Any, T]) -> T:
        return self.submit(work).result()

    def iterate(self, stream: AsyncIterator[T]) -> Iterator[T]:
        while True:
            try:
                yield self.run(_next(stream))
            except StopAsyncIteration:
                return

    def stop(self) -> None:
        """End the loop (its pending tasks are cancelled) and wait for the thread."""
        with self._lock:
            loop, stop, thread = self.loop, self._stop, self._thread
            self.loop = self._stop = self._thread = None
        if loop is None or stop is None or thread is None:
            return
        if not loop.is_closed():
            loop.call_soon_threadsafe(_resolve, stop)
        if threading.current_thread() is not thread:
            thread.join()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _streamed(events: list[StreamEvent], answered: RoutedResponse) -> ChatResponse:
    """The complete answer a stream delivered (tool calls included), with who answered
    and what it cost."""
    folded = StreamAccumulator()
    for event in events:
        folded.add(event)
    response = folded.response()
    response.deployment, response.group = answered.deployment, answered.group
    response.cost_micros, response.request_id = answered.cost_micros, answered.request_id
    response.provider = answered.provider
    return response


async def _next(stream: AsyncIterator[T]) -> T:
    return await stream.__anext__()


class _Owned:
    """Everything a :class:`SmartLLM` opened, closed exactly once, on the loop it runs on.

    Kept apart from the ``SmartLLM`` so that its finalizer and the task that closes it when
    its loop ends can hold these without keeping the ``SmartLLM`` alive.
    """

    def __init__(
        self,
        router: Router,
        scheduler: Scheduler,
        client: HttpClient,
        spending: Spending | None,
        cache: ResponseCache | None,
        observer: Observer | None,
    ) -> None:
        self.router = router
        self.scheduler = scheduler
        self.client = client
        self.spending = spending
        self.cache = cache
        self.observer = observer
        self.sync = _LoopThread()
        self.loop: asyncio.AbstractEventLoop | None = None
        """The loop of the first async call: every connection and queue lives there."""
        self.closed_by: str | None = None
        self._guard: asyncio.Task[None] | None = None
        self._lock = threading.Lock()

    def bind(self, loop: asyncio.AbstractEventLoop) -> None:
        """Tie the parts to ``loop``, and close them when it ends (``asyncio.run``'s end
        cancels every task: the guard's cancellation closes the HTTP session in time)."""
        with self._lock:
            if self.loop is None:
                self.loop = loop
                self._guard = loop.create_task(self._close_at_loop_end(), name="llmrelay-close")

    async def _close_at_loop_end(self) -> None:
        try:
            await asyncio.get_running_loop().create_future()
        finally:
            await self.shutdown("the end of its event loop")

    async def shutdown(self, by: str) -> None:
        """Close every part once, in order, on the bound loop (a later call does nothing)."""
        if self.closed_by is not None:
            return
        self.closed_by = by
        failures: list[Exception] = []
        for close in (
            self.router.aclose,  # hedge losers and the provider adapters
            self.scheduler.aclose,
            self.scheduler.limiter.aclose,  # the Redis pool, when limits are shared
            self.client.aclose,
            *((self.spending.aclose,) if self.spending else ()),  # the ledger's last rows
            *((self.cache.aclose,) if self.cache else ()),
            *((self._close_observer,) if self.observer else ()),  # after the last event
        ):
            try:
                await close()
            except Exception as exc:
                failures.append(exc)
        guard = self._guard
        if guard is not None and guard is not asyncio.current_task():
            guard.cancel()  # it has nothing left to do; let it finish before the loop may end
            await asyncio.wait([guard])
        if failures:
            raise failures[0]

    async def _close_observer(self) -> None:
        """Let every sink handle the events it was given, then close it (off the loop:
        a sink may block on I/O while it flushes)."""
        if self.observer is None:
            return
        try:
            await asyncio.to_thread(self.observer.close)
        except RuntimeError:  # at interpreter exit no new thread may start: close here
            self.observer.close()

    def running_here(self) -> bool:
        """Whether the bound loop is the one running in this thread."""
        return _loop_running_here() and asyncio.get_running_loop() is self.loop

    def close_from_sync_code(self, by: str) -> None:
        """Run :meth:`shutdown` on the bound loop from a thread not running it, and wait."""
        loop = self.loop
        if self.closed_by is not None:
            pass
        elif loop is None:
            self.sync.run(self.shutdown(by))  # nothing is bound yet: any loop will do
        elif loop.is_running():
            asyncio.run_coroutine_threadsafe(self.shutdown(by), loop).result()
        elif not loop.is_closed() and not _loop_running_here():
            loop.run_until_complete(self.shutdown(by))  # the caller's own loop, paused
        else:
            self.closed_by = f"{by}, its event loop no longer able to run"
        self.sync.stop()

    def finalize(self) -> None:
        """At garbage collection or exit: close what is still open."""
        loop, guard = self.loop, self._guard
        if self.closed_by is not None or loop is None or guard is None:
            self.sync.stop()  # nothing was opened on a loop, or it is closed already
        elif self.sync.in_thread:
            self.sync.stop()  # the end of the private loop cancels the guard, which closes
        elif self.running_here():
            loop.call_soon(guard.cancel)  # no waiting on the loop from inside it: it closes
        elif loop.is_running() and loop is not self.sync.loop:
            loop.call_soon_threadsafe(guard.cancel)  # it closes on its own loop
        else:
            self.close_from_sync_code("garbage collection or exit")


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


class SmartLLM:
    """Calls that do not fail: routing, scheduling, fallbacks and breakers behind one object.

    **One event loop per instance.** Connections, queues and timers belong to an event
    loop, so the async API (``ainvoke``, ``astream``) binds the instance to the loop of its
    first call; a call from another running loop raises :class:`LLMRelayError` at once.
    Use one ``SmartLLM`` per loop, or run calls on the instance's own loop from anywhere
    with ``await asyncio.wrap_future(llm.submit(llm.ainvoke(...)))``. The sync API
    (``invoke``, ``stream``) runs on that same private loop, so one instance serves it and
    ``submit`` callers alike — but not, in addition, a loop of yours.

    **It owns and closes everything once**: the HTTP client, the scheduler, the limiter's
    backend (a Redis pool), the provider adapters, the ledger, the caches and the observer
    (whose sinks handle every event before they close). Close with ``await llm.aclose()``,
    ``llm.close()``, or ``async with`` / ``with``; closing twice does nothing, and any call
    after it raises :class:`LLMRelayError`. What is not closed is closed for you, cleanly:
    when the loop it is bound to ends (``asyncio.run``), or at exit for the sync API.
    """

    def __init__(
        self,
        router: Router,
        stats: Stats,
        *,
        scheduler: Scheduler,
        client: HttpClient,
        default_group: str = "default",
        spending: Spending | None = None,
        cache: ResponseCache | None = None,
        observer: Observer | None = None,
    ) -> None:
        self.router = router
        self.stats = stats
        self.scheduler = scheduler
        self.http_client = client
        self.default_group = default_group
        self.spending = spending
        """Budgets and the spend ledger, when configured."""
        self.cache = cache
        """The response cache, when configured."""
        self.observer = observer
        """The sinks fed the router's events (:mod:`llmrelay.observe`), when configured."""
        self._analytics: Analytics | None = None
        self._owned = _Owned(router, scheduler, client, spending, cache, observer)
        self._finalizer = weakref.finalize(self, self._owned.finalize)

    # -- construction -------------------------------------------------------------------

    @classmethod
    def from_config(
        cls, path: str | Path, *, providers: Mapping[str, ProviderFactory] | None = None
    ) -> SmartLLM:
        """From a YAML file (see :mod:`llmrelay.config`)."""
        settings = load_settings(path, providers=providers)
        return cls.from_settings(settings, source=str(path), providers=providers)

    @classmethod
    def from_settings(
        cls,
        settings: RelaySettings,
        *,
        source: str = "config",
        providers: Mapping[str, ProviderFactory] | None = None,
    ) -> SmartLLM:
        """From validated settings; ``providers`` adds adapters registered in code."""
        from llmrelay.builder import assemble  # the builder module imports this one

        return cls(**assemble(settings, source, providers))

    @classmethod
    def for_tier(cls, tier: str = "tier1", *, env: Mapping[str, str] | None = None) -> SmartLLM:
        """A primary and fallbacks from the providers whose keys are in the environment.

        Reads each adapter's key variables (``OPENAI_API_KEY``, ``ANTHROPIC_API_KEY``,
        ``GEMINI_API_KEY`` / ``GOOGLE_API_KEY``) and ``OLLAMA_BASE_URL``; ``*_BASE_URL``
        variables point a provider elsewhere. Each model's limits for ``tier`` come from the
        catalog, and a 1M-token model is the context fallback when its provider is there.
        """
        from llmrelay.builder import tier_settings  # the builder module imports this one

        return cls.from_settings(tier_settings(tier, env), source="environment")

    # -- calls ----------------------------------------------------------------------------

    def _enter(self) -> None:
        """Refuse a call on a closed instance or from a loop other than the bound one."""
        owned = self._owned
        self._check_open()
        loop = asyncio.get_running_loop()
        if owned.loop is loop:
            return
        owned.bind(loop)
        if owned.loop is not loop:
            raise LLMRelayError(self._wrong_loop(loop))

    def _wrong_loop(self, loop: asyncio.AbstractEventLoop) -> str:
        if loop is self._owned.sync.loop:
            return (
                "this SmartLLM is bound to the event loop of its first async call, so its "
                "sync API (invoke, stream, submit) cannot run; await llm.ainvoke(...) on that "
                "loop, or use a second SmartLLM for synchronous code"
            )
        return (
            "this SmartLLM is bound to the event loop of its first call and cannot be used "
            "from another one; use one SmartLLM per event loop, or run the call on its own "
            "loop: await asyncio.wrap_future(llm.submit(llm.ainvoke(...)))"
        )

    async def ainvoke(
        self,
        prompt: Prompt | None = None,
        *,
        model: str | None = None,
        cache: bool | None = None,
        cache_ttl: float | None = None,
        request_id: str | None = None,
        **params: Any,
    ) -> RoutedResponse:
        """Answer ``prompt`` from model group ``model`` (default: ``default``).

        ``prompt``: a string, messages (ours or OpenAI's dicts) or a request; ``params``:
        request fields as OpenAI takes them (see :mod:`llmrelay.inputs`), plus ``key``
        and ``tags`` for budgets and the ledger. ``cache``: force the response cache on
        or off for this call; ``cache_ttl``: seconds this answer is kept; ``request_id``:
        names the call in events, the ledger and the answer (default: a new one).
        """
        self._enter()
        request, group = to_request(prompt, params), model or self.default_group
        store = self._cache_for(request, cache, cache_ttl)
        if store is None:
            return await self.router.send(request, group, request_id=request_id)
        request_id = request_id or new_request_id()
        hit = await store.lookup(request, group)
        if hit is not None:
            return self._served(hit, request, group, request_id, streamed=False)
        response = await self.router.send(request, group, request_id=request_id)
        await store.store(request, group, response, ttl_s=cache_ttl)
        return response

    def invoke(
        self, prompt: Prompt | None = None, *, model: str | None = None, **params: Any
    ) -> RoutedResponse:
        """:meth:`ainvoke` from synchronous code."""
        self._check_open()
        return self._owned.sync.run(self.ainvoke(prompt, model=model, **params))

    async def astream(
        self,
        prompt: Prompt | None = None,
        *,
        model: str | None = None,
        cache: bool | None = None,
        cache_ttl: float | None = None,
        request_id: str | None = None,
        on_answer: Callable[[RoutedResponse], None] | None = None,
        **params: Any,
    ) -> AsyncGenerator[StreamEvent, None]:
        """Stream the answer: a start, text and tool-call pieces, an end with usage.

        A cached answer is replayed as the stream it was first delivered as.
        ``request_id`` as for :meth:`ainvoke`; ``on_answer`` is given the whole answer
        (deployment, attempts, cost, cache) just before the end event."""
        self._enter()
        request, group = to_request(prompt, params), model or self.default_group
        store = self._cache_for(request, cache, cache_ttl)
        if store is None:
            async for event in self.router.stream(
                request, group, request_id=request_id, on_answer=on_answer
            ):
                yield event
            return
        request_id = request_id or new_request_id()
        hit = await store.lookup(request, group)
        if hit is not None:
            response = self._served(hit, request, group, request_id, streamed=True)
            for event in hit.events():
                if on_answer is not None and isinstance(event, StreamEnd):
                    on_answer(response)
                yield event
            return
        delivered: list[StreamEvent] = []
        answered: list[RoutedResponse] = []

        def answer(response: RoutedResponse) -> None:
            answered.append(response)
            if on_answer is not None:
                on_answer(response)

        async for event in self.router.stream(
            request, group, request_id=request_id, on_answer=answer
        ):
            delivered.append(event)
            yield event
        if answered:
            await store.store(request, group, _streamed(delivered, answered[0]), delivered,
                              cache_ttl)  # fmt: skip

    def _cache_for(
        self, request: ChatRequest, opt_in: bool | None, ttl_s: float | None
    ) -> ResponseCache | None:
        """The response cache when this call goes through it."""
        if ttl_s is not None and (isinstance(ttl_s, bool) or not ttl_s > 0):
            raise BadRequest(f"cache_ttl: expected a number of seconds > 0, got {ttl_s!r}")
        if opt_in is not None and not isinstance(opt_in, bool):
            raise BadRequest(f"cache: expected true or false, got {opt_in!r}")
        store = self.cache
        return store if store is not None and store.wants(request, opt_in) else None

    def _served(
        self, hit: Hit, request: ChatRequest, group: str, request_id: str, *, streamed: bool
    ) -> ChatResponse:
        """Account for an answer from the cache: an event, and a ledger row costing 0."""
        response = hit.response(request_id)
        saved = response.saved_micros
        self.router.events.emit(Event(kind=EventKind.CACHE_HIT, group=group,
                                      deployment=response.deployment, message=hit.kind,
                                      cost_micros=saved, request_id=request_id,
                                      request=request, response=response, streamed=streamed,
                                      started_at=time.time()))  # fmt: skip
        if self.spending is not None:
            self.spending.cache_hit(request, request_id, group, response.deployment, hit.kind,
                                    saved)  # fmt: skip
        return response

    def stream(
        self, prompt: Prompt | None = None, *, model: str | None = None, **params: Any
    ) -> Iterator[StreamEvent]:
        """:meth:`astream` from synchronous code."""
        self._check_open()
        return self._owned.sync.iterate(self.astream(prompt, model=model, **params))

    def submit(self, work: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        """Run ``work`` on this client's private loop (where the sync API runs).

        Callers on any loop can then share one instance: ``await asyncio.wrap_future(
        llm.submit(llm.ainvoke("hi")))``.
        """
        try:
            self._check_open()
        except LLMRelayError:
            work.close()
            raise
        return self._owned.sync.submit(work)

    def _check_open(self) -> None:
        closed_by = self._owned.closed_by
        if closed_by is not None:
            raise LLMRelayError(
                f"this SmartLLM is closed (by {closed_by}); make a new one to call again"
            )

    # -- state ----------------------------------------------------------------------------

    def get_stats(self) -> dict[str, Any]:
        """Request, primary, fallback and failure counts, cost, cache hits and savings,
        per-deployment figures, and each budget's spend as last seen by this process
        (:meth:`aget_stats` reads shared counters afresh)."""
        stats = self.stats.snapshot()
        for candidate in self.router.candidates():
            entry = stats["deployments"].setdefault(candidate.id, {})
            entry["breaker"] = candidate.breaker.state.value
            entry["in_flight"] = candidate.in_flight
        budgets = self.spending.budgets if self.spending else None
        stats["budgets"] = budgets.last_seen() if budgets else []
        stats["cache"] = self.cache.stats() if self.cache else None
        stats["observe"] = self.observer.stats() if self.observer else {}
        return stats

    async def aget_stats(self) -> dict[str, Any]:
        """:meth:`get_stats`, with every budget read from its counters (Redis, SQLite)."""
        stats = self.get_stats()
        budgets = self.spending.budgets if self.spending else None
        if budgets is not None:
            stats["budgets"] = await budgets.snapshot()
        return stats

    # -- analytics ------------------------------------------------------------------------

    @property
    def analytics(self) -> Analytics:
        """Queries over the analytics store (``observe.analytics``): ``stats``,
        ``best_model_for``, ``feedback``; :class:`LLMRelayError` when it is not configured."""
        from llmrelay.analytics import AnalyticsSink  # the analytics layer imports this one

        if self._analytics is None:
            sinks = self.observer.sinks if self.observer is not None else []
            sink = next((s for s in sinks if isinstance(s, AnalyticsSink)), None)
            if sink is None:
                raise LLMRelayError(
                    "analytics is not configured: add observe.analytics to the config "
                    "(or LLMBuilder.with_observer('analytics'))"
                )
            self._analytics = sink.analytics()
        return self._analytics

    def feedback(self, request_id: str, score: float, comment: str | None = None) -> None:
        """Score the answer ``request_id`` (its ``response.request_id``): a quality in
        [0, 1] that ``best_model_for(..., optimize_for="quality")`` ranks by."""
        analytics = self.analytics
        if self.observer is not None:
            self.observer.flush(timeout=10)  # the answer's row may still be on its way
        analytics.feedback(request_id, score, comment)

    async def afeedback(self, request_id: str, score: float, comment: str | None = None) -> None:
        """:meth:`feedback` without blocking the event loop."""
        await asyncio.to_thread(self.feedback, request_id, score, comment)

    def best_model_for(
        self,
        task: str | None,
        optimize_for: Literal["cost", "speed", "quality"] = "cost",
        **bounds: Any,
    ) -> Choice | None:
        """The deployment that served ``task`` best so far (see
        :meth:`llmrelay.analytics.Analytics.best_model_for` for ``bounds``: ``min_quality``,
        ``min_calls``, ``max_error_rate``, ``since``, ``group``…); ``None`` when none
        qualifies. Reads the store: call it from a thread, not the event loop, when it
        is PostgreSQL far away."""
        return self.analytics.best_model_for(task, optimize_for, **bounds)

    def breaker_states(self) -> dict[str, str]:
        return {c.id: c.breaker.state.value for c in self.router.candidates()}

    @property
    def closed(self) -> bool:
        return self._owned.closed_by is not None

    # -- closing --------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Close every part once, on the loop they belong to; a second call does nothing."""
        owned = self._owned
        self._finalizer.detach()
        if owned.loop is None or owned.running_here():
            await owned.shutdown("aclose()")
            if owned.sync.in_thread:
                owned.sync.stop()  # ends once this call returns
            elif owned.sync.loop is not None:
                await asyncio.to_thread(owned.sync.stop)
        else:  # bound to another loop: close there, from a thread, without blocking this one
            await asyncio.to_thread(owned.close_from_sync_code, "aclose()")

    def close(self) -> None:
        """Close from synchronous code (inside the bound loop, use ``await aclose()``)."""
        owned = self._owned
        if owned.closed_by is None and (owned.running_here() or owned.sync.in_thread):
            raise LLMRelayError(
                "close() would block the event loop this SmartLLM runs on; "
                "use await llm.aclose() (or async with)"
            )
        self._finalizer.detach()
        owned.close_from_sync_code("close()")

    async def __aenter__(self) -> SmartLLM:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> SmartLLM:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["SmartLLM", "Stats"]
