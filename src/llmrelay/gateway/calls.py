"""One model call over HTTP, the same for both APIs: authenticate, read, check, limit,
route through :class:`~llmrelay.SmartLLM`, answer (whole or streamed).

What differs between OpenAI's and Anthropic's APIs is an :class:`Api`: how a body becomes
a request, how an answer, a stream event and an error are written. Everything else —
the key, its limits and budgets, the timeout, a client that leaves — is here, once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from llmrelay.errors import BudgetExceeded
from llmrelay.gateway import anthropic_wire, openai_wire
from llmrelay.gateway.http import SSE, ClientGone, Request, Responder, until_disconnect
from llmrelay.gateway.wire import ApiError, Kind, api_error
from llmrelay.types import ChatRequest, ChatResponse, StreamEnd, StreamEvent, StreamStart, Usage

if TYPE_CHECKING:
    from llmrelay.gateway.app import Gateway


class Writer(Protocol):
    def frames(self, event: StreamEvent) -> bytes: ...


@dataclass(frozen=True, slots=True)
class Api:
    """How one HTTP API reads a call and writes its answers."""

    name: str
    parse: Callable[[bytes], tuple[Any, ChatRequest]]
    answer: Callable[[ChatResponse], bytes]
    writer: Callable[[str, str, Any], Writer]
    error_status: Callable[[ApiError], int]
    error_body: Callable[[ApiError, str], bytes]
    error_event: Callable[[ApiError, str], bytes]


def _openai_writer(request_id: str, group: str, body: Any) -> Writer:
    options = body.stream_options
    usage = bool(options and options.include_usage)
    return openai_wire.ChunkWriter(request_id, group, include_usage=usage)


OPENAI = Api(
    name="openai",
    parse=openai_wire.parse_chat,
    answer=lambda response: openai_wire.completion(response, response.request_id),
    writer=_openai_writer,
    error_status=openai_wire.error_status,
    error_body=openai_wire.error_body,
    error_event=openai_wire.error_event,
)
ANTHROPIC = Api(
    name="anthropic",
    parse=anthropic_wire.parse_messages,
    answer=anthropic_wire.message,
    writer=lambda request_id, group, body: anthropic_wire.EventWriter(group),
    error_status=anthropic_wire.error_status,
    error_body=anthropic_wire.error_body,
    error_event=anthropic_wire.error_event,
)


def answer_headers(response: ChatResponse) -> list[tuple[bytes, bytes]]:
    """What the router did for this answer: deployment, attempts, cache, cost."""
    return [
        (b"x-llmrelay-deployment", response.deployment.encode()),
        (b"x-llmrelay-attempts", str(max(1, len(response.attempts))).encode()),
        (b"x-llmrelay-cache", (response.cached or "miss").encode()),
        (b"x-llmrelay-cost-usd", f"{response.cost_micros / 1e6:.6f}".encode()),
    ]


async def serve_call(
    gateway: Gateway, api: Api, request: Request, out: Responder, rid: str
) -> None:
    """Answer one call of ``api``; errors are raised for the caller to write."""
    caller = await gateway.keyring.caller(request.api_key())
    body, chat = api.parse(await request.body(gateway.server.max_body_bytes))
    group: str = body.model
    caller.check_group(group)
    llm = gateway.llm
    llm.router.group(group)  # an unknown group is a 404 before any limit is spent
    chat.key = caller.key_id
    tokens = llm.router.quick_estimator.count_request(chat) + (chat.max_tokens or 0)
    held = await gateway.key_limits.admit(caller, tokens)
    usage: list[Usage] = []
    try:
        if chat.stream:
            await _stream(gateway, api, request, out, rid, body, chat, group, usage)
        else:
            response = await _answer(gateway, request, chat, group, rid)
            usage.append(response.usage)
            await out.json(200, api.answer(response), answer_headers(response))
    except BudgetExceeded as exc:
        if caller.key is None or not exc.budget.startswith(f"key:{caller.key.id}/"):
            raise
        name = f" (key {caller.key.name!r})" if caller.key.name else ""
        raise ApiError(Kind.BUDGET, f"{exc}{name}") from None
    finally:
        await gateway.key_limits.settle(held, usage[0] if usage else None)


async def _answer(
    gateway: Gateway, request: Request, chat: ChatRequest, group: str, rid: str
) -> ChatResponse:
    """The routed answer; cancelled when the client leaves or the timeout passes."""
    call = asyncio.ensure_future(gateway.llm.ainvoke(chat, model=group, request_id=rid))
    gone = asyncio.ensure_future(until_disconnect(request.receive))
    try:
        done, _ = await asyncio.wait(
            (call, gone), timeout=gateway.server.request_timeout_s,
            return_when=asyncio.FIRST_COMPLETED,
        )  # fmt: skip
    finally:
        gone.cancel()
    if call in done:
        return call.result()
    call.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await call
    if gone in done:
        raise ClientGone
    raise ApiError(Kind.TIMEOUT, f"no answer within {gateway.server.request_timeout_s:g} s")


async def _stream(
    gateway: Gateway,
    api: Api,
    request: Request,
    out: Responder,
    rid: str,
    body: Any,
    chat: ChatRequest,
    group: str,
    usage: list[Usage],
) -> None:
    """Stream the answer as server-sent events. Failures before the first event are
    answered with a status like any other; after it, as the API's error event. A client
    that leaves cancels the call (the router bills what was generated)."""
    answered: list[ChatResponse] = []
    events = gateway.llm.astream(chat, model=group, request_id=rid, on_answer=answered.append)
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.ensure_future(until_disconnect(request.receive))
    watcher.add_done_callback(lambda w: None if w.cancelled() else task.cancel())
    try:
        async with contextlib.aclosing(events):
            try:
                async with asyncio.timeout(gateway.server.request_timeout_s):
                    first = await anext(events)
            except TimeoutError:
                raise ApiError(Kind.TIMEOUT, "no answer within "
                               f"{gateway.server.request_timeout_s:g} s") from None  # fmt: skip
            except StopAsyncIteration:
                raise ApiError(
                    Kind.UPSTREAM, "the provider's stream ended before it began"
                ) from None
            await out.start(200, _stream_headers(first))
            writer = api.writer(rid, group, body)
            await out.body(writer.frames(first), more=True)
            try:
                async for event in events:
                    if isinstance(event, StreamEnd):
                        usage.append(event.usage or Usage())
                    await out.body(writer.frames(event), more=True)
            except Exception as exc:  # the status is sent: the error goes in the stream
                error = api_error(exc)
                gateway.log_failure(rid, exc, error)
                await out.body(api.error_event(error, rid), more=True)
            await out.body(_trailer(answered))
    except asyncio.CancelledError:
        if watcher.done() and not watcher.cancelled():
            task.uncancel()
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


def _stream_headers(first: StreamEvent) -> list[tuple[bytes, bytes]]:
    headers = [SSE, (b"x-accel-buffering", b"no")]
    if isinstance(first, StreamStart) and first.deployment:
        headers.append((b"x-llmrelay-deployment", first.deployment.encode()))
    return headers


def _trailer(answered: list[ChatResponse]) -> bytes:
    """What the headers could not say yet, as an SSE comment (clients skip comments)."""
    if not answered:
        return b""
    fields = b"; ".join(k[len(b"x-llmrelay-") :] + b"=" + v for k, v in answer_headers(answered[0]))
    return b": llmrelay " + fields + b"\n\n"


__all__ = ["ANTHROPIC", "OPENAI", "Api", "answer_headers", "serve_call"]
