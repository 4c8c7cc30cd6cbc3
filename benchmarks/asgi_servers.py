"""Which server and framework the gateway runs on: the same endpoint on each, under wrk.

The endpoint is what a proxy does around its upstream call: read a JSON chat body, decode
it with msgspec, answer a small JSON body. It is served by

- a bare ASGI callable on uvicorn (httptools, uvloop);
- Starlette, then FastAPI (a ``Request`` in, a ``Response`` out, no pydantic model), on
  the same uvicorn;
- the bare ASGI callable on granian (``.bench-venv``), and granian's own RSGI interface
  as the ceiling of that server.

Each server runs alone on one core, wrk (64 connections, closed loop) on the other. Rounds
alternate between the servers so that a drift of the machine falls on all of them; the
figures are medians over rounds. A round in which other processes used more than
``BENCH_NOISE`` (10 %) of a core is run again (up to three times, the quietest kept). CPU per
request is the server's CPU time over the requests it answered.

``python -m benchmarks.asgi_servers`` runs it; this module imports only msgspec at the top,
so the servers can import it from either venv.
"""

from __future__ import annotations

import os
import statistics
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).parents[1]
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
ROUNDS = int(os.environ.get("BENCH_SERVER_ROUNDS", "3"))
CONNECTIONS = 64
PATH = "/v1/chat/completions"
BODY = msgspec.json.encode(
    {
        "model": "default",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "Summarise a heist film in one sentence."}],
    }
)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class ChatMessage(msgspec.Struct):
    role: str
    content: str


class ChatBody(msgspec.Struct):
    model: str
    messages: list[ChatMessage]
    max_tokens: int | None = None


class Usage(msgspec.Struct):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class Answer(msgspec.Struct):
    id: str
    model: str
    content: str
    usage: Usage
    object: str = "chat.completion"


DECODER = msgspec.json.Decoder(ChatBody)
ENCODER = msgspec.json.Encoder()
HEADERS = [(b"content-type", b"application/json")]


def answer(raw: bytes) -> bytes:
    """The work every variant does: decode the request, encode a small answer."""
    chat = DECODER.decode(raw)
    words = sum(len(m.content.split()) for m in chat.messages)
    return ENCODER.encode(
        Answer(
            id="chatcmpl-bench",
            model=chat.model,
            content="A crew robs a casino.",
            usage=Usage(words, 5, words + 5),
        )
    )


async def bare_app(scope: Scope, receive: Receive, send: Send) -> None:
    """The endpoint as a bare ASGI callable (it answers every path)."""
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    out = answer(b"".join(chunks))
    await send({"type": "http.response.start", "status": 200,
                "headers": [*HEADERS, (b"content-length", str(len(out)).encode())]})  # fmt: skip
    await send({"type": "http.response.body", "body": out})


async def rsgi_app(scope: Any, protocol: Any) -> None:
    """The endpoint on granian's RSGI interface (granian's own, faster than ASGI)."""
    out = answer(await protocol())
    protocol.response_bytes(200, [("content-type", "application/json")], out)


def starlette_app() -> Any:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    async def chat(request: Request) -> Response:
        return Response(answer(await request.body()), media_type="application/json")

    return Starlette(routes=[Route(PATH, chat, methods=["POST"])])


def fastapi_app() -> Any:
    from fastapi import FastAPI, Request, Response

    async def chat(request: Request) -> Response:
        return Response(answer(await request.body()), media_type="application/json")

    # FastAPI injects by annotation; with postponed annotations these would be strings it
    # resolves in the module's globals, where the lazily imported names are not.
    chat.__annotations__ = {"request": Request, "return": Response}
    app = FastAPI()
    app.post(PATH)(chat)
    return app


# -- the measurement ------------------------------------------------------------------------


@dataclass(frozen=True)
class Variant:
    name: str
    python: Path
    argv: list[str]
    """Arguments after the interpreter; ``{port}`` is replaced."""


def _uvicorn(target: str, *, factory: bool = False) -> list[str]:
    return ["-m", "uvicorn", target, *(["--factory"] if factory else []), "--host", "127.0.0.1",
            "--port", "{port}", "--loop", "uvloop", "--http", "httptools", "--no-access-log",
            "--log-level", "warning", "--lifespan", "off"]  # fmt: skip


def _granian(target: str, interface: str) -> list[str]:
    return ["-m", "granian", target, "--interface", interface, "--host", "127.0.0.1",
            "--port", "{port}", "--loop", "uvloop", "--http", "1", "--no-ws", "--workers", "1",
            "--runtime-threads", "1", "--log-level", "warning", "--no-access-log"]  # fmt: skip


MAIN_PYTHON = Path(sys.executable)
BENCH_PYTHON = ROOT / ".bench-venv" / "bin" / "python"
VARIANTS = [
    Variant("bare ASGI on uvicorn", MAIN_PYTHON, _uvicorn("benchmarks.asgi_servers:bare_app")),
    Variant(
        "Starlette on uvicorn",
        MAIN_PYTHON,
        _uvicorn("benchmarks.asgi_servers:starlette_app", factory=True),
    ),
    Variant(
        "FastAPI on uvicorn",
        MAIN_PYTHON,
        _uvicorn("benchmarks.asgi_servers:fastapi_app", factory=True),
    ),
    Variant(
        "bare ASGI on granian", BENCH_PYTHON, _granian("benchmarks.asgi_servers:bare_app", "asginl")
    ),
    Variant("RSGI on granian", BENCH_PYTHON, _granian("benchmarks.asgi_servers:rsgi_app", "rsgi")),
]


def _version(python: Path, package: str) -> str:
    import subprocess

    code = f"from importlib.metadata import version; print(version({package!r}))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


def measure(variant: Variant, client: int, server: int) -> dict[str, float]:
    """One round: wrk's req/s, p50 and p99, and the server's CPU µs per request."""
    from benchmarks.gateway_wrk import OtherCpu, Server, cpu_seconds, free_port, wrk

    port = free_port()
    argv = [str(variant.python), *(a.replace("{port}", str(port)) for a in variant.argv)]
    url = f"http://127.0.0.1:{port}{PATH}"
    with Server(variant.name, argv, core=server, probe=(url, BODY)) as proc:
        wrk(url, BODY, connections=CONNECTIONS, seconds=1, core=client)  # warm-up
        others = OtherCpu(lambda: [proc.pid])
        cpu = cpu_seconds(proc.pid)
        others.start()
        result = wrk(url, BODY, connections=CONNECTIONS, seconds=SECONDS, core=client)
        cpu, busy = cpu_seconds(proc.pid) - cpu, others.share()
    if result.errors:
        raise RuntimeError(f"{variant.name}: {result.errors} errors under wrk")
    return {"rps": result.rps, "p50_ms": result.p50_ms, "p99_ms": result.p99_ms,
            "cpu_us": cpu / result.requests * 1e6, "others": busy}  # fmt: skip


def run() -> dict[str, dict[str, float]]:
    from benchmarks.gateway_wrk import cores, quietest, sigterm_unwinds

    client, server = cores()
    variants = [v for v in VARIANTS if v.python.exists()]
    rounds: dict[str, list[dict[str, float]]] = {v.name: [] for v in variants}
    with sigterm_unwinds():
        for i in range(ROUNDS):
            order = variants if i % 2 == 0 else variants[::-1]
            for variant in order:
                rounds[variant.name].append(quietest(partial(measure, variant, client, server)))
    return {
        name: {key: statistics.median(c[key] for c in cells) for key in cells[0]}
        for name, cells in rounds.items()
    }


def report(rows: dict[str, dict[str, float]]) -> None:
    print(f"wrk -t1 -c{CONNECTIONS} -d{SECONDS:g}s, POST {len(BODY)} B of JSON, answer decoded "
          f"and encoded with msgspec; server pinned to one core, wrk to the other; median of "
          f"{ROUNDS} alternating rounds")  # fmt: skip
    print(f"(uvicorn {_version(MAIN_PYTHON, 'uvicorn')}, starlette "
          f"{_version(MAIN_PYTHON, 'starlette')}, fastapi {_version(MAIN_PYTHON, 'fastapi')}, "
          f"granian {_version(BENCH_PYTHON, 'granian')})\n")  # fmt: skip
    base = next(iter(rows.values()))
    print("| server | req/s | ratio | p50 ms | p99 ms | CPU µs/req | others' CPU |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['rps']:,.0f} | {r['rps'] / base['rps']:.2f}x | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['cpu_us']:,.0f} | {r['others']:.0%} |")  # fmt: skip


if __name__ == "__main__":
    report(run())
