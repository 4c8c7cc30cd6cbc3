"""Load tools of the server benchmarks: wrk, the processes under test, and what they cost.

- :func:`wrk` drives ``POST`` with ``post.lua``: a closed loop (saturation) or paced to a
  rate by the script's ``delay()``; it runs pinned to a core with ``taskset``.
- :class:`Server` is a process under test, started pinned to a core in a session of its
  own (so stopping it stops its workers too), ready once an HTTP probe answers 200.
- :func:`cpu_seconds` and :func:`rss_mib` read a process tree from ``/proc``;
  :class:`OtherCpu` is the share of a core that processes other than ours used meanwhile.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

ROOT = Path(__file__).parents[2]
LUA = Path(__file__).with_name("post.lua")
WRK = "wrk"
TICKS = os.sysconf("SC_CLK_TCK")
NOISE = float(os.environ.get("BENCH_NOISE", "0.10"))
LOGS = Path(tempfile.gettempdir()) / "llmrelay-bench"
"""Where each server's output goes (shown when it fails to start)."""


def cores() -> tuple[int, int]:
    """(client core, server core); the same core twice on a one-core machine."""
    allowed = sorted(os.sched_getaffinity(0))
    if len(allowed) < 2:
        return allowed[0], allowed[0]
    return allowed[0], allowed[1]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- /proc ---------------------------------------------------------------------------------


def tree(pid: int) -> list[int]:
    """``pid`` and its live descendants."""
    out, todo = [], [pid]
    while todo:
        current = todo.pop()
        out.append(current)
        try:
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as fh:
                    todo.extend(int(child) for child in fh.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return out


def _jiffies(pid: int | str, *, waited_children: bool = False) -> int:
    try:
        with open(f"/proc/{pid}/stat") as fh:
            fields = fh.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return 0
    own = int(fields[11]) + int(fields[12])  # utime, stime
    return own + (int(fields[13]) + int(fields[14]) if waited_children else 0)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by ``pid`` and its live descendants."""
    return sum(_jiffies(p) for p in tree(pid)) / TICKS


def rss_mib(pid: int) -> float:
    """Resident memory of ``pid`` and its live descendants."""
    total = 0
    for p in tree(pid):
        try:
            with open(f"/proc/{p}/status") as fh:
                total += next(int(line.split()[1]) for line in fh if line.startswith("VmRSS"))
        except (FileNotFoundError, ProcessLookupError, StopIteration):
            continue
    return total / 1024


def _busy_jiffies() -> int:
    with open("/proc/stat") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    return sum(fields) - fields[3] - fields[4]  # all but idle and iowait


class OtherCpu:
    """The share of one core used by processes other than this one, its waited children
    (wrk) and the trees of ``pids()``, between ``start()`` and ``share()``."""

    def __init__(self, pids: Callable[[], Sequence[int]]) -> None:
        self._pids = pids
        self._busy = self._ours = 0
        self._start = 0.0

    def _ours_now(self) -> int:
        own = _jiffies("self", waited_children=True)
        return own + sum(_jiffies(p) for pid in self._pids() for p in tree(pid))

    def start(self) -> None:
        self._busy, self._ours, self._start = _busy_jiffies(), self._ours_now(), time.monotonic()

    def share(self) -> float:
        other = (_busy_jiffies() - self._busy) - (self._ours_now() - self._ours)
        return max(0.0, other / TICKS / (time.monotonic() - self._start))


def quietest(cell: Callable[[], dict[str, float]], *, tries: int = 3) -> dict[str, float]:
    """Run a measurement (which reports ``others``, see :class:`OtherCpu`) until other
    processes used at most ``NOISE`` of a core during it; keep the quietest of ``tries``."""
    best: dict[str, float] | None = None
    for _ in range(tries):
        result = cell()
        if best is None or result["others"] < best["others"]:
            best = result
        if result["others"] <= NOISE:
            break
    assert best is not None
    return best


# -- wrk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    """Socket errors (connect, read, write, timeout) and answers other than 2xx/3xx."""
    p50_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds


def wrk(
    url: str,
    body: bytes,
    *,
    connections: int,
    seconds: float,
    core: int,
    rate: float = 0.0,
    headers: Mapping[str, str] | None = None,
) -> WrkResult:
    """``POST url`` with wrk on ``core``: closed loop, or paced to ``rate`` requests/s."""
    env = {
        **os.environ,
        "WRK_BODY": body.decode(),
        "WRK_RATE": str(rate),
        "WRK_HEADERS": "".join(f"{k}: {v}\n" for k, v in (headers or {}).items()),
    }
    argv = ["taskset", "-c", str(core), WRK, "-t1", f"-c{connections}", f"-d{seconds:g}s",
            "--timeout", "10s", "-s", str(LUA), url]  # fmt: skip
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=False,
                          timeout=seconds + 60)  # fmt: skip
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stderr[-2000:]}")
    out = json.loads(lines[-1])
    return WrkResult(
        requests=out["requests"],
        seconds=out["duration_us"] / 1e6,
        errors=out["socket_errors"] + out["non2xx"],
        p50_ms=out["p50_us"] / 1e3,
        p99_ms=out["p99_us"] / 1e3,
    )


# -- processes under test ----------------------------------------------------------------------


class Server:
    """A server process pinned to ``core``; ``with`` starts it and waits until ``probe``
    (a URL, or ``(url, json body)`` for a POST) answers 200, and stops it on exit."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int,
        probe: str | tuple[str, bytes],
        env: Mapping[str, str] | None = None,
        ready_timeout_s: float = 120.0,
    ) -> None:
        self.name = name
        self._argv = ["taskset", "-c", str(core), *argv]
        self._probe = probe
        self._env = dict(env) if env is not None else None
        self._timeout = ready_timeout_s
        self._process: subprocess.Popen[bytes] | None = None
        self._log = LOGS / f"{name.replace(' ', '-')}.log"

    @property
    def pid(self) -> int:
        assert self._process is not None, f"{self.name} is not running"
        return self._process.pid

    def _ready(self) -> bool:
        url, data = (self._probe, None) if isinstance(self._probe, str) else self._probe
        headers = {"content-type": "application/json"}
        try:
            request = urllib.request.Request(url, data=data, headers=headers)
            with urllib.request.urlopen(request, timeout=5) as response:
                return int(response.status) == 200
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return False

    def _tail(self) -> str:
        try:
            return self._log.read_text(errors="replace")[-3000:]
        except FileNotFoundError:
            return ""

    def __enter__(self) -> Server:
        LOGS.mkdir(exist_ok=True)
        with open(self._log, "wb") as log:
            # A session of its own: stopping the group stops the workers it forks.
            self._process = subprocess.Popen(
                self._argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=ROOT,
                start_new_session=True,
            )
        deadline = time.monotonic() + self._timeout
        try:
            while not self._ready():
                if self._process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited ({self._process.returncode}):\n"
                                       f"{self._tail()}")  # fmt: skip
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{self.name} not ready after {self._timeout:.0f} s:\n"
                                       f"{self._tail()}")  # fmt: skip
                time.sleep(0.2)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        for sig, wait_s in ((signal.SIGTERM, 15.0), (signal.SIGKILL, 10.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                return
            try:
                process.wait(timeout=wait_s)
                return
            except subprocess.TimeoutExpired:
                continue

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@contextmanager
def sigterm_unwinds() -> Iterator[None]:
    """Turn SIGTERM into SystemExit for the block, so ``with`` blocks stop their servers."""

    def handler(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
