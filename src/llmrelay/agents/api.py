"""The runs service over HTTP: ``/api/v1/runs…``, ``/ws/runs/{id}``, ``/api/v1/tools``.

:func:`create_app` serves an :class:`AgentService` its caller owns (opened and closed by
the caller); :func:`create_owned_app` builds an app whose lifespan opens the service and
closes it once, which is what :func:`serve` (``llmrelay agent serve``) runs. Every answer
that is not a success is ``{"error": {"type": ..., "message": ...}}``, never a traceback.

The ASGI layers around FastAPI, outermost first, each one small: security headers →
error shield (500 for anything unhandled) → key guard (static keys, a token bucket per
key) → body limit (413) → FastAPI, whose handlers map the agents' errors (:data:`ERRORS`).
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import math
import time
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from fastapi import Depends, FastAPI, Header, Query, Request, WebSocket
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.routing import APIRouter
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers, MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocketDisconnect

from llmrelay.agents.config import AgentSettings
from llmrelay.agents.errors import (
    AgentError,
    OutcomeUnknown,
    PlanInvalid,
    PlanningFailed,
    PromptRejected,
    PromptTooLong,
    RunConflict,
    RunNotFound,
    ToolFailed,
    UnknownTool,
)
from llmrelay.agents.service import AgentService
from llmrelay.agents.states import RunState

if TYPE_CHECKING:
    from socket import socket


log = logging.getLogger("llmrelay.agents.api")

OPEN_PATHS = frozenset({"/health"})
"""Paths answered without a key (a load balancer's probe)."""


@dataclass(frozen=True, slots=True)
class ErrorKind:
    """How one error class is answered: its HTTP status and its ``type``."""

    status: int
    type: str


ERRORS: dict[type[Exception], ErrorKind] = {
    RunNotFound: ErrorKind(404, "run_not_found"),
    RunConflict: ErrorKind(409, "run_conflict"),
    OutcomeUnknown: ErrorKind(409, "outcome_unknown"),
    PromptTooLong: ErrorKind(400, "prompt_too_long"),
    PromptRejected: ErrorKind(400, "prompt_rejected"),
    PlanInvalid: ErrorKind(422, "plan_invalid"),
    PlanningFailed: ErrorKind(422, "planning_failed"),
    UnknownTool: ErrorKind(422, "unknown_tool"),
    ToolFailed: ErrorKind(502, "tool_failed"),
    AgentError: ErrorKind(500, "agent_error"),
}
"""Each agents error class, answered once; a subclass not listed answers as its parent."""

_SECURITY_HEADERS = (
    ("x-content-type-options", "nosniff"),
    ("x-frame-options", "DENY"),
    ("referrer-policy", "no-referrer"),
)


# -- the wire models (what /openapi.json describes) -----------------------------------------


class _Open(BaseModel):
    """A stored record: fields added later by the store pass through."""

    model_config = ConfigDict(extra="allow")


_RUN_EXAMPLES: list[Any] = [
    {"prompt": "calculate 5*3, add the result as a todo, then list my todos"},
    {"plan": {"steps": [{"id": "step_1", "tool": "calculator", "input": {"expression": "5*3"}}]}},
]


class RunRequest(BaseModel):
    """A prompt for the planner, a plan to check and run, or both (the prompt is kept)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": _RUN_EXAMPLES})
    prompt: str | None = Field(default=None, description="what to do, in words")
    plan: dict[str, Any] | None = Field(
        default=None, description='{"steps": [{"id", "tool", "input", "version"?, "depends_on"?}]}'
    )


class Step(_Open):
    """One step of a run and what its last execution did."""

    id: str
    tool: str
    version: str
    status: str
    executions: int
    result: Any = None
    error: str | None = None
    started_at: float | None = None
    finished_at: float | None = None


class RunSummary(_Open):
    """A run as listed (without its steps)."""

    id: str
    status: RunState
    prompt: str
    planner: str
    planner_note: str = ""
    plan: dict[str, Any]
    attempt: int
    error: str | None = None
    created_at: float
    updated_at: float
    finished_at: float | None = None


class Run(RunSummary):
    """A run with its steps."""

    steps: list[Step]


class RunPage(BaseModel):
    """One page of runs, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    runs: list[RunSummary]
    next_cursor: str | None


class Event(BaseModel):
    """One event of a run: ``planned``, ``status``, ``step_started``, ``step_finished``…"""

    seq: int
    kind: str
    data: Any
    at: float


class ToolInfo(_Open):
    """A registered tool version, its schemas, policies and metrics."""

    name: str
    version: str
    description: str
    input_schema: dict[str, Any]
    output_schema: dict[str, Any]
    timeout_s: float
    idempotent: bool
    retries: int
    metrics: dict[str, Any]


class Health(BaseModel):
    """The process answers."""

    status: Literal["ok"] = "ok"


class ErrorDetail(_Open):
    """What went wrong: a stable ``type`` and a message naming the field or step (a plan's
    refusal adds its ``code`` and ``problems``)."""

    type: str
    message: str


class ErrorAnswer(BaseModel):
    """Every answer that is not a success."""

    error: ErrorDetail


class ApiError(HTTPException):
    """A 4xx of this module's own, with its error ``type``."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(status, message)
        self.kind = kind


def _documented(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": ErrorAnswer} for status in statuses}


# -- errors -------------------------------------------------------------------------------


def error_body(kind: str, message: str, **extra: Any) -> dict[str, Any]:
    """The JSON of an error answer."""
    return {"error": {"type": kind, "message": message, **extra}}


def _error_response(
    status: int, kind: str, message: str, headers: dict[str, str] | None = None, **extra: Any
) -> JSONResponse:
    return JSONResponse(error_body(kind, message, **extra), status_code=status, headers=headers)


def classify(exc: Exception) -> ErrorKind:
    """The answer of an agents error: the entry of its nearest class in :data:`ERRORS`."""
    return next(ERRORS[cls] for cls in type(exc).__mro__ if cls in ERRORS)


async def _agent_error(request: Request, exc: Exception) -> JSONResponse:
    kind = classify(exc)
    if isinstance(exc, PlanInvalid):
        return _error_response(
            kind.status, kind.type, str(exc), code=exc.code, problems=exc.problems
        )
    return _error_response(kind.status, kind.type, str(exc))


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    kind = (
        exc.kind
        if isinstance(exc, ApiError)
        else HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_").replace("-", "_")
    )
    return _error_response(exc.status_code, kind, str(exc.detail), dict(exc.headers or {}))


async def _invalid_request(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    problems = [
        f"{'.'.join(str(p) for p in err.get('loc', ())) or 'body'}: {err.get('msg', 'invalid')}"
        for err in errors
    ]
    if any(err.get("type") == "json_invalid" for err in errors):
        return _error_response(400, "invalid_json", "; ".join(problems))
    return _error_response(422, "invalid_request", "; ".join(problems))


# -- ASGI layers -------------------------------------------------------------------------


class SecurityHeaders:
    """Adds the security headers to every HTTP answer (``no-store`` unless one is set)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in _SECURITY_HEADERS:
                    headers[name] = value
                if "cache-control" not in headers:
                    headers["cache-control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)


class ErrorShield:
    """Anything unhandled is logged here and answered 500 with a generic message."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] in ("http.response.start", "websocket.accept")
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error answering %s %s", scope["type"], scope.get("path"))
            if scope["type"] == "http" and not started:
                response = _error_response(500, "internal_error", "internal server error")
                await response(scope, receive, send)


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, in bursts of as many."""

    def __init__(
        self,
        per_minute: int,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 10_000,
    ) -> None:
        if per_minute <= 0:
            raise ValueError(f"rate_per_minute: {per_minute}, expected > 0")
        self.capacity = float(per_minute)
        self.rate_s = per_minute / 60.0
        self._clock = clock
        self._max_keys = max_keys
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """0 when the request may go now (a token is taken), else the seconds until it may."""
        now = self._clock()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self._max_keys:  # forget the oldest: it starts full again
                del self._buckets[next(iter(self._buckets))]
            bucket = self._buckets[key] = _Bucket(self.capacity, now)
        bucket.tokens = min(self.capacity, bucket.tokens + (now - bucket.at) * self.rate_s)
        bucket.at = now
        if bucket.tokens >= 1:
            bucket.tokens -= 1
            return 0.0
        return (1 - bucket.tokens) / self.rate_s


def presented_key(headers: Headers) -> str | None:
    """The key of ``Authorization: Bearer <key>`` or ``X-API-Key: <key>``."""
    scheme, _, token = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer" and token.strip():
        return token.strip()
    return headers.get("x-api-key") or None


class KeyGuard:
    """Static API keys (when any are configured) and a per-key rate limit, on every path
    but :data:`OPEN_PATHS`, for HTTP and WebSocket alike."""

    def __init__(self, app: ASGIApp, *, keys: Sequence[str], limiter: RateLimiter | None) -> None:
        self.app = app
        self.keys = [key.encode() for key in keys if key]
        self.limiter = limiter

    def _known(self, key: str | None) -> bool:
        if key is None:
            return False
        given = key.encode()
        matches = [hmac.compare_digest(given, known) for known in self.keys]  # no early exit
        return any(matches)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or scope["path"] in OPEN_PATHS:
            await self.app(scope, receive, send)
            return
        key = presented_key(Headers(scope=scope))
        if self.keys and not self._known(key):
            await _deny(scope, receive, send, _error_response(
                401, "unauthorized",
                "a known API key is needed: Authorization: Bearer <key> or X-API-Key: <key>",
                {"www-authenticate": "Bearer"},
            ))  # fmt: skip
            return
        if self.limiter is not None:
            client = scope.get("client")
            wait = self.limiter.take(
                f"key:{key}" if self.keys else f"ip:{client[0] if client else '?'}"
            )
            if wait > 0:
                retry = max(1, math.ceil(wait))
                await _deny(scope, receive, send, _error_response(
                    429, "rate_limited", f"too many requests for this key; retry in {retry} s",
                    {"retry-after": str(retry)},
                ))  # fmt: skip
                return
        await self.app(scope, receive, send)


async def _deny(scope: Scope, receive: Receive, send: Send, response: JSONResponse) -> None:
    if scope["type"] == "http":
        await response(scope, receive, send)
        return
    websocket = WebSocket(scope, receive, send)
    if "websocket.http.response" in scope.get("extensions", {}):
        await websocket.send_denial_response(response)
    else:  # the server cannot send a denial: close before the handshake completes
        await websocket.close(code=1008)


class BodyLimit:
    """413 for a request body larger than ``max_bytes``: from its Content-Length before
    reading anything, else as soon as the bytes received pass the limit."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.max_bytes} bytes"
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await _error_response(413, "content_too_large", message)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            got = await receive()
            if got["type"] == "http.request":
                received += len(got.get("body", b""))
                if received > self.max_bytes:
                    raise ApiError(
                        413, "content_too_large", message
                    )  # FastAPI re-raises it to the handler
            return got

        await self.app(scope, limited, send)


# -- routes -------------------------------------------------------------------------------


def _service(connection: HTTPConnection) -> AgentService:
    service: AgentService = connection.app.state.service
    return service


ServiceDep = Annotated[AgentService, Depends(_service)]


def _sse(event: dict[str, Any]) -> bytes:
    data = msgspec.json.encode(event).decode()
    return f"id: {event['seq']}\nevent: {event['kind']}\ndata: {data}\n\n".encode()


async def _event_stream(events: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    async for event in events:
        yield _sse(event)


def _runs_router() -> APIRouter:
    router = APIRouter(prefix="/api/v1", tags=["runs"])

    @router.post(
        "/runs", status_code=201, response_model=Run, responses=_documented(400, 401, 413, 422, 429)
    )
    async def submit_run(body: RunRequest, service: ServiceDep) -> dict[str, Any]:
        """Plan the prompt (or check the plan), store the run and start it."""
        return await service.submit(body.prompt, plan=body.plan)

    @router.get("/runs", response_model=RunPage, responses=_documented(400, 401, 422, 429))
    async def list_runs(
        service: ServiceDep,
        status: Annotated[RunState | None, Query(description="only runs in this state")] = None,
        created_after: Annotated[float | None, Query(description="epoch seconds, inclusive")] = (
            None
        ),
        created_before: Annotated[float | None, Query(description="epoch seconds")] = None,
        cursor: Annotated[str | None, Query(description="next_cursor of a page")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """Runs, newest first, a page at a time."""
        try:
            runs, next_cursor = await service.list_runs(
                status=status, since=created_after, until=created_before, cursor=cursor,
                limit=limit,
            )  # fmt: skip
        except ValueError as exc:  # a cursor this server did not give out
            raise ApiError(400, "bad_cursor", str(exc)) from None
        return {"runs": runs, "next_cursor": next_cursor}

    @router.get("/runs/{run_id}", response_model=Run, responses=_documented(401, 404, 429))
    async def get_run(run_id: str, service: ServiceDep) -> dict[str, Any]:
        """One run with its steps."""
        return await service.get(run_id)

    @router.post(
        "/runs/{run_id}/restart", response_model=Run, responses=_documented(401, 404, 409, 429)
    )
    async def restart_run(
        run_id: str,
        service: ServiceDep,
        rerun_unknown: Annotated[
            bool, Query(description="call again the steps whose outcome is unknown")
        ] = False,
    ) -> dict[str, Any]:
        """Run again the steps of a finished run that have not succeeded."""
        return await service.restart(run_id, rerun_unknown=rerun_unknown)

    @router.post(
        "/runs/{run_id}/cancel", response_model=Run, responses=_documented(401, 404, 409, 429)
    )
    async def cancel_run(run_id: str, service: ServiceDep) -> dict[str, Any]:
        """Cancel a run that has not finished."""
        return await service.cancel(run_id)

    @router.get(
        "/runs/{run_id}/events",
        response_class=StreamingResponse,
        responses={
            200: {
                "description": "Server-sent events: `event: <kind>`, `id: <seq>`, `data: "
                "<Event JSON>`; the stream ends when the run has finished.",
                "content": {"text/event-stream": {"schema": Event.model_json_schema()}},
            },
            **_documented(401, 404, 429),
        },
    )
    async def run_events(
        run_id: str,
        service: ServiceDep,
        after: Annotated[int, Query(ge=0, description="the events after this seq")] = 0,
        last_event_id: Annotated[
            int | None, Header(ge=0, description="resume after this seq (wins over after)")
        ] = None,
    ) -> StreamingResponse:
        """The run's events as server-sent events, live, until the run has finished."""
        await service.get(run_id)  # 404 before the stream starts
        start = after if last_event_id is None else last_event_id
        return StreamingResponse(
            _event_stream(service.follow(run_id, start)),
            media_type="text/event-stream",
            headers={"x-accel-buffering": "no"},
        )

    @router.get("/tools", response_model=list[ToolInfo], tags=["tools"],
                responses=_documented(401, 429))  # fmt: skip
    async def list_tools(service: ServiceDep) -> list[dict[str, Any]]:
        """Every registered tool version, its schemas, policies and metrics."""
        return service.tools()

    return router


async def _pump(websocket: WebSocket, events: AsyncIterator[dict[str, Any]]) -> None:
    async for event in events:
        await websocket.send_text(msgspec.json.encode(event).decode())


async def _until_disconnect(websocket: WebSocket) -> None:
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def run_updates(websocket: WebSocket, run_id: str, after: int = 0) -> None:
    """``/ws/runs/{id}``: each event of the run as a JSON text message, then a close (1000)
    once the run has finished; 4404 when there is no such run."""
    service = _service(websocket)
    await websocket.accept()  # then a close code the client can read
    try:
        await service.get(run_id)
    except RunNotFound as exc:
        await websocket.close(code=4404, reason=str(exc)[:120])
        return
    pump = asyncio.create_task(_pump(websocket, service.follow(run_id, after)))
    gone = asyncio.create_task(_until_disconnect(websocket))
    try:
        done, _ = await asyncio.wait({pump, gone}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for task in (pump, gone):
            task.cancel()
        await asyncio.gather(pump, gone, return_exceptions=True)
    if pump not in done:  # the client went away first
        return
    failure = pump.exception()
    if failure is None:
        await websocket.close(code=1000)
    elif not isinstance(failure, WebSocketDisconnect):
        raise failure


_DESCRIPTION = """\
Every route but `/health` needs `Authorization: Bearer <key>` or `X-API-Key: <key>` when
`agents.api_keys` is set (401 otherwise); past its rate limit a key gets 429 with
`Retry-After`. Errors are `{"error": {"type", "message"}}`.

**WebSocket** `GET /ws/runs/{run_id}?after=<seq>` (the key in a header as well): each
event of the run (`{"seq", "kind", "data", "at"}`) as a JSON text message, then a close
with code 1000 once the run has finished, or 4404 when there is no such run.
"""


# -- the app ------------------------------------------------------------------------------


def _build(
    settings: AgentSettings,
    *,
    rate_per_minute: int | None,
    clock: Callable[[], float] = time.monotonic,
    lifespan: Callable[[FastAPI], Any] | None = None,
) -> FastAPI:
    app = FastAPI(
        title="llmrelay agents",
        version="1",
        summary="Prompt → plan → durable tool runs: submit, follow, restart, cancel.",
        description=_DESCRIPTION,
        lifespan=lifespan,
    )
    app.include_router(_runs_router())
    app.add_api_websocket_route("/ws/runs/{run_id}", run_updates)

    @app.get("/health", response_model=Health, tags=["health"])
    async def health() -> Health:
        """The process answers (no key needed)."""
        return Health()

    for cls in ERRORS:
        app.add_exception_handler(cls, _agent_error)
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    # add_middleware wraps what was added before: the last one is the outermost
    app.add_middleware(BodyLimit, max_bytes=settings.max_body_bytes)
    limiter = RateLimiter(rate_per_minute, clock=clock) if rate_per_minute else None
    app.add_middleware(KeyGuard, keys=settings.api_keys, limiter=limiter)
    app.add_middleware(ErrorShield)
    app.add_middleware(SecurityHeaders)
    return app


def create_app(
    service: AgentService,
    *,
    rate_per_minute: int | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> FastAPI:
    """The API of ``service``, which the caller opens and closes; ``clock`` paces the rate
    limit (tests pass a fake one)."""
    app = _build(service.settings, rate_per_minute=rate_per_minute, clock=clock)
    app.state.service = service
    return app


def create_owned_app(service: AgentService, *, rate_per_minute: int | None = None) -> FastAPI:
    """An app that owns ``service``: its lifespan starts it and closes it once."""

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with service:
            app.state.service = service
            try:
                yield
            finally:
                del app.state.service

    return _build(service.settings, rate_per_minute=rate_per_minute, lifespan=lifespan)


async def serve(
    service: AgentService,
    *,
    host: str = "127.0.0.1",
    port: int = 8920,
    rate_per_minute: int | None = None,
    sockets: list[socket] | None = None,
) -> None:
    """Serve the API until interrupted; ``service`` is started with the server and closed
    with it."""
    import uvicorn

    app = create_owned_app(service, rate_per_minute=rate_per_minute)
    config = uvicorn.Config(
        app, host=host, port=port, lifespan="on", access_log=False,
        timeout_graceful_shutdown=10,
    )  # fmt: skip
    await uvicorn.Server(config).serve(sockets=sockets)


__all__ = [
    "ERRORS",
    "ApiError",
    "BodyLimit",
    "ErrorKind",
    "ErrorShield",
    "KeyGuard",
    "RateLimiter",
    "RunRequest",
    "SecurityHeaders",
    "classify",
    "create_app",
    "create_owned_app",
    "error_body",
    "presented_key",
    "serve",
]
