"""Running the gateway: uvicorn (httptools, uvloop) on one listening socket, in this
process or in ``workers`` forked processes sharing it.

The socket is bound once, before any worker starts, so every worker accepts on the same
port and a bad address fails at once. Each worker builds its own router at start-up
(its lifespan), never inherits one. On SIGTERM or Ctrl-C every worker stops accepting and
gives the answers and streams in flight ``shutdown_grace_s`` to finish. A worker that
dies is started again; the supervisor exits when asked to, or when workers keep dying at
start-up (a configuration that cannot work).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Mapping
from multiprocessing.process import BaseProcess
from types import FrameType, TracebackType

import uvicorn

from llmrelay.config import RelaySettings
from llmrelay.errors import ConfigError
from llmrelay.gateway.app import Gateway
from llmrelay.gateway.settings import ServerSettings
from llmrelay.providers.registry import ProviderFactory
from llmrelay.simulator.server import ServerThread, bind

log = logging.getLogger("llmrelay.gateway")

_RESTARTS_BEFORE_GIVING_UP = 5
"""Workers that die within their first seconds this many times in a row stop the server."""
_EARLY_DEATH_S = 5.0


def uvicorn_config(app: Gateway, server: ServerSettings) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="on",
        log_level=server.log_level,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=int(server.shutdown_grace_s) or None,
        timeout_keep_alive=30,
    )


def check_shared_state(settings: RelaySettings, server: ServerSettings, source: str) -> None:
    """More than one worker needs state every worker sees: a ConfigError naming the key
    otherwise (limits per worker would add up past a provider's, budgets overshoot)."""
    if server.workers == 1:
        return
    if settings.redis_url is None:
        raise ConfigError(f"{source}: server.workers: {server.workers} workers share rate "
                          "limits through Redis: set redis_url")  # fmt: skip
    budget = settings.budget
    if budget is not None and budget.store == "memory":
        raise ConfigError(f"{source}: budget.store: memory budgets are per process; with "
                          f"{server.workers} workers use redis (or sqlite)")  # fmt: skip


def serve(
    settings: RelaySettings,
    server: ServerSettings,
    *,
    source: str = "config",
    providers: Mapping[str, ProviderFactory] | None = None,
    sock: socket.socket | None = None,
    on_listening: Callable[[str], None] | None = None,
) -> None:
    """Serve until SIGTERM / Ctrl-C; ``on_listening`` gets the base URL once bound."""
    check_shared_state(settings, server, source)
    if sock is None:
        try:
            sock = bind(server.host, server.port)
        except OSError as exc:
            raise ConfigError(f"{source}: server.port: cannot listen on {server.host}:"
                              f"{server.port}: {exc.strerror}") from None  # fmt: skip
    host = f"[{server.host}]" if ":" in server.host else server.host
    if on_listening is not None:
        on_listening(f"http://{host}:{sock.getsockname()[1]}")
    app = Gateway(settings, server, source=source, providers=providers)
    if server.workers == 1:
        uvicorn.Server(uvicorn_config(app, server)).run(sockets=[sock])
        return
    _Supervisor(app, server, sock).run()


class _Supervisor:
    """Forks ``workers`` processes serving one socket and keeps them running."""

    def __init__(self, app: Gateway, server: ServerSettings, sock: socket.socket) -> None:
        self.app, self.server, self.sock = app, server, sock
        self.context = multiprocessing.get_context("fork")
        self.workers: list[tuple[BaseProcess, float]] = []
        self.stopping = threading.Event()

    def _start(self) -> tuple[BaseProcess, float]:
        process = self.context.Process(target=self._work, name="llmrelay-gateway", daemon=False)
        process.start()
        return process, time.monotonic()

    def _work(self) -> None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the supervisor tells workers to stop
        uvicorn.Server(uvicorn_config(self.app, self.server)).run(sockets=[self.sock])

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self.stopping.set()

    def run(self) -> None:
        signal.signal(signal.SIGTERM, self._stop)
        signal.signal(signal.SIGINT, self._stop)
        self.workers = [self._start() for _ in range(self.server.workers)]
        early = 0
        while not self.stopping.wait(0.5):
            for index, (process, started) in enumerate(self.workers):
                if process.is_alive():
                    continue
                early = early + 1 if time.monotonic() - started < _EARLY_DEATH_S else 0
                if early >= _RESTARTS_BEFORE_GIVING_UP:
                    log.error("workers keep failing at start-up; stopping")
                    self.stopping.set()
                    break
                log.warning(
                    "worker %s exited (%s); starting another", process.pid, process.exitcode
                )
                self.workers[index] = self._start()
        self._terminate()

    def _terminate(self) -> None:
        for process, _ in self.workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.server.shutdown_grace_s + 5
        for process, _ in self.workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join()


class GatewayServer:
    """A gateway on loopback in a background thread (one worker); a context manager.

    For tests and embedding: ``url`` is its base URL, ``app`` the live :class:`Gateway`;
    it listens on ``port`` (default: a free one), whatever ``server`` says.
    """

    def __init__(
        self,
        settings: RelaySettings,
        server: ServerSettings | None = None,
        *,
        providers: Mapping[str, ProviderFactory] | None = None,
        port: int = 0,
    ) -> None:
        server = server or ServerSettings()
        self._sock = bind("127.0.0.1", port)
        self.port: int = self._sock.getsockname()[1]
        self.app = Gateway(settings, server, source="config", providers=providers)
        self._thread = ServerThread(uvicorn.Server(uvicorn_config(self.app, server)), self._sock,
                                    name="llmrelay-gateway")  # fmt: skip

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> GatewayServer:
        self._thread.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._thread.stop(force=False)


__all__ = ["GatewayServer", "check_shared_state", "serve", "uvicorn_config"]
