"""Observability: what each sink, and all of them together, add to a call.

``python -m benchmarks.observe`` (or ``BENCH_ONLY=observe make bench``). A bare router
(``SmartLLM`` with no sink) and an observed one alternate call by call
(``benchmarks.bare.paired``: which goes first alternates too), ``BENCH_ROUNDS`` pairs per
variant. "added" is the median of the per-pair differences, the ratio the median of the
per-pair ratios; p99s are shown per column, never subtracted. Each observed client is
closed before its row is printed, and the row says how many events its sinks dropped
(a full queue) or failed on: a sink that kept up drops none.

The sinks do their real work: the log sink writes JSON lines to ``/dev/null``; Prometheus
updates its own registry; OpenTelemetry builds spans through the SDK's batch processor
into an exporter that discards them; Langfuse exports over HTTP to a local endpoint that
accepts everything; analytics writes rows to a SQLite file. The upstream is the simulator
at zero latency (as in ``benchmarks.money``), where the sinks' cost is most visible.
"""

from __future__ import annotations

import asyncio
import functools
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, TextIO

from benchmarks.bare import paired
from benchmarks.hotpath import CpuWatch
from benchmarks.money import (
    PROMPT,
    ROUNDS,
    WARMUP,
    Figures,
    compare,
    others,
    priced,
    quietest,
    row,
    table,
)
from llmrelay import LLMBuilder
from llmrelay.observe import Sink
from llmrelay.observe.logs import LogSettings, LogSink
from llmrelay.testing import SimulatorHandle, make_config, start_simulator_process


class _Accept(BaseHTTPRequestHandler):
    """Answers every request 200 with an empty JSON object (a collector that keeps nothing)."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("content-length") or 0))
        self._ok()

    def do_GET(self) -> None:
        self._ok()

    def _ok(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def _collector() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Accept)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _sinks(tmp: Path, collector: str, devnull: TextIO) -> dict[str, Callable[[], list[Sink]]]:
    """Each variant: a function making its sinks afresh."""

    def logs() -> list[Sink]:
        return [LogSink(LogSettings(), file=devnull)]

    def prometheus() -> list[Sink]:
        from llmrelay.observe.prometheus import PrometheusSink

        return [PrometheusSink()]

    def otel() -> list[Sink]:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import (
            BatchSpanProcessor,
            SpanExporter,
            SpanExportResult,
        )

        from llmrelay.observe.otel import OtelSink

        class Discard(SpanExporter):
            def export(self, spans: Sequence[Any]) -> SpanExportResult:
                return SpanExportResult.SUCCESS

        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(Discard()))
        return [OtelSink(tracer_provider=provider)]

    def langfuse() -> list[Sink]:
        from llmrelay.observe.langfuse import LangfuseSettings, LangfuseSink

        settings = LangfuseSettings(public_key="pk-bench", secret_key="sk-bench", host=collector)
        return [LangfuseSink(settings)]

    def analytics() -> list[Sink]:
        from llmrelay.analytics import open_sink
        from llmrelay.analytics.settings import AnalyticsSettings

        return [open_sink(AnalyticsSettings(path=str(tmp / "analytics.sqlite3")))]

    def together() -> list[Sink]:
        return [*logs(), *prometheus(), *otel(), *langfuse(), *analytics()]

    return {"logs (JSON lines)": logs, "prometheus": prometheus, "otel (SDK, batch)": otel,
            "langfuse (local endpoint)": langfuse, "analytics (SQLite)": analytics,
            "all five together": together}  # fmt: skip


def _observed(sim: SimulatorHandle, sinks: list[Sink]) -> LLMBuilder:
    builder = priced(sim)
    for sink in sinks:
        builder.with_observer(sink)
    return builder


async def overhead(sim: SimulatorHandle, variants: dict[str, Callable[[], list[Sink]]]) -> Figures:
    results: Figures = {}
    async with priced(sim).build() as bare:
        for name, make in variants.items():
            try:
                sinks = make()
            except ImportError as exc:
                results[name] = {"note": f"skipped: {exc}"}
                continue
            observed = _observed(sim, sinks).build()
            try:
                base, other = await paired(
                    lambda: bare.ainvoke(PROMPT),
                    functools.partial(observed.ainvoke, PROMPT),
                    ROUNDS,
                    WARMUP,
                )
            finally:
                await observed.aclose()
            counts = observed.get_stats()["observe"].values()
            figures = compare(base, other)
            figures["dropped"] = sum(c["dropped"] for c in counts)
            figures["failed"] = sum(c["failed"] for c in counts)
            results[name] = figures
    return results


async def _measure(sim: SimulatorHandle) -> Figures:
    watch = CpuWatch(sim.pid or os.getpid())
    with (
        tempfile.TemporaryDirectory() as name,
        _collector() as collector,
        open(os.devnull, "w") as devnull,  # noqa: ASYNC230  # /dev/null: nothing to wait for
    ):
        variants = _sinks(Path(name), collector, devnull)
        figures = await quietest(watch, lambda: overhead(sim, variants))
        return {"rounds": ROUNDS, "overhead": figures}


async def run(sim: SimulatorHandle | None = None) -> Figures:
    """Every figure of this section (µs); starts its own simulator unless given one."""
    if sim is not None:
        return await _measure(sim)
    with start_simulator_process(make_config()) as own:
        return await _measure(own)


def report(results: Figures) -> None:
    overhead = results["overhead"]
    print(f"{results['rounds']} pairs per row, alternating; µs; zero-latency simulator in its "
          "own process")  # fmt: skip
    print(others(overhead) + "\n")
    table("sinks vs bare router", "bare p50", "observed p50",
          "added (median of paired differences)", "ratio (median of paired ratios)",
          "bare p99", "observed p99", "events dropped / failed")  # fmt: skip
    for name, figures in overhead.items():
        if name == "others_cpu":
            continue
        suffix = "" if "note" in figures else f" {figures['dropped']} / {figures['failed']} |"
        print(row(name, figures) + suffix)


if __name__ == "__main__":
    report(asyncio.run(run()))
