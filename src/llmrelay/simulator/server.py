"""Running the simulator: in a background thread of this process, or in the foreground.

Both run uvicorn on uvloop, with TCP_NODELAY on every accepted connection: a response
goes out as headers then body, and with Nagle's algorithm on, the body waits for the
client's delayed ACK (about 40 ms on Linux) — per request, on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
from types import TracebackType

import uvicorn
import uvloop

from llmrelay.simulator.app import Simulator, install_log_filter
from llmrelay.simulator.config import SimulatorConfig, load_config


def _uvicorn_config(app: Simulator, log_level: str) -> uvicorn.Config:
    install_log_filter()
    return uvicorn.Config(
        app,
        loop="uvloop",
        http="httptools",
        lifespan="off",
        log_level=log_level,
        access_log=False,
        timeout_graceful_shutdown=1,
        timeout_keep_alive=30,
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one.

    The protocol is named (``IPPROTO_TCP``, not 0): asyncio sets TCP_NODELAY only on
    connections of sockets that say they are TCP, and accepted sockets inherit it.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The loop the simulator runs on: uvloop, as ``uvicorn --loop uvloop`` would pick."""
    return uvloop.new_event_loop()


def serve(app: Simulator, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve on ``sock`` until interrupted (Ctrl-C or SIGTERM)."""
    uvicorn.Server(_uvicorn_config(app, log_level)).run(sockets=[sock])


class ServerThread:
    """A uvicorn server on a bound socket, run in a daemon thread of this process on its
    own uvloop loop; the socket is closed when it stops."""

    def __init__(self, server: uvicorn.Server, sock: socket.socket, *, name: str) -> None:
        self.server = server
        self.sock = sock
        self.name = name
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(self.server.serve(sockets=[self.sock]))

    def start(self) -> None:
        """Start serving; return once the server listens."""
        self._thread.start()
        while not self.server.started:
            if not self._thread.is_alive():
                raise RuntimeError(f"{self.name} stopped during start-up; see the log")
            self._thread.join(0.01)

    def stop(self, *, force: bool) -> None:
        """Stop: at once (``force``), or after the lifespan's shutdown and the answers in
        flight (a graceful stop)."""
        self.server.should_exit = True
        self.server.force_exit = force
        if self._thread.is_alive():
            self._thread.join(None if not force else 10)
        with contextlib.suppress(OSError):
            self.sock.close()


class SimulatorServer:
    """A simulator on loopback in a background thread; use as a context manager.

    ``url`` is its base URL (``http://127.0.0.1:PORT``); ``app`` is the live
    :class:`Simulator`, whose ledger and config tests may read directly.
    """

    def __init__(
        self, config: SimulatorConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.app = Simulator(config or load_config())
        self._sock = bind(host, port)
        self.host = host
        self.port: int = self._sock.getsockname()[1]
        server = uvicorn.Server(_uvicorn_config(self.app, "warning"))
        self._thread = ServerThread(server, self._sock, name="llmrelay-simulator")

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> SimulatorServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._thread.stop(force=True)

    def __enter__(self) -> SimulatorServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
