"""The pooled HTTP client: one timeout scope per call, one idle timer per stream.

Every test runs on looptime's fake loop clock against a real loopback server in the same
loop, so "seconds" below are the loop's and nothing depends on the machine's speed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
from aiohttp import web

from llmrelay.errors import ProviderUnavailable, StreamInterrupted, Timeout
from llmrelay.providers.http import HttpClient, Origin, Timeouts, WireRequest

pytestmark = pytest.mark.looptime

ORIGIN = Origin("test", "test/model")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Server:
    """Loopback servers for one test; ``hang`` holds their handlers until teardown."""

    def __init__(self) -> None:
        self.hang = asyncio.Event()
        self.runners: list[web.AppRunner] = []

    async def start(self, handler: Handler) -> str:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.runners.append(runner)
        return f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/"  # type: ignore[union-attr]  # started above

    def lines_then(self, gaps: list[float], *, then_hang: bool = False) -> Handler:
        """A streamed answer: one line after each gap (seconds), then the end or a hang."""

        async def handler(request: web.Request) -> web.StreamResponse:
            response = web.StreamResponse()
            await response.prepare(request)
            for n, gap in enumerate(gaps):
                await asyncio.sleep(gap)
                await response.write(f"line {n}\n".encode())
            if then_hang:
                await self.hang.wait()
            await response.write_eof()
            return response

        return handler


@pytest.fixture
async def server() -> AsyncIterator[Server]:
    made = Server()
    yield made
    made.hang.set()
    for runner in made.runners:
        await runner.cleanup()


async def read_all(client: HttpClient, url: str, idle: float, *, pause: float = 0.0) -> list[bytes]:
    wire = WireRequest(url=url, headers={}, body=b"{}")
    timeouts = Timeouts(connect=1.0, first_byte=30.0, idle=idle)
    out: list[bytes] = []
    async with client.open(wire, timeouts, ORIGIN) as response:
        async for line in response.lines():
            out.append(line)
            await asyncio.sleep(pause)
    return out


async def test_a_stream_whose_reads_each_wait_less_than_idle_completes(server: Server) -> None:  # fmt: skip
    """Lines 3 s apart under a 5-s idle timeout: 18 s in all, and no timeout."""
    url = await server.start(server.lines_then([3.0] * 6))
    loop = asyncio.get_running_loop()
    async with HttpClient() as client:
        started = loop.time()
        lines = await read_all(client, url, idle=5.0)
    assert lines == [f"line {n}".encode() for n in range(6)]
    assert loop.time() - started >= 18.0


async def test_a_stream_that_stalls_after_a_line_is_interrupted(server: Server) -> None:  # fmt: skip
    """A stream silent for longer than idle after its first line is a StreamInterrupted,
    raised once the idle time has passed since that read began."""
    url = await server.start(server.lines_then([0.0, 2.0], then_hang=True))
    loop = asyncio.get_running_loop()
    async with HttpClient() as client:
        with pytest.raises(StreamInterrupted, match=r"idle for more than 5\.0s"):
            await read_all(client, url, idle=5.0)
        assert loop.time() >= 7.0


async def test_a_stream_silent_from_the_start_is_a_timeout(server: Server) -> None:  # fmt: skip
    """No line at all within idle: a Timeout (nothing was delivered, so a retry is safe)."""
    url = await server.start(server.lines_then([], then_hang=True))
    async with HttpClient() as client:
        with pytest.raises(Timeout, match="idle"):
            await read_all(client, url, idle=5.0)


async def test_a_slow_reader_is_not_an_idle_stream(server: Server) -> None:  # fmt: skip
    """Time the caller spends between lines is not the provider's silence."""
    url = await server.start(server.lines_then([0.0] * 4))
    async with HttpClient() as client:
        lines = await read_all(client, url, idle=5.0, pause=12.0)
    assert len(lines) == 4


async def test_cancelling_a_reader_is_a_cancellation_not_a_timeout(server: Server) -> None:  # fmt: skip
    """A caller's own cancellation propagates as such, and leaves no timer behind."""
    url = await server.start(server.lines_then([0.0], then_hang=True))
    async with HttpClient() as client:
        task = asyncio.create_task(read_all(client, url, idle=50.0))
        await asyncio.sleep(1.0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not task.cancelling() or task.cancelled()


async def test_a_non_streamed_call_waits_for_the_head_within_first_byte(server: Server) -> None:  # fmt: skip
    """The head is waited for connect + first_byte seconds; then a Timeout."""

    async def hang(request: web.Request) -> web.StreamResponse:
        await server.hang.wait()
        return web.Response()

    url = await server.start(hang)
    loop = asyncio.get_running_loop()
    wire = WireRequest(url=url, headers={}, body=b"{}")
    async with HttpClient() as client:
        started = loop.time()
        with pytest.raises(Timeout, match=r"no response within 4\.0s"):
            await client.fetch(wire, Timeouts(connect=1.0, first_byte=4.0, idle=60.0), ORIGIN)
        assert loop.time() - started >= 5.0


async def test_a_body_that_stops_mid_way_times_out_on_idle(server: Server) -> None:  # fmt: skip
    """After the head, the body must keep coming within idle seconds."""

    async def half(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"content-length": "100"})
        await response.prepare(request)
        await response.write(b"x" * 10)
        await server.hang.wait()
        return web.Response()

    url = await server.start(half)
    wire = WireRequest(url=url, headers={}, body=b"{}")
    async with HttpClient() as client:
        with pytest.raises(Timeout, match=r"no data for 3\.0s reading the response"):
            await client.fetch(wire, Timeouts(connect=1.0, first_byte=60.0, idle=3.0), ORIGIN)


async def test_an_answer_keeps_its_headers_case_insensitive(server: Server) -> None:  # fmt: skip
    """Headers are looked up whatever their case, as converters expect."""

    async def answer(request: web.Request) -> web.StreamResponse:
        return web.Response(body=b"{}", headers={"X-RateLimit-Limit-Requests": "60"})

    url = await server.start(answer)
    wire = WireRequest(url=url, headers={}, body=b"{}")
    async with HttpClient() as client:
        got = await client.fetch(wire, Timeouts(), ORIGIN)
    assert got.status == 200 and got.body == b"{}"
    assert got.headers.get("x-ratelimit-limit-requests") == "60"


async def test_an_unreachable_server_is_unavailable() -> None:
    """A refused connection is ProviderUnavailable naming the URL."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    wire = WireRequest(url=f"http://127.0.0.1:{port}/x", headers={}, body=b"{}")
    async with HttpClient() as client:
        with pytest.raises(ProviderUnavailable, match=f"cannot reach http://127.0.0.1:{port}/x"):
            await client.fetch(wire, Timeouts(), ORIGIN)
