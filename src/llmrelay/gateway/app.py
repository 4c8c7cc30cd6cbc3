"""The gateway as one ASGI app: routes, the answer every request gets, and its lifespan.

:class:`Gateway` owns what it serves with — the :class:`~llmrelay.SmartLLM` (router,
limits, budgets, caches, observers), the key store and the keyring — opens them at
start-up in the serving process (so every worker has its own) and closes them once at
shutdown. Each request gets a request id (the caller's ``x-request-id`` when it is a
sane one), the security headers, CORS headers for allowed origins, and on failure an
error in the format of the API it called; nothing unexpected ever shows a traceback.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Awaitable, Callable, Mapping

from llmrelay.client import SmartLLM
from llmrelay.config import BudgetSettings, PrometheusSection, RelaySettings
from llmrelay.gateway import admin, ops
from llmrelay.gateway.auth import KeyLimits, Keyring
from llmrelay.gateway.calls import ANTHROPIC, OPENAI, Api, serve_call
from llmrelay.gateway.http import (
    SECURITY_HEADERS,
    ClientGone,
    Receive,
    Request,
    Responder,
    Scope,
    Send,
)
from llmrelay.gateway.keys import KeyStore, open_key_store
from llmrelay.gateway.settings import ServerSettings
from llmrelay.gateway.wire import ApiError, Kind, api_error
from llmrelay.observe.prometheus import PrometheusSink
from llmrelay.providers.registry import ProviderFactory
from llmrelay.router import new_request_id

log = logging.getLogger("llmrelay.gateway")

Handler = Callable[["Gateway", Request, Responder, str], Awaitable[None]]

_REQUEST_ID = re.compile(rb"[A-Za-z0-9._:-]{1,64}")
_EXPOSED = b"x-request-id, retry-after, x-llmrelay-deployment, x-llmrelay-attempts, " \
           b"x-llmrelay-cache, x-llmrelay-cost-usd"  # fmt: skip


async def _chat(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await serve_call(gateway, OPENAI, request, out, rid)


async def _messages(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await serve_call(gateway, ANTHROPIC, request, out, rid)


ROUTES: Mapping[tuple[str, str], Handler] = {
    ("POST", "/v1/chat/completions"): _chat,
    ("POST", "/v1/messages"): _messages,
    ("GET", "/v1/models"): ops.models,
    ("GET", "/health"): ops.health,
    ("GET", "/ready"): ops.ready,
    ("GET", "/metrics"): ops.metrics,
    ("GET", "/openapi.json"): ops.openapi,
    ("GET", "/admin/keys"): admin.list_keys,
    ("POST", "/admin/keys"): admin.create_key,
}
PREFIX_ROUTES: Mapping[tuple[str, str], Handler] = {
    ("GET", "/admin/keys/"): admin.show_key,
    ("PATCH", "/admin/keys/"): admin.update_key,
    ("DELETE", "/admin/keys/"): admin.revoke_key,
}
"""Routes whose path ends with an id (``/admin/keys/{id}``)."""


def prepare(settings: RelaySettings) -> RelaySettings:
    """The router settings the gateway runs with: budgets on (virtual keys carry their
    own) and the Prometheus sink on (it serves ``/metrics``), with their configured
    options where the file has them."""
    budget = settings.budget or BudgetSettings()
    observe = settings.observe
    if observe.prometheus is None:
        observe = observe.model_copy(update={"prometheus": PrometheusSection()})
    return settings.model_copy(update={"budget": budget, "observe": observe})


class Gateway:
    """The ASGI app of ``llmrelay serve`` (see the module docstring)."""

    def __init__(
        self,
        settings: RelaySettings,
        server: ServerSettings,
        *,
        source: str = "config",
        providers: Mapping[str, ProviderFactory] | None = None,
    ) -> None:
        self.settings = prepare(settings)
        self.server = server
        self.source = source
        self.providers = providers
        self._cors = frozenset(o.encode() for o in server.cors_origins)
        self._llm: SmartLLM | None = None
        self._store: KeyStore | None = None
        self._keyring: Keyring | None = None
        self._limits: KeyLimits | None = None
        self.metrics_sink: PrometheusSink | None = None
        self.ready_cache = ops.ReadyCache(server.ready_cache_s)

    # -- what the routes use; set between start-up and shutdown --------------------------

    @property
    def llm(self) -> SmartLLM:
        assert self._llm is not None, "the gateway is not started"
        return self._llm

    @property
    def keyring(self) -> Keyring:
        assert self._keyring is not None, "the gateway is not started"
        return self._keyring

    @property
    def key_limits(self) -> KeyLimits:
        assert self._limits is not None, "the gateway is not started"
        return self._limits

    # -- lifespan ---------------------------------------------------------------------------

    async def startup(self) -> None:
        """Build the router and open the key store (in the serving process)."""
        llm = SmartLLM.from_settings(self.settings, source=self.source, providers=self.providers)
        try:
            store = open_key_store(self.server.keys)
        except BaseException:
            await llm.aclose()
            raise
        self._llm, self._store = llm, store
        self._keyring = Keyring(store, self.server.resolved_master_key())
        if llm.spending is not None and llm.spending.budgets is not None:
            llm.spending.budgets.caller_limits = self._keyring.budget_limits
        self._limits = KeyLimits(llm.scheduler.limiter)
        sinks = llm.observer.sinks if llm.observer is not None else []
        self.metrics_sink = next((s for s in sinks if isinstance(s, PrometheusSink)), None)

    async def shutdown(self) -> None:
        """Close what start-up opened, once."""
        llm, store = self._llm, self._store
        self._llm = self._store = None
        try:
            if llm is not None:
                await llm.aclose()
        finally:
            if store is not None:
                await store.aclose()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("start-up failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind != "http":
            return
        request = Request(scope, receive)
        given = request.headers.get(b"x-request-id")
        rid = given.decode() if given and _REQUEST_ID.fullmatch(given) else new_request_id()
        base = [*SECURITY_HEADERS, (b"x-request-id", rid.encode())]
        origin = request.headers.get(b"origin")
        if origin is not None and self._cors and (origin in self._cors or b"*" in self._cors):
            base += [(b"access-control-allow-origin", origin), (b"vary", b"origin"),
                     (b"access-control-expose-headers", _EXPOSED)]  # fmt: skip
            if request.method == "OPTIONS":
                await self._preflight(request, Responder(send, base))
                return
        out = Responder(send, base)
        handler = ROUTES.get((request.method, request.path))
        if handler is None:
            handler = self._prefixed(request)
        try:
            await handler(self, request, out, rid)
        except ClientGone:
            log.info("%s: the client left before its answer", rid)
        except Exception as exc:
            await self._fail(request, out, rid, exc)

    def _prefixed(self, request: Request) -> Handler:
        path = request.path
        matched = False
        for (method, prefix), handler in PREFIX_ROUTES.items():
            if (
                path.startswith(prefix)
                and len(path) > len(prefix)
                and "/" not in path[len(prefix) :]
            ):
                if method == request.method:
                    return handler
                matched = True
        if matched or any(known == path for _, known in ROUTES):
            return _wrong_method
        return _not_found

    async def _preflight(self, request: Request, out: Responder) -> None:
        asked = request.headers.get(b"access-control-request-headers", b"")
        await out.empty(204, [
            (b"access-control-allow-methods", b"GET, POST, PATCH, DELETE, OPTIONS"),
            (b"access-control-allow-headers", asked or b"authorization, content-type"),
            (b"access-control-max-age", b"600"),
        ])  # fmt: skip

    async def _fail(self, request: Request, out: Responder, rid: str, exc: Exception) -> None:
        error = api_error(exc)
        self.log_failure(rid, exc, error)
        api = _api_of(request)
        if out.started:
            return  # the status is sent; a stream writes its own error event
        await out.json(api.error_status(error), api.error_body(error, rid), error.headers())

    def log_failure(self, rid: str, exc: BaseException, error: ApiError) -> None:
        """Unexpected failures with their traceback, in the log only; the rest in a line."""
        if error.kind is Kind.INTERNAL:
            log.error("%s: internal error", rid, exc_info=exc)
        elif error.status >= 500:
            log.warning("%s: %s %s", rid, error.status, error.message)
        else:
            log.info("%s: %s %s", rid, error.status, error.message)


def _api_of(request: Request) -> Api:
    """Whose error format to answer in: Anthropic's for its path or its version header."""
    if request.path == "/v1/messages" or b"anthropic-version" in request.headers:
        return ANTHROPIC
    return OPENAI


async def _not_found(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    raise ApiError(Kind.NOT_FOUND, f"no route {request.method} {request.path}")


async def _wrong_method(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    raise ApiError(Kind.INVALID, f"{request.path} does not take {request.method}", status=405)


def route_table() -> list[tuple[str, str]]:
    """Every (method, path) served, for the OpenAPI description."""
    return [*ROUTES, *((m, p + "{key_id}") for m, p in PREFIX_ROUTES)]


__all__ = ["ROUTES", "Gateway", "prepare", "route_table"]
