"""Operations endpoints: ``/health``, ``/ready``, ``/metrics``, ``/v1/models``, ``/openapi.json``.

``/health`` says the process serves. ``/ready`` says it can do useful work: the key store
answers, and every model group has a deployment whose server accepts a TCP connection and
whose breaker is not open; the probes are cheap (a connect, no tokens) and cached for
``ready_cache_s``. ``/metrics`` is the Prometheus sink's exposition, the one source of
every figure.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import msgspec

from llmrelay.gateway.http import Request, Responder
from llmrelay.gateway.wire import ApiError, Kind

if TYPE_CHECKING:
    from llmrelay.gateway.app import Gateway

_encode = msgspec.json.Encoder().encode
_PROBE_TIMEOUT_S = 2.0
_PORTS = {"http": 80, "https": 443}


async def health(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    await out.json(200, b'{"status":"ok"}')


async def metrics(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    caller = await gateway.keyring.caller(request.api_key())
    if not caller.admin:
        raise ApiError(Kind.PERMISSION, "metrics are for the master key or an admin key")
    sink = gateway.metrics_sink
    if sink is None:
        raise ApiError(Kind.NOT_FOUND, "no Prometheus sink is configured")
    body = sink.render()
    await out.start(200, [(b"content-type", b"text/plain; version=0.0.4; charset=utf-8"),
                          (b"content-length", str(len(body)).encode())])  # fmt: skip
    await out.body(body)


async def models(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    """The model groups the caller's key may use, in OpenAI's list format (Anthropic's when
    the request carries ``anthropic-version``)."""
    caller = await gateway.keyring.caller(request.api_key())
    names = [name for name in gateway.llm.router.groups
             if caller.key is None or caller.key.allows(name)]  # fmt: skip
    if b"anthropic-version" in request.headers:
        data = [{"type": "model", "id": n, "display_name": n, "created_at": "1970-01-01T00:00:00Z"}
                for n in names]  # fmt: skip
        body: dict[str, Any] = {"data": data, "has_more": False,
                                "first_id": names[0] if names else None,
                                "last_id": names[-1] if names else None}  # fmt: skip
    else:
        body = {"object": "list", "data": [{"id": n, "object": "model", "created": 0,
                                            "owned_by": "llmrelay"} for n in names]}  # fmt: skip
    await out.json(200, _encode(body))


async def openapi(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    from llmrelay.gateway.openapi import document

    await out.json(200, document())


class ReadyCache:
    """The last readiness verdict and when it was made."""

    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self.at = -float("inf")
        self.answer: tuple[int, bytes] = (503, b"{}")
        self.lock = asyncio.Lock()


async def ready(gateway: Gateway, request: Request, out: Responder, rid: str) -> None:
    cache = gateway.ready_cache
    async with cache.lock:
        if time.monotonic() - cache.at >= cache.ttl_s:
            cache.answer = await _probe(gateway)
            cache.at = time.monotonic()
    status, body = cache.answer
    await out.json(status, body)


async def _probe(gateway: Gateway) -> tuple[int, bytes]:
    llm = gateway.llm
    breakers = llm.breaker_states()
    candidates = llm.router.candidates()
    reachable = await asyncio.gather(*(_reachable(c.scheduled.provider) for c in candidates))
    up = {
        c.id: ok and breakers.get(c.id) != "open"
        for c, ok in zip(candidates, reachable, strict=True)
    }
    groups = {
        name: any(up.get(member.id, False) for member in group.members())
        for name, group in llm.router.groups.items()
    }
    try:
        await gateway.keyring.store.revision()
        keys = "ok"
    except Exception as exc:  # a store that cannot answer makes the gateway unready
        keys = f"failing: {type(exc).__name__}"
    deployments = {c.id: {"reachable": ok, "breaker": breakers.get(c.id, "closed")}
                   for c, ok in zip(candidates, reachable, strict=True)}  # fmt: skip
    ok = keys == "ok" and all(groups.values())
    body = {"status": "ready" if ok else "unready", "keys": keys, "groups": groups,
            "deployments": deployments}  # fmt: skip
    return (200 if ok else 503), _encode(body)


async def _reachable(provider: Any) -> bool:
    """Whether the deployment's server accepts a TCP connection (no request is sent)."""
    url = urlsplit(str(getattr(provider, "base_url", "") or ""))
    if not url.hostname:
        return True  # nothing to probe (an in-process adapter)
    port = url.port or _PORTS.get(url.scheme, 80)
    try:
        async with asyncio.timeout(_PROBE_TIMEOUT_S):
            _, writer = await asyncio.open_connection(url.hostname, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    return True


__all__ = ["ReadyCache", "health", "metrics", "models", "openapi", "ready"]
