"""The simulator as one ASGI app serving every wire format on one port.

Besides the chat endpoints it serves what clients ask local servers about their models:
Ollama's ``POST /api/show`` and ``GET /api/tags``, vLLM's and llama.cpp's ``GET /v1/models``
(with ``max_model_len`` / ``meta.n_ctx_train``) and llama.cpp's ``GET /props``.

Every served call goes through the prompt cache of its key and model
(:mod:`llmrelay.simulator.caching`) and is billed once in the ledger at the model's
:class:`~llmrelay.catalog.Price`, per kind of token, in integer micro-dollars.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import parse_qsl

import msgspec

from llmrelay.errors import ConfigError
from llmrelay.simulator.caching import CacheUse, PromptCache
from llmrelay.simulator.config import Api, FaultKind, ModelSpec, SimulatorConfig
from llmrelay.simulator.engine import Engine, Prompt, Reply, SimRequest
from llmrelay.simulator.state import Admission, Ledger, Limiter, Quota, Refusal
from llmrelay.simulator.wire.anthropic import AnthropicWire
from llmrelay.simulator.wire.base import BadInput, ErrorContext, ErrorKind, Headers, WireApi
from llmrelay.simulator.wire.gemini import GeminiWire
from llmrelay.simulator.wire.local import KEYLESS, LOCAL_KEY, llamacpp_props, ollama_show
from llmrelay.simulator.wire.ollama import OllamaWire
from llmrelay.simulator.wire.openai import OpenAIWire
from llmrelay.types import Usage

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]
Handler = Callable[["_Call"], Awaitable[None]]

_encode = msgspec.json.Encoder().encode
_STREAM_FAULTS: frozenset[FaultKind] = frozenset({"stream_error", "stream_cut"})
_ERROR_FAULTS: dict[FaultKind, ErrorKind] = {
    "500": ErrorKind.SERVER_ERROR,
    "503": ErrorKind.UNAVAILABLE,
    "overloaded": ErrorKind.OVERLOADED,
    "rate_limit": ErrorKind.RATE_LIMIT,
}


class DroppedConnection(Exception):
    """Raised inside a response to make the server close the connection mid-answer."""


class DropFilter(logging.Filter):
    """Keeps the server's error log free of the connections dropped on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, DroppedConnection)


def install_log_filter() -> None:
    """Silence tracebacks of deliberate ``disconnect`` faults in uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, DropFilter) for f in logger.filters):
        logger.addFilter(DropFilter())


@dataclass(slots=True)
class _Call:
    """One HTTP request on its way through the simulator."""

    scope: Scope
    receive: Receive
    send: Send
    path: dict[str, str]

    @property
    def headers(self) -> dict[str, str]:
        return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in self.scope["headers"]}

    @property
    def query(self) -> dict[str, str]:
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    async def body(self) -> bytes:
        chunks = []
        while True:
            message = await self.receive()
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)

    async def gone(self, event: asyncio.Event) -> None:
        """Set ``event`` when the client disconnects (call once the body has been read)."""
        while (await self.receive())["type"] != "http.disconnect":
            pass
        event.set()

    async def start(self, status: int, content_type: str, headers: Headers = ()) -> None:
        raw = [(b"content-type", content_type.encode())]
        raw += [(k.encode(), v.encode()) for k, v in headers]
        await self.send({"type": "http.response.start", "status": status, "headers": raw})

    async def chunk(self, data: bytes, more: bool = True) -> None:
        await self.send({"type": "http.response.body", "body": data, "more_body": more})

    async def respond(self, status: int, body: Any, headers: Headers = ()) -> None:
        payload = body if isinstance(body, bytes) else _encode(body)
        await self.start(
            status, "application/json", [*headers, ("content-length", str(len(payload)))]
        )
        await self.chunk(payload, more=False)


class Simulator:
    """Serves OpenAI, Anthropic, Gemini and Ollama wire formats for the configured models.

    ``clock`` (monotonic seconds) drives latency, minute buckets, short windows and the
    lifetime of prompt-cache entries; ``wall`` (epoch seconds) says which day it is for
    requests-per-day limits.
    """

    def __init__(
        self,
        config: SimulatorConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._initial = config
        self.config = config
        self._clock = clock
        self.engine = Engine()
        self.limiter = Limiter(clock, wall)
        self.ledger = Ledger()
        self.prompt_cache = PromptCache(clock)
        self._rng = random.Random(config.seed)
        self._next_id = 0
        openai, anthropic, gemini, ollama = (
            OpenAIWire(),
            AnthropicWire(),
            GeminiWire(),
            OllamaWire(),
        )
        chat = self._chat
        gemini_model = r"/v1(?:beta)?/models/(?P<model>[^/:]+):(?P<method>\w+)"
        self._routes: list[tuple[str, re.Pattern[str], Handler]] = [
            ("POST", re.compile(r"/v1/chat/completions"), lambda c: chat(openai, c)),
            ("POST", re.compile(r"/v1/messages"), lambda c: chat(anthropic, c)),
            ("POST", re.compile(gemini_model), lambda c: chat(gemini, c)),
            ("POST", re.compile(r"/api/chat"), lambda c: chat(ollama, c)),
            ("GET", re.compile(r"/v1/models"), self._list_v1_models(openai, anthropic)),
            ("GET", re.compile(r"/v1(?:beta)?/models"), self._models(gemini)),
            ("GET", re.compile(r"/api/tags"), self._models(ollama)),
            ("POST", re.compile(r"/api/show"), self._show),
            ("GET", re.compile(r"/props"), self._props),
            ("GET", re.compile(r"/_sim/ledger"), self._ledger),
            ("POST", re.compile(r"/_sim/reset"), self._reset),
            ("GET", re.compile(r"/_sim/config"), self._get_config),
            ("POST", re.compile(r"/_sim/config"), self._set_config),
            ("GET", re.compile(r"/_sim/health"), self._health),
        ]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        if scope["type"] != "http":
            return
        method, path = scope["method"], scope["path"]
        allowed = False
        for route_method, pattern, handler in self._routes:
            match = pattern.fullmatch(path)
            if match is None:
                continue
            if route_method == method:
                await handler(_Call(scope, receive, send, match.groupdict()))
                return
            allowed = True
        call = _Call(scope, receive, send, {})
        if allowed:
            await call.respond(405, {"error": {"message": f"method {method} not allowed"}})
        else:
            await call.respond(404, {"error": {"message": f"no route for {method} {path}"}})

    # -- control endpoints -------------------------------------------------------------

    async def _ledger(self, call: _Call) -> None:
        await call.respond(200, self.ledger.report())

    async def _reset(self, call: _Call) -> None:
        """Forget usage, buckets, cached prompts and run-time config changes; reseed the
        fault draws."""
        self.config = self._initial
        self.ledger.reset()
        self.limiter.reset()
        self.prompt_cache.reset()
        self._rng.seed(self.config.seed)
        await call.respond(200, {"status": "reset"})

    async def _get_config(self, call: _Call) -> None:
        await call.respond(200, self.config.model_dump(mode="json"))

    async def _set_config(self, call: _Call) -> None:
        try:
            patch = msgspec.json.decode(await call.body())
            if not isinstance(patch, dict):
                raise ConfigError("the body must be a JSON object")
            self.config = self.config.patched(patch)
        except msgspec.DecodeError as exc:
            await call.respond(400, {"error": {"message": f"invalid JSON: {exc}"}})
            return
        except ConfigError as exc:
            await call.respond(422, {"error": {"message": str(exc)}})
            return
        await call.respond(200, self.config.model_dump(mode="json"))

    async def _health(self, call: _Call) -> None:
        await call.respond(200, {"status": "ok", "models": len(self.config.models)})

    def _models(self, wire: WireApi) -> Handler:
        async def handler(call: _Call) -> None:
            await call.respond(200, wire.models(list(self.config.models)))

        return handler

    async def _show(self, call: _Call) -> None:
        """Ollama's ``POST /api/show``: details, architecture and context length of a model."""
        try:
            body = msgspec.json.decode(await call.body())
        except msgspec.DecodeError:
            await call.respond(400, {"error": "invalid character in request body"})
            return
        name = body.get("model") or body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name:
            await call.respond(400, {"error": "model is required"})
            return
        spec = self.config.model(name)
        if spec is None or spec.api != "ollama":
            await call.respond(404, {"error": f"model '{name}' not found"})
            return
        await call.respond(200, ollama_show(spec))

    async def _props(self, call: _Call) -> None:
        """llama.cpp's ``GET /props`` (``?model=`` picks one of several llama.cpp models)."""
        wanted = call.query.get("model")
        specs = [s for s in self.config.models if s.api == "llamacpp"]
        spec = next((s for s in specs if wanted in (None, s.name)), None)
        if spec is None:
            message = f"model '{wanted}' not found" if wanted else "no llama.cpp model is loaded"
            await call.respond(
                404, {"error": {"code": 404, "message": message, "type": "not_found_error"}}
            )
            return
        await call.respond(200, llamacpp_props(spec))

    def _list_v1_models(self, openai: WireApi, anthropic: WireApi) -> Handler:
        async def handler(call: _Call) -> None:
            headers = call.headers
            wire = anthropic if "anthropic-version" in headers or "x-api-key" in headers else openai
            await call.respond(200, wire.models(list(self.config.models)))

        return handler

    # -- chat ----------------------------------------------------------------------------

    def _response_id(self, prefix: str) -> str:
        self._next_id += 1
        return f"{prefix}{self._next_id:012d}"

    def _draw_fault(self, spec: ModelSpec, stream: bool) -> FaultKind | None:
        if not spec.faults:
            return None
        roll = self._rng.random()
        for kind, probability in spec.faults.items():
            roll -= probability
            if roll < 0:
                return None if kind in _STREAM_FAULTS and not stream else kind
        return None

    async def _fail(
        self,
        wire: WireApi,
        call: _Call,
        kind: ErrorKind,
        ctx: ErrorContext,
        headers: Headers = (),
    ) -> None:
        error = wire.error(kind, ctx)
        await call.respond(error.status, error.body, [*headers, *error.headers])

    def _parse(
        self, wire: WireApi, raw: bytes, call: _Call
    ) -> tuple[SimRequest | None, ErrorContext | None]:
        try:
            return wire.parse(msgspec.json.decode(raw), call.path, call.query), None
        except msgspec.DecodeError:
            return None, ErrorContext(message="We could not parse the JSON body of your request.")
        except BadInput as exc:
            return None, ErrorContext(message=str(exc))

    async def _chat(self, wire: WireApi, call: _Call) -> None:
        raw = await call.body()
        key = wire.api_key(call.headers, call.query) or wire.missing_key()
        request, problem = self._parse(wire, raw, call)
        spec = self.config.model(request.model) if request is not None else None
        api: Api | Literal[""] = spec.api if spec is not None else ""
        if key is None and api in KEYLESS:  # vLLM and llama.cpp check no key unless given one
            key = LOCAL_KEY
        if key is None:
            self.ledger.refused("(none)", call.path.get("model", ""), "401")
            await self._fail(wire, call, ErrorKind.AUTH_MISSING, ErrorContext(api=api))
            return
        if key.startswith("invalid-"):
            self.ledger.refused(key, call.path.get("model", ""), "401")
            ctx = ErrorContext(message=key, api=api)
            await self._fail(wire, call, ErrorKind.AUTH_INVALID, ctx)
            return
        if request is None:
            await self._fail(wire, call, ErrorKind.BAD_REQUEST, problem or ErrorContext())
            return
        if spec is None or spec.api not in wire.serves:
            self.ledger.refused(key, request.model, "404")
            await self._fail(wire, call, ErrorKind.NOT_FOUND, ErrorContext(model=request.model))
            return
        await self._serve(wire, call, key, spec, request)

    async def _serve(
        self, wire: WireApi, call: _Call, key: str, spec: ModelSpec, request: SimRequest
    ) -> None:
        model = spec.name
        prompt = self.engine.prompt(request)
        input_tokens = prompt.tokens
        asked = request.max_tokens or 0
        ctx = ErrorContext(model=model, input_tokens=input_tokens, max_tokens=asked, api=spec.api)
        if asked > spec.max_output_tokens:
            ctx.limit = spec.max_output_tokens
            self.ledger.refused(key, model, "400")
            await self._fail(wire, call, ErrorKind.MAX_TOKENS, ctx)
            return
        if spec.api == "llamacpp":  # llama.cpp checks the prompt, then generates until n_ctx
            room = spec.context_window - input_tokens
            request.max_tokens = min(request.max_tokens or room, room) if room > 0 else None
        if input_tokens + (0 if spec.api == "llamacpp" else asked) > spec.context_window:
            ctx.limit = spec.context_window
            self.ledger.refused(key, model, "400")
            await self._fail(wire, call, ErrorKind.CONTEXT, ctx)
            return
        quota = self._quota(spec)
        admitted = self.limiter.admit(key, model, quota, input_tokens, asked)
        if isinstance(admitted, Refusal):
            ctx.refusal = admitted
            self.ledger.limited(key, model, admitted)
            window = wire.limit_headers(self.limiter.window(key, model, quota))
            await self._fail(wire, call, ErrorKind.RATE_LIMIT, ctx, window)
            return
        await self._answer(wire, call, key, spec, request, prompt, ctx, quota, admitted)

    def _quota(self, spec: ModelSpec) -> Quota:
        return Quota(
            rpm=spec.rpm,
            tpm=spec.tpm,
            itpm=spec.itpm,
            otpm=spec.otpm,
            rpd=spec.rpd,
            window_s=self.config.window_s(spec),
            day_zone=spec.day_zone,
        )

    async def _answer(
        self,
        wire: WireApi,
        call: _Call,
        key: str,
        spec: ModelSpec,
        request: SimRequest,
        prompt: Prompt,
        ctx: ErrorContext,
        quota: Quota,
        admitted: Admission,
    ) -> None:
        """Answer an admitted request (or fail it with a drawn fault) and bill it.

        The limit headers are taken after the unused tokens went back, as the provider
        reports its buckets when it answers. A call failed by an error fault neither uses
        the prompt cache nor is billed; a stream cut by a fault was processed (its prompt
        read and written the cache) and is billed its whole prompt and the output tokens
        delivered before the cut.
        """
        model, input_tokens, asked = spec.name, ctx.input_tokens, ctx.max_tokens
        fault = self._draw_fault(spec, request.stream)
        if fault == "slow":  # the latency tail: a normal answer, late
            await asyncio.sleep(self.config.slow_s)
            fault = None
        if fault is not None and fault not in _STREAM_FAULTS:
            self.limiter.give_back(admitted, input_tokens, asked)
            self.ledger.refused(key, model, f"fault:{fault}")
            headers = wire.limit_headers(self.limiter.window(key, model, quota))
            await self._inject(wire, call, fault, ctx, headers, request.stream)
            return
        cached = self._use_cache(key, spec, prompt)
        reply = self.engine.reply(request, spec, self.config.scripts, input_tokens)
        reply.cached_tokens, reply.cache_write_tokens = cached.read, cached.write
        # Unused max_tokens comes back; without max_tokens the output is charged now.
        self.limiter.give_back(admitted, 0, asked - reply.output_tokens)
        limit_headers = wire.limit_headers(self.limiter.window(key, model, quota))
        if request.stream:
            left = asyncio.Event()
            watcher = asyncio.ensure_future(call.gone(left))
            try:
                delivered = await self._stream(wire, call, spec, request, reply, fault,
                                               limit_headers, left)  # fmt: skip
            finally:
                watcher.cancel()
            if fault is not None:
                self.ledger.refused(key, model, f"fault:{fault}")
            if left.is_set() and delivered < reply.output_tokens:
                self.ledger.refused(key, model, "499")
        else:
            await self._sleep(
                spec.ttft_ms / 1000 + self._generation_time(spec, reply.output_tokens)
            )
            body = wire.render(request, reply, self._response_id("msg_sim_"))
            await call.respond(200, body, limit_headers)
            delivered = reply.output_tokens
        usage = Usage(
            input_tokens=input_tokens,
            output_tokens=delivered,
            cached_input_tokens=cached.read,
            cache_write_input_tokens=cached.write,
        )
        self.ledger.served(key, model, usage, spec.price().micros(usage))

    def _use_cache(self, key: str, spec: ModelSpec, prompt: Prompt) -> CacheUse:
        """Read and write the prompt cache of ``key`` and ``spec`` for one served call."""
        if not spec.caches_prompts:
            return CacheUse()
        cache = self.prompt_cache
        method = cache.breakpoints if spec.api == "anthropic" else cache.prefixes
        return method(
            key,
            spec.name,
            prompt,
            minimum=spec.min_cacheable,
            ttl=spec.cache_ttl,
            delay=spec.ttft_ms / 1000,
        )

    async def _inject(
        self,
        wire: WireApi,
        call: _Call,
        fault: FaultKind,
        ctx: ErrorContext,
        headers: Headers,
        stream: bool,
    ) -> None:
        if fault in _ERROR_FAULTS:
            await self._fail(wire, call, _ERROR_FAULTS[fault], ctx, headers)
        elif fault == "timeout":
            await asyncio.sleep(self.config.hang_s)
            await self._fail(wire, call, ErrorKind.UNAVAILABLE, ctx, headers)
        elif fault == "malformed" and stream:
            await call.start(200, wire.stream_content_type, headers)
            await call.chunk(b'data: {"id": "broken", "choices": [{"delta": \n\n', more=False)
        elif fault == "malformed":
            await call.respond(
                200, b'{"id": "broken", "choices": [{"message": {"content": "', headers
            )
        else:  # disconnect
            await call.start(200, "application/json", headers)
            raise DroppedConnection(f"fault injected: {fault}")

    @staticmethod
    def _generation_time(spec: ModelSpec, tokens: int) -> float:
        return tokens / spec.tokens_per_s if spec.tokens_per_s else 0.0

    @staticmethod
    async def _sleep(seconds: float) -> None:
        if seconds > 0:
            await asyncio.sleep(seconds)

    async def _stream(
        self,
        wire: WireApi,
        call: _Call,
        spec: ModelSpec,
        request: SimRequest,
        reply: Reply,
        fault: FaultKind | None,
        headers: Headers,
        left: asyncio.Event,
    ) -> int:
        """Send the answer as the wire's stream; return how many output tokens went out.

        A client that disconnects stops the generation, as the providers do: it is billed
        the prompt and the output generated until then (counted as ``refused["499"]``)."""
        writer = wire.stream(request, reply, self._response_id("msg_sim_"))
        pieces = reply.pieces
        stop_at = len(pieces) // 2 if fault in _STREAM_FAULTS else len(pieces)
        await self._sleep(spec.ttft_ms / 1000)
        await call.start(200, wire.stream_content_type, [*headers, ("cache-control", "no-cache")])
        buffer = writer.opening()
        started = self._clock()
        for i, piece in enumerate(pieces[:stop_at]):
            due = started + self._generation_time(spec, i)
            if due > self._clock() + 0.001:
                await call.chunk(buffer)
                buffer = b""
                await asyncio.sleep(due - self._clock())
            if left.is_set():
                return min(reply.output_tokens, i)
            buffer += writer.text(piece)
        if fault == "stream_error":
            buffer += writer.error()
        elif fault is None:
            await self._sleep(started + self._generation_time(spec, len(pieces)) - self._clock())
            buffer += writer.closing()
        await call.chunk(buffer, more=False)
        return reply.output_tokens if fault is None else stop_at
