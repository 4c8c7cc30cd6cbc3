"""A minimal HTTP/1.1 keep-alive load generator, so the client is never the bottleneck.

Each connection sends one fixed request, reads the response by its Content-Length and
sends the next; it runs in its own process and uses no HTTP library at all.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from dataclasses import dataclass

import uvloop


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies_s: list[float]
    statuses: dict[int, int]

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_s)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    @property
    def p50_ms(self) -> float:
        return statistics.median(self.latencies_s) * 1000

    @property
    def p99_ms(self) -> float:
        return self.percentile(0.99) * 1000


async def _connection(
    host: str, port: int, raw: bytes, until: float, latencies: list[float], statuses: dict[int, int]
) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < until:
            start = time.perf_counter()
            writer.write(raw)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n"):
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            await reader.readexactly(length)
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _run(
    host: str, port: int, path: str, body: bytes, headers: dict[str, str], conns: int, secs: float
) -> LoadResult:
    head = f"POST {path} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
    head += "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    raw = head.encode() + b"\r\n" + body
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    start = time.perf_counter()
    until = start + secs
    await asyncio.gather(
        *(_connection(host, port, raw, until, latencies, statuses) for _ in range(conns))
    )
    return LoadResult(len(latencies), time.perf_counter() - start, latencies, statuses)


def run_load(
    host: str,
    port: int,
    path: str,
    body: bytes,
    headers: dict[str, str],
    *,
    connections: int = 32,
    seconds: float = 5.0,
) -> LoadResult:
    """Drive ``POST path`` with ``connections`` keep-alive connections for ``seconds``."""
    return uvloop.run(_run(host, port, path, body, headers, connections, seconds))
