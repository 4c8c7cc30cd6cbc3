"""The gateway: ``llmrelay serve`` against a direct call and against LiteLLM's proxy.

One simulator of its own, two upstream models without limits: one answering at once, one
50 ms to its first token. Three paths to each: direct; through ``llmrelay serve`` (one
worker, one group ``default``, limits too large to ever pace); through the LiteLLM proxy
(``litellm --config``, one worker, ``.bench-venv``). No master key: no auth on either.

- Saturation: wrk, closed loop (64 connections; 256 against the 50-ms upstream).
- Added latency at 200, 500 and 1,000 requests/s, open loop: at each tick the generator
  (``gateway_wrk/openloop.py``) sends one request direct and the same one through the proxy
  at the same instant; "added" is a percentile of the per-pair differences, never a p99
  minus a p99. A control row pairs direct with direct: its spread is the method's own noise.
  wrk, paced to the same rates, cross-checks the latencies path by path.
- The generator's headroom: first, it drives the simulator directly at twice the top rate,
  with pairs (four times the requests it sends to the simulator at the top rate).
- Soak: the gateway at 300 requests/s for ``BENCH_SOAK_S``; its RSS every 30 s, and the
  growth after the first minute (or after half the soak when that is shorter).

Placement on two cores: the proxy under test has core 1 to itself; the simulator, the
load tool and this process share core 0 (for the direct saturation figure the simulator
moves to core 1). The CPU that other processes used is printed for every cell; a cell in
which they used more than ``BENCH_NOISE`` of a core is run again (at most three times).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from benchmarks.gateway_wrk import (
    OtherCpu,
    Server,
    cores,
    cpu_seconds,
    free_port,
    quietest,
    rss_mib,
    sigterm_unwinds,
    wrk,
)
from llmrelay.testing import SimulatorHandle, make_config, start_simulator_process

ROOT = Path(__file__).parents[1]
LITELLM = ROOT / ".bench-venv" / "bin" / "litellm"
SECONDS = float(os.environ.get("BENCH_SECONDS", "5"))
OPEN_S = float(os.environ.get("BENCH_OPEN_S", "10"))
RATES = [int(r) for r in os.environ.get("BENCH_RATES", "200,500,1000").split(",")]
SOAK_S = float(os.environ.get("BENCH_SOAK_S", "600"))
SOAK_RATE = int(os.environ.get("BENCH_SOAK_RATE", "300"))
SOAK_EVERY_S = 30.0
KEY = "sk-bench"
PROMPT = "Summarise a heist film in one sentence."
ENDPOINT = "/v1/chat/completions"

Rows = dict[str, Any]


@dataclass(frozen=True)
class Upstream:
    label: str
    model: str
    ttft_ms: float
    connections: int
    """wrk's connections, closed loop and paced."""


UPSTREAMS = [
    Upstream("latency 0", "sim-openai", 0.0, 64),
    Upstream("50 ms to first token", "sim-openai-ttft50", 50.0, 256),
]
SIMULATOR = make_config(
    models=[
        {
            "name": u.model,
            "api": "openai",
            "context_window": 16000,
            "max_output_tokens": 4096,
            "ttft_ms": u.ttft_ms,
        }
        for u in UPSTREAMS
    ]
)


@dataclass(frozen=True)
class Route:
    """One way to the upstream: where to POST, with what."""

    name: str
    url: str
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    pid: int | None = None
    """The proxy's process, whose CPU and RSS are reported."""

    def target(self) -> dict[str, Any]:
        host, port = self.url.removeprefix("http://").split("/")[0].rsplit(":", 1)
        return {
            "host": host,
            "port": int(port),
            "path": ENDPOINT,
            "body": self.body.decode(),
            "headers": self.headers,
        }


def _body(model: str) -> bytes:
    payload = {"model": model, "max_tokens": 64, "messages": [{"role": "user", "content": PROMPT}]}
    return json.dumps(payload).encode()


def pin(pid: int, core: int) -> None:
    """Move every thread of ``pid`` to ``core``."""
    for task in os.listdir(f"/proc/{pid}/task"):
        os.sched_setaffinity(int(task), {core})


def check(path: Route) -> None:
    """One call must succeed before anything is measured."""
    request = urllib.request.Request(
        path.url, data=path.body, headers={"content-type": "application/json", **path.headers}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if not answer.get("choices"):
        raise RuntimeError(f"{path.name}: unexpected answer {answer!r:.300}")


# -- the proxies -------------------------------------------------------------------------------


@contextmanager
def gateway(sim: SimulatorHandle, upstream: Upstream, core: int, tmp: str) -> Iterator[Route]:
    port = free_port()
    config = {
        "models": {
            "default": {
                "primary": [
                    {
                        "provider": "openai",
                        "model": upstream.model,
                        "base_url": sim.openai_base_url,
                        "api_key": KEY,
                        "context_window": 16000,
                        "max_output_tokens": 4096,
                        "rpm": 10**7,
                        "tpm": 10**10,
                        "rpd": 10**9,
                    }
                ]
            }
        },
        "server": {"host": "127.0.0.1", "port": port, "workers": 1},
    }
    path = Path(tmp) / f"gateway-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        sys.executable,
        "-m",
        "llmrelay.cli",
        "serve",
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if k != "LLMRELAY_MASTER_KEY"}
    probe = f"http://127.0.0.1:{port}/health"
    with Server("llmrelay serve", argv, core=core, probe=probe, env=env) as server:
        url = f"http://127.0.0.1:{port}{ENDPOINT}"
        yield Route("llmrelay serve", url, _body("default"), pid=server.pid)


@contextmanager
def litellm(sim: SimulatorHandle, upstream: Upstream, core: int, tmp: str) -> Iterator[Route]:
    port = free_port()
    config = {
        "model_list": [
            {
                "model_name": "default",
                "litellm_params": {
                    "model": f"openai/{upstream.model}",
                    "api_base": sim.openai_base_url,
                    "api_key": KEY,
                },
            }
        ]
    }
    path = Path(tmp) / f"litellm-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [
        str(LITELLM),
        "--config",
        str(path),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_workers",
        "1",
    ]
    # No database, no Redis, no price-list download: the proxy as a first run gets it.
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env |= {
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "LITELLM_DANGEROUSLY_PERMIT_WEAK_OR_UNSET_MASTER_KEY": "true",
    }
    probe = f"http://127.0.0.1:{port}/health/liveliness"
    with Server("LiteLLM proxy", argv, core=core, probe=probe, env=env) as server:
        url = f"http://127.0.0.1:{port}{ENDPOINT}"
        yield Route(f"LiteLLM {_litellm_version()} proxy", url, _body("default"), pid=server.pid)


def _litellm_version() -> str:
    python = LITELLM.with_name("python")
    code = "from importlib.metadata import version; print(version('litellm'))"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, check=False)
    return done.stdout.strip()


# -- measurements ------------------------------------------------------------------------------


class Cell:
    """What one measurement watches: the proxy's CPU and the CPU of everything else."""

    def __init__(self, sim: SimulatorHandle, path: Route) -> None:
        self._proxy = path.pid
        self._others = OtherCpu(lambda: [p for p in (sim.pid, path.pid) if p])
        self._cpu = self._start = 0.0

    def __enter__(self) -> Cell:
        self._cpu = cpu_seconds(self._proxy) if self._proxy else 0.0
        self._start = time.monotonic()
        self._others.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.others = self._others.share()
        self.seconds = time.monotonic() - self._start
        self.proxy_cpu = cpu_seconds(self._proxy) - self._cpu if self._proxy else 0.0
        self.rss = rss_mib(self._proxy) if self._proxy else 0.0


def saturate(sim: SimulatorHandle, upstream: Upstream, path: Route, core: int) -> dict[str, Any]:
    wrk(
        path.url,
        path.body,
        connections=upstream.connections,
        seconds=1,
        core=core,
        headers=path.headers,
    )

    def cell() -> dict[str, Any]:
        with Cell(sim, path) as watch:
            result = wrk(
                path.url,
                path.body,
                connections=upstream.connections,
                seconds=SECONDS,
                core=core,
                headers=path.headers,
            )
        return {
            "upstream": upstream.label,
            "path": path.name,
            "rps": result.rps,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "errors": result.errors,
            "proxy_cores": watch.proxy_cpu / watch.seconds,
            "rss_mib": watch.rss,
            "others": watch.others,
        }

    return quietest(cell)


def generate(
    targets: list[dict[str, Any]], rate: float, seconds: float, core: int, *, warmup_s: float = 2.0
) -> dict[str, Any]:
    """Run the open-loop generator on ``core`` and return its result."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        spec = {
            "targets": targets,
            "rate": rate,
            "seconds": seconds,
            "out": out.name,
            "warmup_s": warmup_s,
        }
        argv = [
            "taskset",
            "-c",
            str(core),
            sys.executable,
            "-m",
            "benchmarks.gateway_wrk.openloop",
            json.dumps(spec),
        ]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            cwd=ROOT,
            check=False,
            timeout=seconds + warmup_s + 120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"open-loop generator failed:\n{done.stderr[-3000:]}")
        return json.loads(Path(out.name).read_text())  # type: ignore[no-any-return]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[int(q * (len(ordered) - 1))] if ordered else float("nan")


def paired(
    sim: SimulatorHandle,
    upstream: Upstream,
    direct: Route,
    path: Route,
    rate: int,
    core: int,
    name: str | None = None,
) -> dict[str, Any]:
    """Open loop at ``rate``: direct and ``path`` at each tick, per-pair differences."""

    def cell() -> dict[str, Any]:
        with Cell(sim, path) as watch:
            out = generate([direct.target(), path.target()], rate, OPEN_S, core)
        base, via = out["latencies_ms"]
        diffs = [v - b for b, v in zip(base, via, strict=True) if b is not None and v is not None]
        return {
            "upstream": upstream.label,
            "rate": rate,
            "path": name or path.name,
            "added_p50": _pct(diffs, 0.5),
            "added_p99": _pct(diffs, 0.99),
            "direct_p50": _pct([b for b in base if b is not None], 0.5),
            "direct_p99": _pct([b for b in base if b is not None], 0.99),
            "via_p50": _pct([v for v in via if v is not None], 0.5),
            "via_p99": _pct([v for v in via if v is not None], 0.99),
            "errors": out["errors"],
            "first_error": out["first_error"],
            "proxy_cpu_us": watch.proxy_cpu / out["total"] * 1e6 if path.pid else 0.0,
            "rss_mib": watch.rss,
            "kept": out["rate"],
            "lag_p99": out["lag_p99_ms"],
            "others": watch.others,
        }

    return quietest(cell)


def paced(sim: SimulatorHandle, upstream: Upstream, path: Route, rate: int, core: int) -> Rows:
    """The cross-check: wrk paced to ``rate``, one path alone."""

    def cell() -> dict[str, Any]:
        with Cell(sim, path) as watch:
            result = wrk(
                path.url,
                path.body,
                connections=upstream.connections,
                seconds=OPEN_S,
                core=core,
                rate=rate,
                headers=path.headers,
            )
        return {
            "upstream": upstream.label,
            "rate": rate,
            "path": path.name,
            "rps": result.rps,
            "p50_ms": result.p50_ms,
            "p99_ms": result.p99_ms,
            "errors": result.errors,
            "others": watch.others,
        }

    return quietest(cell)


def headroom(sim: SimulatorHandle, direct: Route, client: int, server: int) -> Rows:
    """The generator alone on its core, the simulator on the other, at twice the top rate."""
    rate = 2 * max(RATES)
    pin(sim.pid or 0, server)
    try:
        with Cell(sim, direct) as watch:
            out = generate([direct.target(), direct.target()], rate, OPEN_S, client)
    finally:
        pin(sim.pid or 0, client)
    latencies = [x for x in out["latencies_ms"][0] if x is not None]
    return {
        "rate": rate,
        "kept": out["rate"],
        "requests_per_s": 2 * out["rate"],
        "lag_p50": out["lag_p50_ms"],
        "lag_p99": out["lag_p99_ms"],
        "cpu_share": out["cpu_share"],
        "errors": sum(out["errors"]),
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "others": watch.others,
    }


def soak(sim: SimulatorHandle, path: Route, core: int) -> Rows:
    """The gateway alone at SOAK_RATE for SOAK_S; its RSS every 30 s."""
    assert path.pid is not None
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        spec = {
            "targets": [path.target()],
            "rate": SOAK_RATE,
            "seconds": SOAK_S,
            "out": out.name,
            "warmup_s": 0.0,
        }
        argv = [
            "taskset",
            "-c",
            str(core),
            sys.executable,
            "-m",
            "benchmarks.gateway_wrk.openloop",
            json.dumps(spec),
        ]
        samples: list[tuple[float, float]] = []
        with Cell(sim, path) as watch:
            start = time.monotonic()
            process = subprocess.Popen(argv, cwd=ROOT, stderr=subprocess.PIPE, text=True)
            try:
                while process.poll() is None:
                    elapsed = time.monotonic() - start
                    if elapsed >= len(samples) * SOAK_EVERY_S and elapsed <= SOAK_S + 1:
                        samples.append((elapsed, rss_mib(path.pid)))
                    time.sleep(0.5)
                _, err = process.communicate()
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()
        samples.append((time.monotonic() - start, rss_mib(path.pid)))
        if process.returncode != 0:
            raise RuntimeError(f"open-loop generator failed:\n{err[-3000:]}")
        result = json.loads(Path(out.name).read_text())
    warm = min(60.0, SOAK_S / 2)
    base = next(rss for at, rss in samples if at >= warm - 1)
    latencies = [x for x in result["latencies_ms"][0] if x is not None]
    return {
        "seconds": SOAK_S,
        "rate": SOAK_RATE,
        "samples": samples,
        "warm_s": warm,
        "growth": (samples[-1][1] - base) / base,
        "errors": result["errors"][0],
        "p50": _pct(latencies, 0.5),
        "p99": _pct(latencies, 0.99),
        "others": watch.others,
    }


# -- the run ------------------------------------------------------------------------------------


def _has_gateway() -> str | None:
    done = subprocess.run(
        [sys.executable, "-m", "llmrelay.cli", "serve", "--help"],
        capture_output=True,
        text=True,
        check=False,
    )
    return None if done.returncode == 0 else "`llmrelay serve` is not available"


def run(_shared: SimulatorHandle | None = None) -> Rows:
    """Every figure of the section; the simulator is this section's own, pinned."""
    client, server = cores()
    rows: Rows = {"saturation": [], "added": [], "paced": [], "soak": None, "skipped": []}
    missing_gateway = _has_gateway()
    if missing_gateway:
        rows["skipped"].append(missing_gateway)
    if not LITELLM.exists():
        rows["skipped"].append(f"LiteLLM's proxy: {LITELLM} is missing (make bench installs it)")
    proxies = [
        p for p, off in ((gateway, missing_gateway), (litellm, not LITELLM.exists())) if not off
    ]
    with (
        sigterm_unwinds(),
        start_simulator_process(SIMULATOR) as sim,
        tempfile.TemporaryDirectory() as tmp,
    ):
        assert sim.pid is not None
        pin(sim.pid, client)
        for upstream in UPSTREAMS:
            direct = Route(
                "direct",
                sim.url + ENDPOINT,
                _body(upstream.model),
                {"authorization": f"Bearer {KEY}"},
            )
            check(direct)
            if "headroom" not in rows:
                rows["headroom"] = headroom(sim, direct, client, server)
            pin(sim.pid, server)
            try:
                rows["saturation"].append(saturate(sim, upstream, direct, client))
            finally:
                pin(sim.pid, client)
            for rate in RATES:
                rows["added"].append(
                    paired(sim, upstream, direct, direct, rate, client, "direct (control)")
                )
                rows["paced"].append(paced(sim, upstream, direct, rate, client))
            for proxy in proxies:
                try:
                    with proxy(sim, upstream, server, tmp) as path:
                        check(path)
                        rows["saturation"].append(saturate(sim, upstream, path, client))
                        for rate in RATES:
                            rows["added"].append(paired(sim, upstream, direct, path, rate, client))
                            rows["paced"].append(paced(sim, upstream, path, rate, client))
                        if proxy is gateway and upstream is UPSTREAMS[-1] and SOAK_S > 0:
                            rows["soak"] = soak(sim, path, client)
                except (RuntimeError, OSError) as exc:  # reported; the other paths still run
                    rows["skipped"].append(f"{proxy.__name__}, {upstream.label}: {exc}"[:2000])
    return rows


# -- the report ----------------------------------------------------------------------------------


def _table(*columns: str) -> None:
    print("| " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * (len(columns) - 1))


def report(rows: Rows) -> None:
    for reason in rows["skipped"]:
        print(f"(skipped: {reason})")
    h = rows["headroom"]
    print(
        f"Generator headroom: pairs direct/direct at {h['rate']:,}/s ({h['requests_per_s']:,.0f} "
        f"requests/s, twice the top rate, paired): kept {h['kept']:,.0f}/s, send lag p50 "
        f"{h['lag_p50']:.2f} ms, p99 {h['lag_p99']:.2f} ms, {h['cpu_share']:.0%} of its core, "
        f"{h['errors']} errors; simulator p50 {h['p50']:.2f} ms, p99 {h['p99']:.2f} ms "
        f"(others' CPU {h['others']:.0%})"
    )
    print(f"\n### Saturation: wrk closed loop, {SECONDS:g} s (64 connections, 256 at 50 ms)\n")
    _table(
        "upstream",
        "path",
        "req/s",
        "p50 ms",
        "p99 ms",
        "errors",
        "proxy CPU (cores)",
        "proxy RSS MiB",
        "others' CPU",
    )
    for r in rows["saturation"]:
        proxy = f"{r['proxy_cores']:.2f} | {r['rss_mib']:.0f}" if r["rss_mib"] else "- | -"
        print(
            f"| {r['upstream']} | {r['path']} | {r['rps']:,.0f} | {r['p50_ms']:.2f} | "
            f"{r['p99_ms']:.2f} | {r['errors']} | {proxy} | {r['others']:.0%} |"
        )
    print(
        f"\n### Added latency, open loop, {OPEN_S:g} s per cell: percentiles of the per-pair "
        "differences (via proxy minus direct, sent at the same instant)\n"
    )
    _table(
        "upstream",
        "req/s",
        "path",
        "added p50 ms",
        "added p99 ms",
        "direct p50 / p99 ms",
        "via p50 / p99 ms",
        "errors direct / via",
        "proxy CPU µs/req",
        "proxy RSS MiB",
        "kept req/s, send lag p99 ms",
        "others' CPU",
    )
    for r in rows["added"]:
        proxy = f"{r['proxy_cpu_us']:,.0f} | {r['rss_mib']:.0f}" if r["rss_mib"] else "- | -"
        print(
            f"| {r['upstream']} | {r['rate']:,} | {r['path']} | {r['added_p50']:+.2f} | "
            f"{r['added_p99']:+.2f} | {r['direct_p50']:.2f} / {r['direct_p99']:.2f} | "
            f"{r['via_p50']:.2f} / {r['via_p99']:.2f} | {r['errors'][0]} / {r['errors'][1]} | "
            f"{proxy} | {r['kept']:,.0f}, {r['lag_p99']:.2f} | {r['others']:.0%} |"
        )
    for r in rows["added"]:
        if r["first_error"]:
            print(f"(first error, {r['path']} at {r['rate']}/s: {r['first_error']})")
    print(f"\n### Cross-check: wrk paced to the rate, one path at a time, {OPEN_S:g} s\n")
    _table("upstream", "req/s asked", "path", "req/s", "p50 ms", "p99 ms", "errors", "others' CPU")
    for r in rows["paced"]:
        print(
            f"| {r['upstream']} | {r['rate']:,} | {r['path']} | {r['rps']:,.0f} | "
            f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['errors']} | {r['others']:.0%} |"
        )
    s = rows["soak"]
    if s:
        print(
            f"\n### Soak: llmrelay serve at {s['rate']} req/s for {s['seconds']:g} s "
            f"({UPSTREAMS[-1].label})\n"
        )
        print("RSS MiB: " + ", ".join(f"{at:.0f} s {rss:.1f}" for at, rss in s["samples"]))
        print(
            f"growth after {s['warm_s']:g} s of warm-up: {s['growth']:+.1%}; {s['errors']} "
            f"errors; latency p50 {s['p50']:.2f} ms, p99 {s['p99']:.2f} ms; others' CPU "
            f"{s['others']:.0%}"
        )


if __name__ == "__main__":
    report(run())
