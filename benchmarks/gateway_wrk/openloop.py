"""An open-loop, paired load generator: at each tick, one request to every target at once.

Ticks are spaced 1/rate apart whatever the answers do (open loop: a slow server gets the
same arrivals, it does not slow the load down). At a tick the same request is written to
each target back to back, on a kept-alive connection of its own, the first target and the
second taking turns to go first; each latency is measured from its own write to the end
of its own answer, read in the protocol's callback. With a direct target and a proxy, the
per-tick difference is the latency the proxy added to that very request.

It uses uvloop and httptools (no HTTP client library), runs in a process of its own,
pinned by the caller, and reports how late it sent (``lag``): late ticks mean the
generator, not the servers, was the bottleneck.

``python -m benchmarks.gateway_wrk.openloop SPEC_JSON`` writes one JSON object to the
spec's ``out`` file: ``latencies_ms`` per target (``null`` for a failed request),
``errors`` per target, a sample of the first error, ``sent`` (measured; ``total`` with
the warm-up), the ``rate`` it kept, ``lag_p50_ms``, ``lag_p99_ms``, and ``cpu_share``,
the share of a core it used.
"""

from __future__ import annotations

import asyncio
import collections
import json
import resource
import socket
import sys
import time
from typing import Any, cast

import httptools
import msgspec
import uvloop


class Target(msgspec.Struct):
    host: str
    port: int
    path: str
    body: str
    headers: dict[str, str] = {}


class Spec(msgspec.Struct):
    targets: list[Target]
    rate: float
    seconds: float
    out: str
    """The file the JSON result is written to."""
    warmup_s: float = 2.0
    timeout_s: float = 30.0


class Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; :meth:`send` then ``await`` :attr:`done`."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._parser = httptools.HttpResponseParser(self)
        self._transport: asyncio.Transport | None = None
        self._body: list[bytes] = []
        self.done: asyncio.Future[tuple[int, float, bytes]] = loop.create_future()
        self.alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.attach(transport)

    def attach(self, transport: asyncio.BaseTransport) -> None:
        """Take the transport (uvloop may call ``connection_made`` only after
        ``create_connection`` has returned)."""
        if self._transport is None:
            sock = transport.get_extra_info("socket")
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # uvloop's TCP transport has a Transport's methods but is not a subclass.
            self._transport = cast(asyncio.Transport, transport)

    def send(self, raw: bytes) -> None:
        assert self._transport is not None
        self.done = self._loop.create_future()
        self._body = []
        self._transport.write(raw)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(exc)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self.done.done():
            status = self._parser.get_status_code()
            self.done.set_result((status, time.perf_counter(), b"".join(self._body)[:300]))
        if not self._parser.should_keep_alive():
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.alive = False
        self._fail(exc or ConnectionError("connection closed by the server"))

    def _fail(self, exc: BaseException) -> None:
        self.alive = False
        if not self.done.done():
            self.done.set_exception(exc)

    def close(self) -> None:
        self.alive = False
        if self._transport is not None:
            self._transport.close()


class Pool:
    """Kept-alive connections to one target, opened as the load needs them."""

    def __init__(self, loop: asyncio.AbstractEventLoop, target: Target) -> None:
        self._loop = loop
        self._target = target
        self._idle: collections.deque[Connection] = collections.deque()
        head = f"POST {target.path} HTTP/1.1\r\nHost: {target.host}:{target.port}\r\n"
        head += f"Content-Type: application/json\r\nContent-Length: {len(target.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in target.headers.items())
        self.raw = head.encode() + b"\r\n" + target.body.encode()

    async def acquire(self) -> Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.alive:
                return conn
        transport, conn = await self._loop.create_connection(
            lambda: Connection(self._loop), self._target.host, self._target.port
        )
        conn.attach(transport)
        return conn

    def release(self, conn: Connection) -> None:
        if conn.alive:
            self._idle.append(conn)

    def close(self) -> None:
        while self._idle:
            self._idle.pop().close()


async def run(spec: Spec) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    pools = [Pool(loop, target) for target in spec.targets]
    count = len(pools)
    latencies: list[list[float | None]] = [[] for _ in pools]
    errors = [0] * count
    first_error: list[str] = []
    lags: list[float] = []
    interval = 1.0 / spec.rate

    async def tick(index: int, due: float, record: bool) -> None:
        conns: list[Connection | None] = [None] * count
        results: list[float | None] = [None] * count
        try:
            for j, pool in enumerate(pools):
                conns[j] = await pool.acquire()
            order = range(count) if index % 2 == 0 else range(count - 1, -1, -1)
            starts = [0.0] * count
            for j in order:
                starts[j] = time.perf_counter()
                conn = conns[j]
                assert conn is not None
                conn.send(pools[j].raw)
            if record:
                lags.append(min(starts) - due)
            for j, conn in enumerate(conns):
                assert conn is not None
                try:
                    status, end, body = await asyncio.wait_for(conn.done, spec.timeout_s)
                except (OSError, TimeoutError, httptools.HttpParserError) as exc:
                    conn.close()
                    if not first_error:
                        first_error.append(f"target {j}: {type(exc).__name__}: {exc}")
                    continue
                if status == 200:
                    results[j] = round((end - starts[j]) * 1000, 4)
                elif not first_error:
                    first_error.append(
                        f"target {j}: HTTP {status}: {body.decode(errors='replace')}"
                    )
        except Exception as exc:  # counted as failures: a figure over failed calls would flatter
            if not first_error:
                first_error.append(f"{type(exc).__name__}: {exc}")
        finally:
            for j, conn in enumerate(conns):
                if conn is not None:
                    pools[j].release(conn)
        if record:
            for j, value in enumerate(results):
                latencies[j].append(value)
                errors[j] += value is None

    tasks: set[asyncio.Task[None]] = set()
    cpu = time.process_time()
    begin = time.perf_counter() + 0.01
    warm_ticks = int(spec.warmup_s * spec.rate)
    total = warm_ticks + int(spec.seconds * spec.rate)
    measured_from = begin + warm_ticks * interval
    last_send = measured_from
    for index in range(total):
        due = begin + index * interval
        wait = due - time.perf_counter()
        if wait > 0:
            await asyncio.sleep(wait)
        last_send = time.perf_counter()
        task = loop.create_task(tick(index, due, index >= warm_ticks))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    if tasks:
        await asyncio.wait(tasks)
    send_seconds = last_send - measured_from + interval
    for pool in pools:
        pool.close()
    lags.sort()
    return {
        "latencies_ms": latencies,
        "errors": errors,
        "first_error": first_error[0] if first_error else None,
        "sent": total - warm_ticks,
        "total": total,
        "rate": (total - warm_ticks) / send_seconds,
        "cpu_share": (time.process_time() - cpu) / (time.perf_counter() - begin),
        "lag_p50_ms": lags[len(lags) // 2] * 1000 if lags else 0.0,
        "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000 if lags else 0.0,
    }


def main() -> None:
    # An overloaded proxy holds thousands of connections open; the default soft limit of
    # 1,024 descriptors would turn its slowness into this process's errors.
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    spec = msgspec.json.decode(sys.argv[1], type=Spec)
    result = uvloop.run(run(spec))
    with open(spec.out, "w") as fh:
        json.dump(result, fh)


if __name__ == "__main__":
    main()
