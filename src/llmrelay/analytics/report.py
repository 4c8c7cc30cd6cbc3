"""What ``llmrelay report`` shows: figures per model group and deployment, as a table or
as JSON.

The JSON document (``--json``) has these keys, which scripts may rely on::

    store        where the figures were read ("sqlite:PATH" or "postgres:URL")
    since, until the window, ISO 8601 UTC; since_unix, until_unix the same in Unix time
    task, group  the filters given (null when none)
    deployments  one object per (group, deployment): the fields of
                 llmrelay.analytics.DeploymentStats (task is null), plus cost_usd,
                 mean_cost_usd and saved_usd
    totals       requests, answered, failed, calls, errors, cache_hits, input_tokens,
                 output_tokens, cost_micros, cost_usd, saved_micros, saved_usd
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import msgspec
from rich.console import Console
from rich.measure import Measurement
from rich.table import Table

from llmrelay.analytics.queries import Analytics, DeploymentStats
from llmrelay.errors import LLMRelayError

NONE = "-"
"""Shown for a figure with nothing to measure."""
_TOTALS = ("requests", "answered", "failed", "calls", "errors", "cache_hits", "input_tokens",
           "output_tokens", "cost_micros", "saved_micros")  # fmt: skip


class NothingRecorded(LLMRelayError):
    """The store holds no request in the window asked about."""


class Report(msgspec.Struct, frozen=True, kw_only=True):
    """Figures per (group, deployment) over a window."""

    store: str
    since: float
    until: float
    task: str | None
    group: str | None
    rows: list[DeploymentStats]

    def totals(self) -> dict[str, int]:
        return {name: sum(getattr(r, name) for r in self.rows) for name in _TOTALS}


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def build_report(
    analytics: Analytics,
    since: float,
    until: float,
    *,
    task: str | None = None,
    group: str | None = None,
) -> Report:
    """The report over [``since``, ``until``); :class:`NothingRecorded` saying what the
    store does hold when that window has no request."""
    rows = analytics.stats(since, until, task=task, group=group, by=("group", "deployment"))
    if not rows:
        name = analytics.store.name
        span = analytics.span()
        if span is None:
            raise NothingRecorded(f"the analytics store {name} has no requests recorded yet")
        first, last, count = span
        asked = f"between {_iso(since)} and {_iso(until)}"
        filters = [f"{k} {v!r}" for k, v in (("task", task), ("group", group)) if v is not None]
        if filters:
            asked += f" for {' and '.join(filters)}"
        raise NothingRecorded(f"no requests {asked} in {name} (it holds {count} from "
                              f"{_iso(first)} to {_iso(last)})")  # fmt: skip
    return Report(store=analytics.store.name, since=since, until=until, task=task,
                  group=group, rows=rows)  # fmt: skip


def to_json(report: Report) -> dict[str, Any]:
    """The report as the documented JSON document."""
    deployments = []
    for row in report.rows:
        item: dict[str, Any] = msgspec.to_builtins(row)
        item["cost_usd"] = row.cost_micros / 1e6
        item["mean_cost_usd"] = None if row.mean_cost_micros is None else row.mean_cost_micros / 1e6
        item["saved_usd"] = row.saved_micros / 1e6
        deployments.append(item)
    totals: dict[str, Any] = dict(report.totals())
    totals["cost_usd"] = totals["cost_micros"] / 1e6
    totals["saved_usd"] = totals["saved_micros"] / 1e6
    return {
        "store": report.store,
        "since": _iso(report.since),
        "until": _iso(report.until),
        "since_unix": report.since,
        "until_unix": report.until,
        "task": report.task,
        "group": report.group,
        "deployments": deployments,
        "totals": totals,
    }


def seconds(value: float | None) -> str:
    if value is None:
        return NONE
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def dollars(micros: float | None) -> str:
    if micros is None:
        return NONE
    usd = micros / 1e6
    if usd == 0:
        return "$0"
    return f"${usd:,.2f}" if usd >= 1 else f"${usd:.4f}" if usd >= 0.0001 else f"${usd:.6f}"


def count(value: int) -> str:
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:.1f}{unit}"
    return str(value)


def _errors(row: DeploymentStats) -> str:
    if row.error_rate is None:
        return NONE
    return f"{row.errors} ({row.error_rate:.1%})"


def _quality(row: DeploymentStats) -> str:
    return NONE if row.quality_mean is None else f"{row.quality_mean:.2f} (n={row.quality_n})"


def _cache(row: DeploymentStats) -> str:
    return NONE if not row.cache_hits else f"{row.cache_hits} ({dollars(row.saved_micros)})"


def table(report: Report) -> Table:
    """The report as a rich table: a section per model group, and a totals line."""
    filters = "".join(f", {k} {v}" for k, v in (("task", report.task),
                                                ("group", report.group)) if v)  # fmt: skip
    grid = Table(
        title=f"llmrelay report: {_iso(report.since)} to {_iso(report.until)}{filters}",
        caption=report.store,
        show_footer=False,
        header_style="bold",
    )
    grid.add_column("group", no_wrap=True)
    grid.add_column("deployment", no_wrap=True)
    for name in ("requests", "calls", "errors", "p50", "p95", "ttft p50", "tokens in/out",
                 "cost", "cost/req", "fallbacks", "cache hits (saved)", "quality"):  # fmt: skip
        grid.add_column(name, justify="right", no_wrap=True)
    shown = ""
    for index, row in enumerate(report.rows):
        following = report.rows[index + 1] if index + 1 < len(report.rows) else None
        grid.add_row(
            row.group if row.group != shown else "",
            row.deployment,
            str(row.requests),
            str(row.calls),
            _errors(row),
            seconds(row.latency_p50_s),
            seconds(row.latency_p95_s),
            seconds(row.ttft_p50_s),
            f"{count(row.input_tokens)} / {count(row.output_tokens)}",
            dollars(row.cost_micros),
            dollars(row.mean_cost_micros),
            str(row.fallbacks),
            _cache(row),
            _quality(row),
            end_section=following is None or following.group != row.group,
        )
        shown = row.group or ""
    totals = report.totals()
    rate = f" ({totals['errors'] / totals['calls']:.1%})" if totals["calls"] else ""
    saved = f" ({dollars(totals['saved_micros'])})" if totals["cache_hits"] else ""
    grid.add_row("total", "", str(totals["requests"]), str(totals["calls"]),
                 f"{totals['errors']}{rate}", "", "", "",
                 f"{count(totals['input_tokens'])} / {count(totals['output_tokens'])}",
                 dollars(totals["cost_micros"]), "", "", f"{totals['cache_hits']}{saved}", "",
                 style="bold")  # fmt: skip
    return grid


def print_table(report: Report, console: Console | None = None) -> None:
    """Print the table (whole, however wide, when the output is not a terminal)."""
    console = console or Console()
    grid = table(report)
    if not console.is_terminal:
        natural = Measurement.get(console, console.options.update_width(100_000), grid)
        console.width = max(console.width, natural.maximum)
    console.print(grid)


__all__ = ["NothingRecorded", "Report", "build_report", "print_table", "table", "to_json"]
